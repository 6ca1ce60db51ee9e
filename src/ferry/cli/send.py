"""`./send RELAY PATH...`: print the code on stdout (only that), then send.

./send RELAY FILE                 one file (the original contract, unchanged)
./send RELAY PATH [PATH ...]      files and directories, any mix (a tree)
./send RELAY - [--name NAME]      standard input until EOF
./send RELAY --text "hello"       a text message (--text - reads it from stdin)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ferry import platform
from ferry.address import parse_address
from ferry.cli.common import fail, reserve_standard_streams, run, setup_logging
from ferry.cli.launcher import SHIMS, Launcher
from ferry.cli.parser import Parser
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.environment import check_shared, count, read, record_size, seconds
from ferry.errors import FerryError, LocalFileError, OutputClosed, UsageError

if TYPE_CHECKING:
    from ferry.client.sources import Source

STDIN_NAME = "stdin"
"""The name of a '-' (stdin) transfer without --name."""


def build_parser(launcher: Launcher = SHIMS) -> argparse.ArgumentParser:
    parser = Parser(
        prog=launcher.prog("send"),
        description="Send files, directories, standard input or a text through a ferry "
        "relay. Prints a code on stdout; give it to the receiver, who runs: "
        f"{launcher.command('receive')} RELAY CODE DIR.",
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
        help="refusals by the receiver (file exists, no space, declined) tolerated "
        "before giving up (default: 3; env FERRY_ATTEMPTS)",
    )  # fmt: skip
    parser.add_argument(
        "--wrong-codes", type=count, metavar="N",
        help="wrong codes tolerated before giving up (default: 20; env FERRY_WRONG_CODES)",
    )  # fmt: skip
    parser.add_argument(
        "--qr", action="store_true",
        help="at a terminal, also draw the link for a browser receiver as a QR code (on "
        "stderr; the relay must have a web address, its --web-url)",
    )  # fmt: skip
    parser.add_argument(
        "--no-compress", action="store_true",
        help="never compress (by default, data that compresses is compressed when the "
        "network is slower than compressing; the relay sees each record's size)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="say more on stderr")
    return parser


def receive_hint(relay: str, code: Code, launcher: Launcher = SHIMS) -> str:
    """The line a person at a terminal passes on (stderr only: stdout stays the code)."""
    receive = launcher.command("receive")
    return f"send: on the other computer, run: {receive} {relay} {code.text} DIR"


def browser_hints(web_url: str, code: Code, qr: bool, columns: int) -> list[str]:
    """What a person at a terminal sees about a browser receiver (stderr only).

    The link `web_url#code` when the relay gave its web address; with qr, the
    link as a QR code too, or one line saying why there is none.
    """
    if not web_url:
        if not qr:
            return []
        return ["send: no QR code: this relay gives no web address for a browser link "
                "(its operator sets one with --web-url)"]  # fmt: skip
    from ferry.protocol.weblink import browser_link

    link = browser_link(web_url, code.text)
    lines = [f"send: or open this link in a browser: {link}"]
    if qr:
        from ferry.cli.qr import enable_terminal_colors, qr_lines, qr_width

        enable_terminal_colors()
        drawn = qr_lines(link)
        if qr_width(drawn) > columns:
            lines.append(f"send: no QR code: the terminal is {columns} columns wide, "
                         f"the code needs {qr_width(drawn)}")  # fmt: skip
        else:
            lines.extend(drawn)
    return lines


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def show_code(code: Code) -> None:
    # The one and only stdout line; flushed now because stdout is often a pipe.
    try:
        sys.stdout.write(code.text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        # Nobody can read the code (a closed pipe, a full device): stop here.
        # Point stdout at /dev/null so that exiting does not try to flush again.
        with contextlib.suppress(OSError):
            os.dup2(platform.open_fd(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        reason = exc.strerror or type(exc).__name__
        raise OutputClosed(f"cannot write the code to standard output ({reason})") from None


def main(argv: Sequence[str] | None = None, launcher: Launcher = SHIMS) -> int:
    reserve_standard_streams()
    args = build_parser(launcher).parse_args(argv)
    setup_logging("send", args.verbose)
    try:
        check_shared()
        address = parse_address(args.relay)
        if sys.stdout is None:  # closed at start: check before the relay is contacted
            raise OutputClosed("standard output is closed: nobody could read the code")
        wait = args.wait or read("FERRY_WAIT", seconds, ClientConfig.wait_timeout)
        attempts = args.attempts or read("FERRY_ATTEMPTS", count, ClientConfig.max_failed_attempts)
        wrong = args.wrong_codes or read("FERRY_WRONG_CODES", count, ClientConfig.max_wrong_codes)
        records = read("FERRY_RECORD_SIZE", record_size, ClientConfig.record_size)
        from ferry.client.progress import for_stderr
        from ferry.client.sender import Sender

        config = ClientConfig(
            wait_timeout=wait, max_failed_attempts=attempts, max_wrong_codes=wrong,
            record_size=records, compress=not args.no_compress,
            max_entries=read("FERRY_MAX_ENTRIES", count, ClientConfig.max_entries),
            max_depth=read("FERRY_MAX_DEPTH", count, ClientConfig.max_depth),
        )  # fmt: skip
        outgoing = what_to_send(args, config)
    except FerryError as exc:
        return fail("send", exc)
    relay_text = args.relay
    at_terminal = sys.stderr.isatty()

    def show(code: Code) -> None:
        show_code(code)
        if at_terminal:
            lines = [receive_hint(relay_text, code, launcher)]
            lines += browser_hints(sender.web_url, code, args.qr, _columns())
            print("\n".join(lines), file=sys.stderr, flush=True)

    # Only a person at a terminal is shown a link: only then is the relay asked for it.
    sender = Sender(address, outgoing, config, for_stderr(), show, ask_web_url=at_terminal)
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
            text = _stdin().buffer.read(config.max_text + 1)
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
        return sources.StreamSource(_stdin().fileno(), name, config.record_size)
    if args.name is not None:
        raise UsageError("--name names a '-' (stdin) transfer only")
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        # One file: the original single-file offer, which every receiver knows.
        return sources.Outgoing.open(paths[0], config.record_size)
    tree = walk(paths, config.max_entries, config.max_depth)
    for line in describe_skipped(tree.skipped):
        print(f"send: {line}", file=sys.stderr)
    return sources.TreeSource(
        tree, config.record_size, lambda: walk(paths, config.max_entries, config.max_depth)
    )


def _stdin() -> TextIO:
    if sys.stdin is None:  # closed when the program started (cli/common.py)
        raise LocalFileError("standard input is closed: nothing to send")
    return sys.stdin


if __name__ == "__main__":
    sys.exit(main())
