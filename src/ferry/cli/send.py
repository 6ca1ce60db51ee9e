"""`./send RELAY FILE`: print the code on stdout (only that), then send the file."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ferry.address import parse_address
from ferry.cli.common import fail, run, setup_logging
from ferry.cli.parser import Parser
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.errors import FerryError, UsageError
from ferry.protocol.records import MAX_DATA_PAYLOAD

MIN_RECORD_SIZE = 4096


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="send",
        description="Send a file through a ferry relay. Prints a code on stdout; "
        "give it to the receiver, who runs: receive RELAY CODE DIR.",
    )
    parser.add_argument("relay", help="relay address, HOST:PORT or [V6]:PORT")
    parser.add_argument("file", help="the file to send")
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS",
        default=float(os.environ.get("FERRY_WAIT", ClientConfig.wait_timeout)),
        help="how long to wait for a receiver (default: 24 h; env FERRY_WAIT)",
    )  # fmt: skip
    parser.add_argument(
        "--attempts", type=int, metavar="N",
        default=int(os.environ.get("FERRY_ATTEMPTS", ClientConfig.max_failed_attempts)),
        help="wrong codes tolerated before giving up (default: 3; env FERRY_ATTEMPTS)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="say more on stderr")
    return parser


def _record_size() -> int:
    """DATA record size from FERRY_RECORD_SIZE (a tuning knob for benchmarks)."""
    raw = os.environ.get("FERRY_RECORD_SIZE")
    if raw is None:
        return ClientConfig.record_size
    if not raw.isdigit() or not MIN_RECORD_SIZE <= int(raw) <= MAX_DATA_PAYLOAD:
        limits = f"from {MIN_RECORD_SIZE} to {MAX_DATA_PAYLOAD}"
        raise UsageError(f"FERRY_RECORD_SIZE must be a number of bytes {limits}")
    return int(raw)


def show_code(code: Code) -> None:
    # The one and only stdout line; flushed now because stdout is often a pipe.
    sys.stdout.write(code.text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("send", args.verbose)
    try:
        address = parse_address(args.relay)
        if args.wait <= 0 or args.attempts < 1:
            return fail("send", "--wait must be positive and --attempts at least 1", 2)
        record_size = _record_size()
        from ferry.client.progress import for_stderr
        from ferry.client.sender import Outgoing, Sender

        config = ClientConfig(
            wait_timeout=args.wait, max_failed_attempts=args.attempts, record_size=record_size
        )
        outgoing = Outgoing.open(args.file)
    except FerryError as exc:
        return fail("send", exc.message, exc.exit_code)
    sender = Sender(address, outgoing, config, for_stderr(), show_code)
    try:
        return run("send", sender.run())
    finally:
        outgoing.file.close()


if __name__ == "__main__":
    sys.exit(main())
