"""`./send RELAY FILE`: print the code on stdout (only that), then send the file."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from ferry.address import parse_address
from ferry.cli.common import fail, run, setup_logging
from ferry.cli.parser import Parser
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.environment import count, read, record_size, seconds
from ferry.errors import FerryError, OutputClosed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="send",
        description="Send a file through a ferry relay. Prints a code on stdout; "
        "give it to the receiver, who runs: receive RELAY CODE DIR.",
    )
    parser.add_argument("relay", help="relay address, HOST:PORT or [V6]:PORT")
    parser.add_argument("file", help="the file to send")
    parser.add_argument(
        "--wait", type=seconds, metavar="SECONDS",
        help="how long to wait for a receiver (default: 24 h; env FERRY_WAIT)",
    )  # fmt: skip
    parser.add_argument(
        "--attempts", type=count, metavar="N",
        help="wrong codes tolerated before giving up (default: 3; env FERRY_ATTEMPTS)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="say more on stderr")
    return parser


def receive_hint(relay: str, code: Code) -> str:
    """The line a person at a terminal passes on (stderr only: stdout stays the code)."""
    return f"send: on the other computer, run: ./receive {relay} {code.text} DIR"


def show_code(code: Code) -> None:
    # The one and only stdout line; flushed now because stdout is often a pipe.
    try:
        sys.stdout.write(code.text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        # Nobody can read the code (a closed pipe, a full device): stop here.
        # Point stdout at /dev/null so that exiting does not try to flush again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        reason = exc.strerror or type(exc).__name__
        raise OutputClosed(f"cannot write the code to standard output ({reason})") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("send", args.verbose)
    try:
        address = parse_address(args.relay)
        wait = args.wait or read("FERRY_WAIT", seconds, ClientConfig.wait_timeout)
        attempts = args.attempts or read("FERRY_ATTEMPTS", count, ClientConfig.max_failed_attempts)
        records = read("FERRY_RECORD_SIZE", record_size, ClientConfig.record_size)
        from ferry.client.progress import for_stderr
        from ferry.client.sender import Outgoing, Sender

        config = ClientConfig(wait_timeout=wait, max_failed_attempts=attempts, record_size=records)
        outgoing = Outgoing.open(args.file)
    except FerryError as exc:
        return fail("send", exc)
    relay_text = args.relay

    def show(code: Code) -> None:
        show_code(code)
        if sys.stderr.isatty():
            print(receive_hint(relay_text, code), file=sys.stderr, flush=True)

    sender = Sender(address, outgoing, config, for_stderr(), show)
    try:
        return run("send", sender.run())
    finally:
        outgoing.file.close()


if __name__ == "__main__":
    sys.exit(main())
