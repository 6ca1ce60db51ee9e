"""The relay program behind cli/relay.py (which listens before importing this module).
Standard library only, unless
--cluster is given: then the Redis directory (ferry.relay.cluster, the optional
`redis` package) is imported, and only then.

Every RelayConfig and ClusterConfig field is a flag (--idle-timeout) and an
environment variable (FERRY_RELAY_IDLE_TIMEOUT); the flag wins. SIGTERM or SIGINT: stop
accepting, drain running transfers for up to --drain-timeout, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable, Sequence

from ferry import environment, platform, webbundle
from ferry.address import Address, parse_address
from ferry.cli.common import fail
from ferry.cli.parser import Parser
from ferry.config import ClusterConfig, RelayConfig, field_docs
from ferry.errors import EXIT_OK, EXIT_USAGE, CannotListen, FerryError, LocalFileError, UsageError
from ferry.protocol import weblink
from ferry.relay import buffers, logs
from ferry.relay.directory import Directory
from ferry.relay.forward import NodeLinks, read_secret
from ferry.relay.listen import EarlyListeners, open_listeners, raise_fd_limit
from ferry.relay.metrics import MetricsServer, render
from ferry.relay.pump import SPLICE_AVAILABLE
from ferry.relay.server import Relay

ENV_PREFIX = environment.RELAY_PREFIX

log = logging.getLogger(logs.LOGGER_NAME)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_default(field: dataclasses.Field[object]) -> object:
    return environment.relay_setting(field.name, field.default)


def _field_help(cls: type = RelayConfig) -> dict[str, str]:
    """Each config field's docstring, first sentence, for --help (the source is the doc)."""
    return {
        name: " ".join(text.split()).split(". ")[0].rstrip(".")
        for name, text in field_docs(cls).items()
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
            if default == "":  # a text setting that is unset by default: no "(default: )"
                text = helps.get(field.name, "").replace("%", "%%")
            limits.add_argument(
                _flag(field.name), type=type(default), default=default,
                metavar="VALUE" if isinstance(default, str) else "N", help=text,
            )  # fmt: skip
    cluster = parser.add_argument_group("cluster (docs/CLUSTER.md)")
    helps = _field_help(ClusterConfig)
    for field in dataclasses.fields(ClusterConfig):
        default = _env_default(field)
        text = helps.get(field.name, "").replace("%", "%%")
        shown = f" (default: {default})" if default != "" else ""
        cluster.add_argument(
            _flag(field.name), type=type(default), default=default, metavar="VALUE",
            help=text + shown,
        )  # fmt: skip
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--log-format", choices=logs.FORMATS,
        default=environment.read(
            ENV_PREFIX + "LOG_FORMAT", environment.one_of(*logs.FORMATS), "human"
        ),
        help="one line per connection outcome, as key=value text or JSON (default: %(default)s)",
    )  # fmt: skip
    ops.add_argument(
        "--metrics", metavar="ADDRESS", default=environment.text(ENV_PREFIX + "METRICS"),
        help="serve /metrics (Prometheus) and /healthz over HTTP at HOST:PORT (default: off); "
        "keep it private, e.g. 127.0.0.1:9022",
    )  # fmt: skip
    ops.add_argument(
        "--ready-file", metavar="PATH", default=environment.text(ENV_PREFIX + "READY_FILE"),
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
        raise UsageError("; ".join(problems))
    return config


def cluster_config_from(args: argparse.Namespace) -> ClusterConfig:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(ClusterConfig)}
    cluster = ClusterConfig(**values)
    problems = cluster.problems()
    if cluster.node_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,40}", cluster.node_id):
        problems.append("--node-id takes 1 to 40 letters, digits, '.', '_' or '-'")
    if cluster.node_address:
        parse_address(cluster.node_address, listen=True)  # raises InvalidAddress
    if problems:
        raise UsageError("; ".join(problems))
    return cluster


def load_site_packages() -> None:
    """Put site-packages on sys.path if the interpreter started without them.

    ./relay starts Python with -S (no site module: most of a bare start-up's
    time, for a program that needs the standard library only). The optional
    redis package of --cluster lives in site-packages: site.main() adds them
    (and a virtual environment's) as a normal start would have.
    """
    if sys.flags.no_site:
        import site

        site.main()


def cluster_parts(
    cluster: ClusterConfig, config: RelayConfig, node: str, bound_port: int
) -> tuple[Directory, NodeLinks]:
    """The Redis directory and node links of a cluster node (imports the optional extra)."""
    load_site_packages()
    try:
        from ferry.relay.cluster import RedisDirectory
    except ImportError:
        raise UsageError(
            f"--cluster needs the redis package, which {sys.executable} cannot import: "
            "pip install 'ferry[cluster]' (./relay runs FERRY_PYTHON, else the checkout's "
            ".venv Python, else python3)"
        ) from None
    try:
        secret = read_secret(cluster.cluster_secret_file)
    except OSError as exc:
        raise UsageError(f"cannot read {cluster.cluster_secret_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    where = parse_address(cluster.node_address, listen=True)
    port = where.port or bound_port  # port 0: the port this relay bound
    address = f"[{where.host}]:{port}" if ":" in where.host else f"{where.host}:{port}"
    directory = RedisDirectory(
        cluster.cluster, node, address, cluster.cluster_ttl, cluster.directory_timeout
    )
    log.info("cluster node %s at %s, directory %s", node, address, _redacted(cluster.cluster))
    return directory, NodeLinks(config, directory, secret)


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
    platform.on_termination(asyncio.get_running_loop(), lambda signum: stop.set())
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


def _bound(sock: socket.socket) -> Address:
    """Where a socket listens, as a person writes it: host:port or [v6]:port."""
    host, port = sock.getsockname()[:2]
    return Address(host, port)


def _write_ready_file(path: str, listener: socket.socket) -> None:
    """The bound address, written whole or not at all (rename), for scripts to wait on."""
    text = f"{_bound(listener)}\n"
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w", encoding="ascii") as file:
        file.write(text)
    os.replace(temp, path)


def _url(sock: socket.socket) -> str:
    return f"http://{_bound(sock)}/metrics"


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
    ceiling = buffers.memory_ceiling(config)
    log.info(
        "all transfers together hold at most %d MiB (%s): %d transfers of %d KiB",
        ceiling >> 20,
        "--max-memory" if config.max_memory else "a quarter of this machine's memory",
        ceiling // config.transfer_budget,
        config.transfer_budget // 1024,
    )
    if receive < plan.sender_receive or send < plan.receiver_send:
        log.warning(
            "the kernel capped the data buffers below the plan (%d KiB granted of %d): "
            "net.core.rmem_max / wmem_max, and no CAP_NET_ADMIN; transfers over long paths "
            "will be slower: raise both sysctls to at least %d (deploy/99-ferry-relay.conf)",
            min(receive, send) // 1024,
            max(plan.sender_receive, plan.receiver_send) // 1024,
            plan.sender_receive,
        )


def _log_web(relay: Relay) -> None:
    """Say what the web front serves: the bundle's SHA-256 (the value
    scripts/webapp_sha256.py prints and docs/SECURITY.md quotes), and https."""
    web = relay.web
    if web is None:
        return
    if web.root.is_dir():
        log.info(
            "web app %s: bundle SHA-256 %s (scripts/webapp_sha256.py computes the same)",
            web.root,
            webbundle.bundle_digest(web.root),
        )
    else:
        log.warning("web app: no directory %s, browsers get 404", web.root)
    if web.tls is not None:
        log.info("https on the same port with --tls-cert %s", relay.config.tls_cert)


def _log_web_url(config: RelayConfig) -> None:
    """Say which address senders are given for browser links (and if it cannot work)."""
    if not config.web_url:
        return
    log.info("senders that ask are given the web app's address %s", config.web_url)
    if not weblink.secure_context(config.web_url):
        log.warning(
            "browsers run the web app only over https (or http from the same machine): "
            "a link to %s opens a page that does nothing",
            config.web_url,
        )


def pump_kind(config: RelayConfig) -> str:
    """How the relay moves bytes, for its start-up line."""
    if config.use_splice and SPLICE_AVAILABLE:
        return "splice pump"
    if config.use_splice:
        return "copy pump: this system has no splice"
    return "copy pump"


def main(argv: Sequence[str] | None = None, early: EarlyListeners | None = None) -> int:
    """Run the relay; `early` are sockets cli/relay.py bound before importing this module.
    They are used only if the parsed address is the one they were bound for, and closed
    on every way out."""
    try:
        return _main(argv, early)
    finally:
        if early is not None:
            early.close()  # closing twice is harmless; served sockets are closed anyway


def _adopt(early: EarlyListeners | None, text: str, address: Address) -> list[socket.socket]:
    """The early sockets if they were bound for this address, else freshly bound ones."""
    if early is not None and early.text == text and early.address == address:
        return early.sockets
    if early is not None:
        early.close()
    return open_listeners(address)


def _main(argv: Sequence[str] | None, early: EarlyListeners | None) -> int:
    if not platform.RELAY_SUPPORTED:  # before anything else: one line, never a traceback
        print(f"relay: error: {platform.RELAY_UNSUPPORTED_MESSAGE}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        args = build_parser().parse_args(argv)
        environment.check_shared()
        address = parse_address(args.address, listen=True)
        metrics_address = None if args.metrics is None else parse_address(args.metrics, listen=True)
        config = config_from(args)
        cluster = cluster_config_from(args)
        if args.log_format not in logs.FORMATS:
            raise UsageError(
                f"invalid {ENV_PREFIX}LOG_FORMAT={args.log_format!r} "
                f"(expected {' or '.join(logs.FORMATS)})"
            )
    except FerryError as exc:
        return fail("relay", exc)
    node = (cluster.node_id or secrets.token_hex(3)) if cluster.cluster else ""
    logs.setup(args.log_format, args.quiet, node)
    where = address
    try:
        plan = buffers.plan(config)
        listeners = _adopt(early, args.address, address)
        metrics_listeners: list[socket.socket] = []
        if metrics_address is not None:
            where = metrics_address
            metrics_listeners = open_listeners(metrics_address)
    except OSError as exc:
        return fail("relay", CannotListen(f"cannot listen on {where}: {exc.strerror or exc}"))
    if metrics_listeners:
        log.info("metrics on %s", ", ".join(_url(sock) for sock in metrics_listeners))
    fds = raise_fd_limit()
    _log_budget(config, plan)
    _log_web_url(config)

    def ready() -> None:
        log.info(
            "listening on %s (fd limit %s, %s)",
            ", ".join(str(_bound(sock)) for sock in listeners),
            "unknown" if fds is None else fds,
            pump_kind(config),
        )
        if args.ready_file:
            try:
                _write_ready_file(args.ready_file, listeners[0])
            except OSError as exc:
                raise LocalFileError(f"cannot write {args.ready_file}: {exc.strerror}") from None

    try:
        if cluster.cluster:
            directory, links = cluster_parts(cluster, config, node, listeners[0].getsockname()[1])
            relay = Relay(config, directory=directory, links=links)
        else:
            relay = Relay(config)
    except FerryError as exc:
        for sock in (*listeners, *metrics_listeners):
            sock.close()
        return fail("relay", exc)
    _log_web(relay)
    try:
        return asyncio.run(serve(relay, config, listeners, metrics_listeners, ready))
    except (FerryError, KeyboardInterrupt) as exc:
        return fail("relay", exc)
    finally:
        for sock in (*listeners, *metrics_listeners):
            sock.close()


def _redacted(url: str) -> str:
    """A Redis URL without its password, for the log."""
    return re.sub(r"//[^@/]*@", "//***@", url)
