"""`./receive RELAY CODE [DIR | -]`: fetch what was sent.

    ./receive RELAY CODE DIR     recreate it under DIR (created if missing)
    ./receive RELAY CODE -       one file's bytes (or a text) to stdout
    ./receive RELAY CODE         a text is printed; files go into "."

A text message is always printed on stdout, never stored. With FERRY_CODE
set, a single argument after RELAY is the DIR (as before the code became
optional).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from ferry import environment
from ferry.address import parse_address
from ferry.cli.common import fail, reserve_standard_streams, run, setup_logging
from ferry.cli.launcher import SHIMS, Launcher
from ferry.cli.parser import Parser
from ferry.client import dial
from ferry.codes import parse_code
from ferry.config import ClientConfig
from ferry.errors import FerryError, LocalFileError, UsageError
from ferry.protocol.session import load_crypto


def build_parser(launcher: Launcher = SHIMS) -> argparse.ArgumentParser:
    parser = Parser(
        prog=launcher.prog("receive"),
        description="Receive files, directories or a text through a ferry relay.",
    )
    parser.add_argument("relay", help="relay address, HOST:PORT or [V6]:PORT")
    parser.add_argument(
        "code", nargs="?",
        help="the code the sender printed; '-' reads it from stdin, "
        "and if omitted it comes from the FERRY_CODE environment variable",
    )  # fmt: skip
    parser.add_argument(
        "directory", nargs="?",
        help="where to put what is received (created if missing; default '.'); "
        "'-' writes a single file to stdout",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace existing files by the files sent (never a directory or a link)",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="put a directory sent into an existing one of that name, beside what is there; "
        "an existing file in it is refused unless --overwrite",
    )  # fmt: skip
    parser.add_argument(
        "--ask", action="store_true", help="show what is coming and wait for y/N first"
    )
    parser.add_argument(
        "--no-resume", action="store_true",
        help="start over instead of resuming an interrupted file (its partial is discarded)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="with '-', write a file to standard output even when it is a terminal",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="say more on stderr")
    return parser


def read_code(arg: str | None) -> str:
    if arg == "-":
        from ferry.client.output import read_line

        if sys.stdin is None:  # closed when the program started (cli/common.py)
            raise UsageError("no code: standard input is closed")

        if sys.stdin.isatty():
            print("receive: code: ", end="", file=sys.stderr, flush=True)
        # Unbuffered: an --ask answer on the next line stays for the prompt.
        return read_line().decode("utf-8", "replace")
    if arg is None:
        code = environment.text("FERRY_CODE")
        if not code:
            raise UsageError("no code given (pass it as an argument, '-' for stdin, or FERRY_CODE)")
        return code
    return arg


def _isatty(stream: TextIO | None) -> bool:
    """Whether a standard stream is a terminal (a closed one is not)."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):
        return False


LOADER_JOIN_TIMEOUT = 10.0
"""Seconds an early exit waits for the crypto import started on a thread."""


def _load_crypto_meanwhile() -> threading.Thread:
    """Import the crypto libraries on a thread while the rest of start-up runs.

    They take ~100 ms to import, and the receiver's first flight (its PAKE
    message) needs them before it claims: the relay pairs a claim only with
    that message behind it (client/receiver.py). Started here, the import
    overlaps importing the receiver's modules; the connect started just
    before (client/dial.py) crosses the network meanwhile. Errors are left
    for the main thread's own import to report.
    """

    def load() -> None:
        with contextlib.suppress(BaseException):
            load_crypto()

    thread = threading.Thread(target=load, name="load-crypto", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None, launcher: Launcher = SHIMS) -> int:
    reserve_standard_streams()
    args = build_parser(launcher).parse_args(argv)
    setup_logging("receive", args.verbose)
    loader: threading.Thread | None = None
    dialing: dial.Dialing | None = None
    try:
        try:
            environment.check_shared()
            address = parse_address(args.relay)
            if args.directory is None and args.code is not None and environment.text("FERRY_CODE"):
                args.code, args.directory = None, args.code  # receive RELAY DIR, as before
            code = parse_code(read_code(args.code))
            from ferry.client.outdir import check_directory

            to_stdout = args.directory == "-"
            if to_stdout and sys.stdout is None:  # closed at start (cli/common.py)
                raise LocalFileError("cannot write to standard output: it is closed")
            directory = check_directory("." if to_stdout else args.directory or ".")
            config = ClientConfig(
                max_entries=environment.read(
                    "FERRY_MAX_ENTRIES", environment.count, ClientConfig.max_entries
                ),
                max_depth=environment.read(
                    "FERRY_MAX_DEPTH", environment.count, ClientConfig.max_depth
                ),
            )
            # Everything local checked: the connect's round trip runs while the rest of
            # start-up does (client/dial.py), and so does the crypto import.
            dialing = dial.start(address.host, address.port)
            loader = _load_crypto_meanwhile()
            from ferry.client.output import Output
            from ferry.client.progress import for_stderr
            from ferry.client.receiver import Receiver
        except FerryError as exc:
            return fail("receive", exc)
        output = Output(
            to_stdout, args.ask, announce=sys.stderr.isatty(),
            terminal=to_stdout and _isatty(sys.stdout), force=args.force,
        )  # fmt: skip
        receiver = Receiver(
            address, code, directory, config, for_stderr(), args.overwrite, output,
            resume=not args.no_resume, merge=args.merge, dialing=dialing,
        )  # fmt: skip
        status = run("receive", receiver.run())
        if status == 0 and args.verbose and receiver.saved_as is not None:
            print(f"receive: saved {receiver.saved_as}", file=sys.stderr)
        return status
    finally:
        # An import still running on a daemon thread at interpreter exit can
        # abort the process ("FATAL: exception not rethrown"): let it finish.
        if loader is not None:
            loader.join(LOADER_JOIN_TIMEOUT)
        if dialing is not None:
            dialing.close()


if __name__ == "__main__":
    sys.exit(main())
