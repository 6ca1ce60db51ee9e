"""`./send RELAY FILE`: print the code on stdout (only that), then send the file."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from ferry.address import parse_address
from ferry.cli.common import fail, run, setup_logging
from ferry.cli.parser import Parser
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.errors import FerryError, OutputClosed, UsageError
from ferry.protocol.records import MAX_DATA_PAYLOAD

MIN_RECORD_SIZE = 4096
T = TypeVar("T")


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


def seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type and env parser)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def count(text: str) -> int:
    """A whole number, at least 1 (argparse type and env parser)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1, not {text!r}")
    return int(text)


def _from_env(name: str, parse: Callable[[str], T], default: T) -> T:
    """A setting from the environment, checked like the flag it stands for."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _record_size() -> int:
    """DATA record size from FERRY_RECORD_SIZE (a tuning knob for benchmarks)."""
    raw = os.environ.get("FERRY_RECORD_SIZE")
    if raw is None:
        return ClientConfig.record_size
    if not raw.isdigit() or not MIN_RECORD_SIZE <= int(raw) <= MAX_DATA_PAYLOAD:
        limits = f"from {MIN_RECORD_SIZE} to {MAX_DATA_PAYLOAD}"
        raise UsageError(f"FERRY_RECORD_SIZE must be a number of bytes {limits}")
    return int(raw)


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
        wait = args.wait or _from_env("FERRY_WAIT", seconds, ClientConfig.wait_timeout)
        attempts = args.attempts or _from_env(
            "FERRY_ATTEMPTS", count, ClientConfig.max_failed_attempts
        )
        record_size = _record_size()
        from ferry.client.progress import for_stderr
        from ferry.client.sender import Outgoing, Sender

        config = ClientConfig(
            wait_timeout=wait, max_failed_attempts=attempts, record_size=record_size
        )
        outgoing = Outgoing.open(args.file)
    except FerryError as exc:
        return fail("send", exc.message, exc.exit_code)
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
