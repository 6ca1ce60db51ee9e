"""`./receive RELAY CODE DIR`: fetch the file into DIR (created if missing)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Sequence

from ferry import environment
from ferry.address import parse_address
from ferry.cli.common import fail, run, setup_logging
from ferry.cli.parser import Parser
from ferry.codes import parse_code
from ferry.config import ClientConfig
from ferry.errors import FerryError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="receive",
        description="Receive a file through a ferry relay into a directory.",
    )
    parser.add_argument("relay", help="relay address, HOST:PORT or [V6]:PORT")
    parser.add_argument(
        "code", nargs="?",
        help="the code the sender printed; '-' reads it from stdin, "
        "and if omitted it comes from the FERRY_CODE environment variable",
    )  # fmt: skip
    parser.add_argument("directory", help="where to put the file (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("-v", "--verbose", action="store_true", help="say more on stderr")
    return parser


def read_code(arg: str | None) -> str:
    if arg == "-":
        if sys.stdin.isatty():
            print("receive: code: ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline()
    if arg is None:
        code = environment.text("FERRY_CODE")
        if not code:
            raise UsageError("no code given (pass it as an argument, '-' for stdin, or FERRY_CODE)")
        return code
    return arg


LOADER_JOIN_TIMEOUT = 10.0
"""Seconds an early exit waits for the crypto import started on a thread."""


def _load_crypto_meanwhile() -> threading.Thread:
    """Import the crypto libraries on a thread while the relay connection opens.

    They take ~100 ms to import, longer than a round trip to a nearby relay,
    and the receiver's first flight (its PAKE message) needs them; started
    here, the import overlaps the TCP connect and the claim. Errors are left
    for the main thread's own import to report.
    """

    def load() -> None:
        with contextlib.suppress(BaseException):
            import ferry.client.wire
            import ferry.protocol.session  # noqa: F401

    thread = threading.Thread(target=load, name="load-crypto", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("receive", args.verbose)
    loader: threading.Thread | None = None
    try:
        try:
            address = parse_address(args.relay)
            code = parse_code(read_code(args.code))
            loader = _load_crypto_meanwhile()
            from ferry.client.progress import for_stderr
            from ferry.client.receiver import Receiver, prepare_directory

            directory = prepare_directory(args.directory)
        except FerryError as exc:
            return fail("receive", exc)
        receiver = Receiver(address, code, directory, ClientConfig(), for_stderr(), args.overwrite)
        status = run("receive", receiver.run())
        if status == 0 and args.verbose and receiver.saved_as is not None:
            print(f"receive: saved {receiver.saved_as}", file=sys.stderr)
        return status
    finally:
        # An import still running on a daemon thread at interpreter exit can
        # abort the process ("FATAL: exception not rethrown"): let it finish.
        if loader is not None:
            loader.join(LOADER_JOIN_TIMEOUT)


if __name__ == "__main__":
    sys.exit(main())
