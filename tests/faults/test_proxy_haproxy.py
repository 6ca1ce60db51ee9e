"""The PROXY protocol through a real HAProxy (Debian's package), started here on loopback.

HAProxy listens on two ports, one sending PROXY v1 (send-proxy) and one v2
(send-proxy-v2) to a real relay that trusts 127.0.0.1 only. Clients reach
HAProxy from loopback aliases (127.0.0.5, 127.0.0.6), so the relay must see
those addresses, not HAProxy's, in its per-address limits and its log.

Locally the test is skipped when haproxy is not installed; in CI (CI=true)
it must run (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry_testing import procs

from .procs import relay_process

HAPROXY = shutil.which("haproxy", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
if HAPROXY is None and os.environ.get("CI") != "true":
    pytest.skip("haproxy is not installed (apt-get install haproxy)", allow_module_level=True)

pytestmark = pytest.mark.timeout(90)

CONFIG = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend v1
    bind 127.0.0.1:{v1}
    default_backend relay_v1

frontend v2
    bind 127.0.0.1:{v2}
    default_backend relay_v2

backend relay_v1
    server relay 127.0.0.1:{relay} send-proxy

backend relay_v2
    server relay 127.0.0.1:{relay} send-proxy-v2
"""


@contextlib.contextmanager
def haproxy(workdir: Path, relay_port: int) -> Iterator[dict[str, int]]:
    assert HAPROXY is not None, "haproxy is required in CI (apt-get install haproxy)"
    ports = {"v1": procs.free_port(), "v2": procs.free_port()}
    config = workdir / "haproxy.cfg"
    config.write_text(CONFIG.format(relay=relay_port, **ports))
    log = open(workdir / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    proc = procs.spawn([HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=log)
    try:
        for port in ports.values():
            procs.wait_listening(proc, port, timeout=20)
        yield ports
    finally:
        procs.kill(proc)
        log.close()


def _log_with(relay: procs.Relay, needle: str, timeout: float = 10) -> str:
    """The relay's log once it holds needle (its lines are written as connections end)."""
    deadline = time.monotonic() + timeout
    while needle not in (log := relay.log()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return log


def ask(port: int, source: str, line: str) -> str:
    """One connection to HAProxy from `source`: send a line, return the relay's answer."""
    with socket.socket() as sock:
        sock.settimeout(20)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(line.encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_limits_and_logs_see_the_real_client_through_haproxy(tmp_path: Path, version: str) -> None:
    flags = ("--trusted-proxy", "127.0.0.1/32", "--lookups-per-minute", "1")
    with relay_process(tmp_path, *flags) as relay, haproxy(tmp_path, relay.port) as ports:
        port = ports[version]
        first = ask(port, "127.0.0.5", "FERRY 1 RECV 42\n")
        again = ask(port, "127.0.0.5", "FERRY 1 RECV 42\n")
        other = ask(port, "127.0.0.6", "FERRY 1 RECV 42\n")
        assert first.startswith("ERROR unknown-nameplate"), first
        assert again.startswith("ERROR rate-limited"), again  # 127.0.0.5's own budget
        assert other.startswith("ERROR unknown-nameplate"), other  # not HAProxy's
        log = _log_with(relay, "peer=127.0.0.6:")
        assert log.count("peer=127.0.0.5:") == 2, log


def test_a_transfer_through_haproxy_works(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(300_000))
    flags = ("--trusted-proxy", "127.0.0.1/32")
    with relay_process(tmp_path, *flags) as relay, haproxy(tmp_path, relay.port) as ports:
        address = f"127.0.0.1:{ports['v2']}"
        send = procs.spawn(
            [*procs.program("send"), address, str(source)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert send.stdout is not None
        try:
            code = procs.read_line(send, timeout=30)
            received = subprocess.run(
                [*procs.program("receive"), address, code, str(tmp_path / "out")],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            assert received.returncode == 0, received.stderr
            assert send.wait(30) == 0
        finally:
            procs.kill(send)
            send.stdout.close()
    assert (tmp_path / "out" / "a.bin").read_bytes() == source.read_bytes()


def test_a_proxy_header_from_an_untrusted_address_is_refused(tmp_path: Path) -> None:
    flags = ("--trusted-proxy", "127.0.0.9/32")  # HAProxy is at 127.0.0.1: not trusted
    with relay_process(tmp_path, *flags) as relay, haproxy(tmp_path, relay.port) as ports:
        answer = ask(ports["v1"], "127.0.0.5", "FERRY 1 SEND\n")
    assert answer.startswith("ERROR bad-request"), answer
    assert "PROXY" in answer
