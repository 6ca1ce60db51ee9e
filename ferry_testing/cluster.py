"""A relay cluster on loopback for tests and benchmarks: real redis-server, real
HAProxy (deploy/haproxy.cfg, addresses rewritten), relay nodes with --cluster.

Theory of operation. redis-server and HAProxy cannot report a port they
bound, so each gets a port free a moment before (procs.free_port) and is
waited for with procs.wait_listening; a start that loses the race is
retried on another port. Relay nodes start on port 0 with --ready-file
(procs.start_relay) and --node-address 127.0.0.1:0 (the port they bound),
under the project's venv Python (FERRY_PYTHON): --cluster imports redis.

Skips: `require_binaries()` skips a test when redis-server or haproxy is
missing, except with CI=true, where it fails instead: CI installs both
(.ci/run) and the suite must run there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from ferry_testing import procs

ROOT = procs.ROOT
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
BALANCER_SOURCE = "127.0.0.2"
"""HAProxy's source address towards the nodes: the one --trusted-proxy names."""
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SECRET = b"test-cluster-secret-0123456789abcdef"
TTL = 2.0
"""Seconds a node's nameplates outlive it in the tests' directory (short: failover tests)."""
START_TRIES = 5


def require_binaries() -> None:
    """Skip (locally) or fail (CI=true) when redis-server or haproxy is missing."""
    import pytest

    missing = [name for name in ("redis-server", "haproxy") if shutil.which(name) is None]
    if not missing:
        return
    text = f"{' and '.join(missing)} not installed (Debian: apt-get install redis-server haproxy)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(text + "; CI must run the cluster tests")
    pytest.skip(text)


def node_env() -> dict[str, str]:
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else "python3"
    return procs.clean_env({"FERRY_PYTHON": python})


# -- redis --------------------------------------------------------------------


@dataclass
class RedisServer:
    workdir: Path
    port: int = 0
    proc: procs.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{procs.HOST}:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) an empty redis-server without persistence."""
        for _ in range(START_TRIES):
            port = self.port or procs.free_port()
            log = open(self.workdir / f"redis-{port}.log", "ab")  # noqa: SIM115
            with log:
                argv = [
                    "redis-server", "--port", str(port), "--bind", procs.HOST,
                    "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                ]  # fmt: skip
                proc = procs.spawn(argv, stdout=log, stderr=log)
            try:
                procs.wait_listening(proc, port, procs.START_TIMEOUT)
            except procs.StartFailed:
                if self.port:
                    raise
                continue
            self.port, self.proc = port, proc
            return
        raise procs.StartFailed("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def command(self, *args: str) -> str:
        """One command through the RESP protocol (no redis-cli needed); the reply, raw."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection((procs.HOST, self.port), timeout=5) as sock:
            sock.sendall(b"".join(parts))
            return sock.recv(65536).decode(errors="replace")

    def get(self, key: str) -> str | None:
        reply = self.command("GET", key)
        if reply.startswith("$-1"):
            return None
        return reply.split("\r\n")[1]


# -- haproxy --------------------------------------------------------------------


def haproxy_config(bind_port: int, servers: Sequence[tuple[str, int, int]]) -> str:
    """deploy/haproxy.cfg with its bind and server lines pointed at loopback nodes
    (and a maxconn that fits a test machine's descriptor limit).

    servers: (name, relay port, metrics port) of each node.
    """
    text = HAPROXY_CONFIG.read_text()
    # The deploy file's maxconn needs twice as many descriptors; a test machine may
    # not let an unprivileged HAProxy raise its limit that far.
    text = re.sub(r"(?m)^(\s*maxconn )\d+$", r"\g<1>2000", text)
    text = re.sub(r"(?m)^(\s*bind )\S+$", rf"\g<1>{procs.HOST}:{bind_port}", text)
    text = re.sub(r"(?m)^\s*server .*\n", "", text)
    # The balancer connects from its own loopback address, the one the nodes
    # trust for PROXY headers (BALANCER_SOURCE); clients and other nodes use
    # 127.0.0.1 and send none.
    lines = f"    source {BALANCER_SOURCE}\n" + "".join(
        f"    server {name} {procs.HOST}:{port} port {metrics}\n" for name, port, metrics in servers
    )
    return text.rstrip("\n") + "\n" + lines


@dataclass
class Balancer:
    workdir: Path
    port: int = 0
    proc: procs.Popen | None = None

    @property
    def address(self) -> str:
        return procs.format_address(procs.HOST, self.port)

    def start(self, servers: Sequence[tuple[str, int, int]]) -> None:
        for _ in range(START_TRIES):
            port = procs.free_port()
            config = self.workdir / "haproxy.cfg"
            config.write_text(haproxy_config(port, servers))
            log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115
            with log:
                proc = procs.spawn(["haproxy", "-db", "-f", config], stdout=log, stderr=log)
            try:
                procs.wait_listening(proc, port, procs.START_TIMEOUT)
            except procs.StartFailed:
                continue
            self.port, self.proc = port, proc
            return
        raise procs.StartFailed("haproxy did not start")

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None


# -- the cluster ----------------------------------------------------------------


@dataclass
class Cluster:
    workdir: Path
    redis: RedisServer
    balancer: Balancer
    nodes: dict[str, procs.Relay] = field(default_factory=dict)
    secret_file: Path = Path()

    def start_node(self, name: str, *flags: str) -> procs.Relay:
        node = procs.start_relay(
            self.workdir,
            "--cluster", self.redis.url,
            "--node-address", f"{procs.HOST}:0",
            "--cluster-secret-file", str(self.secret_file),
            "--node-id", name,
            "--cluster-ttl", str(TTL),
            "--trusted-proxy", f"{BALANCER_SOURCE}/32",
            *flags,
            metrics=True,
            env=node_env(),
        )  # fmt: skip
        self.nodes[name] = node
        return node

    def servers(self) -> list[tuple[str, int, int]]:
        return [
            (name, node.port, node.metrics_port or 0) for name, node in sorted(self.nodes.items())
        ]

    def wait_backends_up(self, timeout: float = 20.0) -> None:
        """Until the balancer passes a connection to each node in turn (its checks passed).

        Each node counts connections; a round of len(nodes) connections through
        the balancer must reach every live node once.
        """
        deadline = time.monotonic() + timeout
        live = [node for node in self.nodes.values() if node.alive()]
        while time.monotonic() < deadline:
            before = [node.metrics().get("connections_total", 0) for node in live]
            for _ in live:
                with (
                    suppress(OSError),
                    socket.create_connection((procs.HOST, self.balancer.port), timeout=2) as sock,
                ):
                    sock.sendall(b"PROBE\n")
                    sock.recv(256)
            after = [node.metrics().get("connections_total", 0) for node in live]
            if all(b > a for a, b in zip(before, after, strict=True)):
                return
            time.sleep(0.2)
        raise TimeoutError("the balancer did not reach every node")

    def stop(self) -> None:
        self.balancer.stop()
        for node in self.nodes.values():
            with suppress(Exception):
                node.stop()
        self.redis.stop()


@contextmanager
def cluster(workdir: Path, count: int = 3, *flags: str) -> Iterator[Cluster]:
    """redis-server, `count` relay nodes (node1...), HAProxy in front; all stopped after."""
    secret_file = workdir / "cluster.secret"
    secret_file.write_bytes(SECRET + b"\n")
    secret_file.chmod(0o600)
    started = Cluster(workdir, RedisServer(workdir), Balancer(workdir), secret_file=secret_file)
    try:
        started.redis.start()
        for index in range(1, count + 1):
            started.start_node(f"node{index}", *flags)
        started.balancer.start(started.servers())
        started.wait_backends_up()
        yield started
    finally:
        started.stop()


def kill_hard(node: procs.Relay) -> None:
    """SIGKILL a node's process (its python) and reap it."""
    with suppress(ProcessLookupError):
        os.kill(node.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        node.proc.wait(10)
