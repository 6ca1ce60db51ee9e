"""`ferry relay` / `./relay :PORT`: run the relay. Standard library only.

Every RelayConfig field is a flag (--idle-timeout) and an environment
variable (FERRY_RELAY_IDLE_TIMEOUT); the flag wins. SIGTERM or SIGINT: stop
accepting, drain running transfers for up to --drain-timeout, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence

from ferry.address import parse_address
from ferry.cli.parser import Parser
from ferry.config import RelayConfig, field_docs
from ferry.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FerryError
from ferry.relay import buffers, logs
from ferry.relay.listen import open_listeners, raise_fd_limit
from ferry.relay.metrics import MetricsServer, render
from ferry.relay.server import Relay

ENV_PREFIX = "FERRY_RELAY_"
EXIT_CANNOT_LISTEN = 4

log = logging.getLogger(logs.LOGGER_NAME)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_default(field: dataclasses.Field[object]) -> object:
    raw = os.environ.get(ENV_PREFIX + field.name.upper())
    default = field.default
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, tuple):
        return tuple(item for item in raw.replace(",", " ").split() if item)
    try:
        return type(default)(raw)  # type: ignore[call-arg]
    except ValueError:
        raise FerryError(f"invalid {ENV_PREFIX}{field.name.upper()}={raw!r}") from None


def _field_help() -> dict[str, str]:
    """Each RelayConfig field's docstring, first sentence, for --help (the source is the doc)."""
    return {
        name: " ".join(text.split()).split(". ")[0].rstrip(".")
        for name, text in field_docs(RelayConfig).items()
    }


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="relay",
        description="Run a ferry relay: pairs senders with receivers and pipes their "
        "encrypted bytes. Every setting can also be given as an environment variable "
        f"{ENV_PREFIX}<NAME>, e.g. {ENV_PREFIX}IDLE_TIMEOUT=300.",
    )
    parser.add_argument(
        "address", help="where to listen: :PORT (all interfaces), HOST:PORT or [V6]:PORT"
    )
    limits = parser.add_argument_group("limits")
    helps = _field_help()
    for field in dataclasses.fields(RelayConfig):
        default = _env_default(field)
        text = helps.get(field.name, "").replace("%", "%%")
        text = f"{text} (default: {default})" if text else f"(default: {default})"
        if isinstance(default, bool):
            limits.add_argument(
                _flag(field.name), default=default, action=argparse.BooleanOptionalAction,
                help=text,
            )  # fmt: skip
        elif isinstance(default, tuple):
            text = text.replace(
                f"(default: {default})", f"(default: {' '.join(default) or 'none'})"
            )
            limits.add_argument(
                _flag(field.name), action="append", metavar="CIDR", default=None, help=text,
            )  # fmt: skip
            parser.set_defaults(**{f"{field.name}_default": default})
        else:
            limits.add_argument(
                _flag(field.name), type=type(default), default=default, metavar="N",
                help=text,
            )  # fmt: skip
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--log-format", choices=logs.FORMATS,
        default=os.environ.get(ENV_PREFIX + "LOG_FORMAT", "human"),
        help="one line per connection outcome, as key=value text or JSON (default: %(default)s)",
    )  # fmt: skip
    ops.add_argument(
        "--metrics", metavar="ADDRESS", default=os.environ.get(ENV_PREFIX + "METRICS") or None,
        help="serve /metrics (Prometheus) and /healthz over HTTP at HOST:PORT (default: off); "
        "keep it private, e.g. 127.0.0.1:9022",
    )  # fmt: skip
    ops.add_argument(
        "--ready-file", metavar="PATH", default=os.environ.get(ENV_PREFIX + "READY_FILE") or None,
        help="once listening, write the address actually bound (HOST:PORT, one line) to "
        "PATH; with port 0 this is how a script learns the port",
    )  # fmt: skip
    ops.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def config_from(args: argparse.Namespace) -> RelayConfig:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(RelayConfig)}
    for name, value in values.items():
        if value is None:  # a repeatable flag not given: its environment value or default
            values[name] = getattr(args, f"{name}_default")
        elif isinstance(value, list):
            values[name] = tuple(value)
    config = RelayConfig(**values)
    problems = config.problems()
    if problems:
        raise FerryError("; ".join(problems))
    return config


async def serve(
    relay: Relay,
    config: RelayConfig,
    listeners: list[socket.socket],
    metrics_listeners: list[socket.socket] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT, then drain. on_ready runs once the relay accepts and
    the signals are handled, so whoever waits for it may stop the relay at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    endpoint: MetricsServer | None = None
    if metrics_listeners:
        endpoint = MetricsServer(
            lambda: render(relay.metrics, relay.gauges()), lambda: not relay.draining
        )
        await endpoint.start(metrics_listeners)
    await relay.start(listeners)
    if on_ready is not None:
        on_ready()
    await stop.wait()
    started = time.monotonic()
    log.info(
        "shutting down: draining %d active transfer(s) for up to %.0fs",
        relay.active,
        config.drain_timeout,
    )
    await relay.close(drain_timeout=config.drain_timeout)
    if endpoint is not None:
        await endpoint.close()
    log.info("stopped after draining for %.2fs", time.monotonic() - started)
    return EXIT_OK


def _write_ready_file(path: str, listener: socket.socket) -> None:
    """The bound address, written whole or not at all (rename), for scripts to wait on."""
    host, port = listener.getsockname()[:2]
    text = f"[{host}]:{port}\n" if ":" in host else f"{host}:{port}\n"
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w", encoding="ascii") as file:
        file.write(text)
    os.replace(temp, path)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def _log_budget(config: RelayConfig, plan: buffers.BufferPlan) -> None:
    """Say what one transfer may hold and what the kernel really grants."""
    receive, send = buffers.granted_data_buffers(plan)
    log.info(
        "per-transfer budget %d KiB (at most %d KiB held): %d KiB for bytes in flight to "
        "the receiver, %d KiB for the sender's window; %d KiB per idle connection",
        config.transfer_budget // 1024,
        plan.worst_case() // 1024,
        send // 1024,
        receive // 1024,
        2 * plan.control // 1024,
    )
    if receive < plan.sender_receive or send < plan.receiver_send:
        log.warning(
            "the kernel capped the data buffers below the plan (%d KiB granted of %d): "
            "net.core.rmem_max / wmem_max, and no CAP_NET_ADMIN; transfers over long paths "
            "will be slower: raise both sysctls to at least %d (deploy/99-ferry-relay.conf)",
            min(receive, send) // 1024,
            max(plan.sender_receive, plan.receiver_send) // 1024,
            plan.listen,
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        address = parse_address(args.address, listen=True)
        metrics_address = None if args.metrics is None else parse_address(args.metrics, listen=True)
        config = config_from(args)
        if args.log_format not in logs.FORMATS:
            raise FerryError(
                f"invalid {ENV_PREFIX}LOG_FORMAT={args.log_format!r} "
                f"(expected {' or '.join(logs.FORMATS)})"
            )
    except FerryError as exc:
        print(f"relay: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(args.log_format, args.quiet)
    where = address
    try:
        plan = buffers.plan(config)
        listeners = open_listeners(address, plan.listen)
        metrics_listeners: list[socket.socket] = []
        if metrics_address is not None:
            where = metrics_address
            metrics_listeners = open_listeners(metrics_address, 64 * 1024)
    except OSError as exc:
        print(f"relay: error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    if metrics_listeners:
        log.info("metrics on %s", ", ".join(_url(sock) for sock in metrics_listeners))
    fds = raise_fd_limit()
    _log_budget(config, plan)

    def ready() -> None:
        log.info(
            "listening on %s (fd limit %d)",
            ", ".join(str(sock.getsockname()[:2]) for sock in listeners),
            fds,
        )
        if args.ready_file:
            try:
                _write_ready_file(args.ready_file, listeners[0])
            except OSError as exc:
                raise FerryError(f"cannot write {args.ready_file}: {exc.strerror}") from None

    relay = Relay(config)
    try:
        return asyncio.run(serve(relay, config, listeners, metrics_listeners, ready))
    except FerryError as exc:
        print(f"relay: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
