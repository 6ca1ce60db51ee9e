"""What every client program shares: the one place errors become messages and exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from ferry import environment, platform
from ferry.errors import EXIT_OK, FerryError, Interrupted, exit_code_for


def reserve_standard_streams() -> None:
    """Put the null device on whichever of fds 0, 1 and 2 the program was started without.

    A closed standard descriptor is the next number open() or socket() hands
    out: without this, the relay connection could become fd 1 and get what
    is meant for stdout. Python leaves sys.stdin / sys.stdout None for a
    descriptor that was closed at start, and they stay None, so each use
    can say "standard input is closed" (and never read nothing or write to
    nowhere silently); sys.stderr gets the null device, so messages are
    dropped instead of going to stdout (print(file=None) writes there).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = platform.open_fd(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (for the whole run)


def setup_logging(program: str, verbose: bool) -> None:
    """Warnings (and with -v, info) go to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{program}: %(message)s"))
    root = logging.getLogger("ferry")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def fail(program: str, exc: BaseException) -> int:
    """The edge: any failure becomes one line on stderr and its exit code (errors.py)."""
    if isinstance(exc, FerryError):
        message = exc.message
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    else:  # a bug: say so in one line, trace only on request
        if environment.debug():
            raise exc
        message = f"internal error: {type(exc).__name__}: {exc}"
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    return exit_code_for(exc)


async def _with_signals(main: Coroutine[Any, Any, object]) -> None:
    """Run main; SIGINT or SIGTERM (Windows: also SIGBREAK) cancels it, so its cleanup
    (temporary files) runs.

    The handlers run on the event loop (platform.on_termination), never in
    the middle of one of asyncio's own I/O callbacks, which would then fail
    with a traceback.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    undo = platform.on_termination(loop, on_signal)
    try:
        await main
    except asyncio.CancelledError:
        if not received:
            raise
        what = "interrupted" if received[0] == signal.SIGINT else "terminated"
        raise Interrupted(what) from None
    finally:
        undo()


def run(program: str, main: Coroutine[Any, Any, object]) -> int:
    """Run a client coroutine; map any failure to one stderr line and an exit code."""
    try:
        asyncio.run(_with_signals(main))
    except (Exception, KeyboardInterrupt) as exc:
        return fail(program, exc)
    return EXIT_OK
