"""`./send RELAY PATH...`: print the code on stdout (only that), then send.

./send RELAY FILE                 one file (the original contract, unchanged)
./send RELAY PATH [PATH ...]      files and directories, any mix (a tree)
./send RELAY - [--name NAME]      standard input until EOF
./send RELAY --text "hello"       a text message (--text - reads it from stdin)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ferry.address import parse_address
from ferry.cli.common import fail, run, setup_logging
from ferry.cli.parser import Parser
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.errors import FerryError, OutputClosed, UsageError
from ferry.protocol.records import MAX_DATA_PAYLOAD

if TYPE_CHECKING:
    from ferry.client.sources import Source

STDIN_NAME = "stdin"
"""The name of a '-' (stdin) transfer without --name."""

MIN_RECORD_SIZE = 4096
T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="send",
        description="Send files, directories, standard input or a text through a ferry "
        "relay. Prints a code on stdout; give it to the receiver, who runs: "
        "receive RELAY CODE DIR.",
    )
    parser.add_argument("relay", help="relay address, HOST:PORT or [V6]:PORT")
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="files and directories to send; '-' sends standard input",
    )  # fmt: skip
    parser.add_argument("--name", help=f"the name a '-' transfer gets (default: {STDIN_NAME})")
    parser.add_argument(
        "--text", metavar="TEXT", help="send this text message instead ('-': read it from stdin)"
    )
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
        from ferry.client.sender import Sender

        config = ClientConfig(
            wait_timeout=wait, max_failed_attempts=attempts, record_size=record_size,
            max_entries=_from_env("FERRY_MAX_ENTRIES", count, ClientConfig.max_entries),
            max_depth=_from_env("FERRY_MAX_DEPTH", count, ClientConfig.max_depth),
        )  # fmt: skip
        outgoing = what_to_send(args, config)
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
        outgoing.close()


def what_to_send(args: argparse.Namespace, config: ClientConfig) -> Source:
    """The source the arguments name; checked and opened before the relay is contacted."""
    from ferry.client import sources
    from ferry.client.tree import describe_skipped, walk

    paths: list[str] = args.paths
    if args.text is not None:
        if paths:
            raise UsageError("--text sends a message: give no PATH with it")
        if args.text == "-":
            text = sys.stdin.buffer.read(config.max_text + 1)
        else:
            text = args.text.encode("utf-8", "surrogateescape")
        if len(text) > config.max_text:
            raise UsageError(f"the text is over {config.max_text} bytes; send it as a file")
        return sources.TextSource(text)
    if not paths:
        raise UsageError("nothing to send: give a PATH, '-' for stdin, or --text")
    if "-" in paths:
        if len(paths) > 1:
            raise UsageError("'-' (standard input) cannot be sent together with paths")
        name = args.name if args.name is not None else STDIN_NAME
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"--name must be a plain file name, not {name!r}")
        return sources.StreamSource(sys.stdin.fileno(), name, config.record_size)
    if args.name is not None:
        raise UsageError("--name names a '-' (stdin) transfer only")
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        # One file: the original single-file offer, which every receiver knows.
        return sources.Outgoing.open(paths[0], config.record_size)
    tree = walk(paths, config.max_entries, config.max_depth)
    for line in describe_skipped(tree.skipped):
        print(f"send: {line}", file=sys.stderr)
    return sources.TreeSource(tree, config.record_size)


if __name__ == "__main__":
    sys.exit(main())
