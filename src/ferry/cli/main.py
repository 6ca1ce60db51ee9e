"""`ferry relay|send|receive ...`: one entry point for the three programs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

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


if __name__ == "__main__":  # what the ./send and ./receive shims run
    sys.exit(main(launcher=SHIMS))
