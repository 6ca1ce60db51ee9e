"""What every client program shares: the one place errors become messages and exit codes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from ferry.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, FerryError


def setup_logging(program: str, verbose: bool) -> None:
    """Warnings (and with -v, info) go to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{program}: %(message)s"))
    root = logging.getLogger("ferry")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def fail(program: str, message: str, exit_code: int) -> int:
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    return exit_code


def run(program: str, main: Coroutine[Any, Any, object]) -> int:
    """Run a client coroutine; map any failure to one stderr line and an exit code."""
    try:
        asyncio.run(main)
    except FerryError as exc:
        return fail(program, exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return fail(program, "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # a bug: say so in one line, trace only on request
        if os.environ.get("FERRY_DEBUG"):
            raise
        return fail(program, f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)
    return EXIT_OK
