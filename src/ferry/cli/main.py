"""`ferry relay|send|receive ...`: one entry point for the three programs."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ferry.cli.launcher import SCRIPT, SHIMS, Launcher

USAGE = """usage: ferry relay :PORT
       ferry send RELAY FILE
       ferry receive RELAY CODE DIR
       ferry --version
"""


def main(argv: Sequence[str] | None = None, launcher: Launcher = SCRIPT) -> int:
    """The `ferry` command's entry point; `launcher` says how it was started (its hints)."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv), launcher)
    except KeyboardInterrupt:  # Ctrl-C before the event loop runs (start-up, argument parsing)
        sys.stderr.write("ferry: interrupted\n")
        return 130


def _dispatch(args: list[str], launcher: Launcher) -> int:
    command = args.pop(0) if args else ""
    if command == "relay":
        from ferry.cli.relay import main as relay_main

        return relay_main(args)
    if command == "send":
        from ferry.cli.send import main as send_main

        return send_main(args, launcher)
    if command == "receive":
        from ferry.cli.receive import main as receive_main

        return receive_main(args, launcher)
    if command in ("-V", "--version"):
        from ferry import __version__

        print(f"ferry {__version__}")
        return 0
    if command in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0
    what = f"unknown command {command!r}" if command else "no command given"
    sys.stderr.write(f"ferry: error: {what} (expected relay, send or receive)\n{USAGE}")
    return 2


def exit_now(status: int) -> NoReturn:
    """End the process with `status`, skipping the interpreter's teardown.

    Once main() returned, everything a client does is done: files stored and
    closed, temporary files removed, the ACK sent or received, threads
    joined or daemons. What remains is the interpreter freeing every module
    and object, tens of milliseconds (more on a loaded machine) that both
    the sender and the receiver would spend before a script waiting on them
    sees them exit. The standard streams are flushed first; a flush that
    fails (a closed pipe) changes nothing, as at a normal exit.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(status)


if __name__ == "__main__":  # what the ./send and ./receive shims run
    exit_now(main(launcher=SHIMS))
