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
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry_testing import procs
from ferry_testing.certs import make_certs

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


def test_https_terminated_by_haproxy_from_deploy_reaches_the_relay_with_the_client(
    tmp_path: Path,
) -> None:
    """deploy/haproxy-https.cfg: browsers over https on one port, the CLI in the clear on
    another, both with PROXY v2 to the relay, which sees each client's address."""
    assert HAPROXY is not None, "haproxy is required in CI (apt-get install haproxy)"
    certs = make_certs(tmp_path / "certs")
    bundle = tmp_path / "ferry.pem"
    bundle.write_bytes(certs.cert.read_bytes() + certs.key.read_bytes())
    flags = ("--trusted-proxy", "127.0.0.1/32")
    with relay_process(tmp_path, *flags) as relay:
        ports = {"https": procs.free_port(), "ferry": procs.free_port()}
        config = (procs.ROOT / "deploy" / "haproxy-https.cfg").read_text()
        for old, new in (
            ("maxconn 50000", "maxconn 256"),  # what an unprivileged HAProxy can afford
            ("bind :443 ", f"bind 127.0.0.1:{ports['https']} "),
            ("bind :9021", f"bind 127.0.0.1:{ports['ferry']}"),
            ("/etc/haproxy/ferry.pem", str(bundle)),
            ("127.0.0.1:9031", f"127.0.0.1:{relay.port}"),
        ):
            assert old in config, old
            config = config.replace(old, new)
        (tmp_path / "haproxy.cfg").write_text(config)
        log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
        proxy = procs.spawn([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                            stdout=log, stderr=log)  # fmt: skip
        try:
            for port in ports.values():
                procs.wait_listening(proxy, port, timeout=20)
            context = ssl.create_default_context(cafile=str(certs.ca))
            with socket.socket() as raw:
                raw.settimeout(20)
                raw.bind(("127.0.0.5", 0))
                raw.connect(("127.0.0.1", ports["https"]))
                with context.wrap_socket(raw, server_hostname="relay.ferry.test") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: relay.ferry.test\r\n\r\n")
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
            assert b'src="app.js"' in data
            answer = ask(ports["ferry"], "127.0.0.6", "FERRY 1 SEND\n")
            assert answer.startswith("NAMEPLATE "), answer
            found = _log_with(relay, "role=http ")
            assert "peer=127.0.0.5:" in found and "status=200" in found, found
        finally:
            procs.kill(proxy)
            log.close()
