"""`ferry relay` / `./relay :PORT`: run the relay. Standard library only."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ferry.address import parse_address
from ferry.config import RelayConfig
from ferry.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FerryError
from ferry.relay.listen import open_listeners, raise_fd_limit
from ferry.relay.server import Relay

ENV_PREFIX = "FERRY_RELAY_"
EXIT_CANNOT_LISTEN = 4

log = logging.getLogger("ferry.relay")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_default(field: dataclasses.Field[object]) -> object:
    raw = os.environ.get(ENV_PREFIX + field.name.upper())
    default = field.default
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return type(default)(raw)  # type: ignore[call-arg]
    except ValueError:
        raise FerryError(f"invalid {ENV_PREFIX}{field.name.upper()}={raw!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description="Run a ferry relay: pairs senders with receivers and pipes their "
        "encrypted bytes. Every setting can also be given as an environment variable "
        f"{ENV_PREFIX}<NAME>, e.g. {ENV_PREFIX}IDLE_TIMEOUT=300.",
    )
    parser.add_argument(
        "address", help="where to listen: :PORT (all interfaces), HOST:PORT or [V6]:PORT"
    )
    limits = parser.add_argument_group("limits")
    for field in dataclasses.fields(RelayConfig):
        default = _env_default(field)
        if isinstance(default, bool):
            limits.add_argument(
                _flag(field.name), default=default, action=argparse.BooleanOptionalAction,
                help=f"(default: {default})",
            )  # fmt: skip
        else:
            limits.add_argument(
                _flag(field.name), type=type(default), default=default, metavar="N",
                help=f"(default: {default})",
            )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def config_from(args: argparse.Namespace) -> RelayConfig:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(RelayConfig)}
    return RelayConfig(**values)


async def serve(relay: Relay, config: RelayConfig, listeners: list[object]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await relay.start(listeners)  # type: ignore[arg-type]
    await stop.wait()
    log.info(
        "shutting down: draining %d active transfer(s) for up to %.0fs",
        relay.active,
        config.drain_timeout,
    )
    await relay.close(drain_timeout=config.drain_timeout)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s relay %(message)s"
    )
    try:
        args = build_parser().parse_args(argv)
        address = parse_address(args.address, listen=True)
        config = config_from(args)
    except FerryError as exc:
        print(f"relay: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        listeners = open_listeners(address, config.socket_buffer)
    except OSError as exc:
        print(
            f"relay: error: cannot listen on {args.address}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_CANNOT_LISTEN
    fds = raise_fd_limit()
    where = ", ".join(str(sock.getsockname()[:2]) for sock in listeners)
    log.info(
        "listening on %s (fd limit %d, %d KiB max per transfer)",
        where,
        fds,
        config.per_transfer_bytes() // 1024,
    )
    relay = Relay(config)
    try:
        return asyncio.run(serve(relay, config, listeners))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
