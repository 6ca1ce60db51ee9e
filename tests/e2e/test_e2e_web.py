"""Browsers on the relay's port, against the real ./relay: the web app's files, the
WebSocket endpoint, and real transfers with one leg over a WebSocket.

The "browser" in the transfer tests is ferry's own client run over a
WebSocket: ./send or ./receive connects to a local shim (ferry_testing/wsclient.py)
that carries its bytes as masked WebSocket frames of random sizes to the relay's
/ws, so the real protocol (PAKE, records, ACK) crosses the bridge end to end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ferry.protocol import websocket as ws
from ferry_testing.files import sha256_file
from ferry_testing.procs import Relay, clean_env, read_first_line
from ferry_testing.wsclient import HandshakeRefused, WsClient, get, http_request, upgrade_request

from .harness import REPO, Registry, Result, Sender

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20


@pytest.fixture
def shim(procs: Registry, relay: Relay) -> Iterator[str]:
    """host:port of a shim whose connections are WebSocket legs to `relay`."""
    env = clean_env({"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"})
    proc = procs.popen(
        [sys.executable, "-m", "ferry_testing.wsclient", str(relay.port)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line, _ = read_first_line(proc.stdout.fileno(), 20, proc.pid)
    yield f"127.0.0.1:{int(line)}"


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        left = size
        while left:
            piece = os.urandom(min(left, MIB))
            file.write(piece)
            left -= len(piece)
    return path


@pytest.mark.own_relay
def test_cli_sends_to_a_browser_leg_and_the_file_arrives_whole(
    tmp_path: Path,
    relay: Relay,
    shim: str,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
) -> None:
    source = _random_file(tmp_path / "photo.bin", 6 * MIB + 123)
    sender = start_send(relay, source)
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(shim, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait() == 0, sender.stderr()
    assert sha256_file(out / "photo.bin") == sha256_file(source)
    assert "Traceback" not in relay.log()


@pytest.mark.own_relay
def test_browser_leg_sends_to_the_cli_and_the_file_arrives_whole(
    tmp_path: Path,
    relay: Relay,
    shim: str,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
) -> None:
    source = _random_file(tmp_path / "notes.bin", 5 * MIB + 7)
    sender = start_send(shim, source)
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(relay, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait() == 0, sender.stderr()
    assert sha256_file(out / "notes.bin") == sha256_file(source)
    assert "Traceback" not in relay.log()


def test_a_tree_crosses_two_browser_legs(
    tmp_path: Path,
    relay: Relay,
    shim: str,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
) -> None:
    tree = tmp_path / "album"
    (tree / "sub").mkdir(parents=True)
    _random_file(tree / "a.bin", 300_000)
    _random_file(tree / "sub" / "b.bin", 70_000)
    (tree / "empty.txt").write_bytes(b"")
    sender = start_send(shim, tree)
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(shim, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait() == 0, sender.stderr()
    for name in ("a.bin", "sub/b.bin", "empty.txt"):
        assert sha256_file(out / "album" / name) == sha256_file(tree / name)


def test_a_wrong_code_over_a_browser_leg_fails_as_on_the_cli(
    tmp_path: Path,
    relay: Relay,
    shim: str,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
) -> None:
    source = _random_file(tmp_path / "f.bin", 1000)
    sender = start_send(relay, source)
    nameplate, *words = sender.code.split("-")
    wrong = "-".join([nameplate, *reversed(words)])
    out = tmp_path / "out"
    out.mkdir()
    result = run_receive(shim, wrong, out)
    direct = run_receive(relay, wrong, out)
    assert result.returncode == direct.returncode != 0, (result.stderr, direct.stderr)
    assert not any(out.iterdir())


# -- the web app's files and the endpoint -------------------------------------------


def test_root_without_a_web_app_is_a_one_line_404(
    tmp_path: Path, relay_factory: Callable[..., Relay]
) -> None:
    # The package ships one (src/ferry/webapp); a web root that does not exist has none.
    relay = relay_factory(extra_args=["--web-root", str(tmp_path / "absent")])
    answer = get(relay.port, "/")
    assert answer.status == 404
    assert answer.body == b"404 Not Found: this relay has no web app installed\n"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "Traceback" not in relay.log()


@pytest.fixture
def web_relay(tmp_path: Path, relay_factory: Callable[..., Relay]) -> Relay:
    root = tmp_path / "webapp"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><script src=app.js></script>\n")
    (root / "app.js").write_text("console.log('ferry')\n")
    (root / "notes.key").write_text("not served\n")
    (root / ".hidden.js").write_text("not served\n")
    (tmp_path / "secret.js").write_text("outside\n")
    (root / "escape.js").symlink_to(tmp_path / "secret.js")
    return relay_factory(extra_args=["--web-root", str(root)])


def test_web_app_files_are_served_with_strict_headers(web_relay: Relay) -> None:
    page = get(web_relay.port, "/")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.body.startswith(b"<!doctype html>")
    policy = page.headers["content-security-policy"]
    port = web_relay.port
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert f"connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port}" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    script = get(web_relay.port, "/app.js")
    assert (script.status, script.body) == (200, b"console.log('ferry')\n")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    head = get(web_relay.port, "/app.js", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(script.body))


PATHS_NOT_SERVED = [
    "/missing.js",
    "/../secret.js",
    "/%2e%2e/secret.js",
    "/sub/..%2f..%2fsecret.js",
    "/escape.js",  # a symbolic link out of the web root
    "/notes.key",  # no known Content-Type
    "/.hidden.js",
    "/app.js/",
    "//etc/passwd",
    "/%ff.js",
]


def test_paths_outside_the_app_or_unknown_are_404(web_relay: Relay) -> None:
    for path in PATHS_NOT_SERVED:
        answer = get(web_relay.port, path)
        assert answer.status == 404, (path, answer)
        assert b"outside" not in answer.body and b"not served" not in answer.body
    assert "Traceback" not in web_relay.log()


@pytest.mark.own_relay
def test_bad_upgrades_are_refused_with_their_status(relay: Relay) -> None:
    port = relay.port
    plain = get(port, "/ws")
    assert plain.status == 426 and plain.headers["upgrade"] == "websocket"
    no_key = upgrade_request(port).replace(b"Sec-WebSocket-Key", b"X-Nothing")
    assert b" 400 " in http_request(port, no_key).split(b"\r\n")[0]
    old = upgrade_request(port).replace(b"Version: 13", b"Version: 8")
    answer = http_request(port, old)
    assert b" 426 " in answer.split(b"\r\n")[0] and b"Sec-WebSocket-Version: 13" in answer
    elsewhere = upgrade_request(port).replace(b"GET /ws ", b"GET /socket ")
    assert b" 404 " in http_request(port, elsewhere).split(b"\r\n")[0]
    assert "Traceback" not in relay.log()


async def test_origin_must_be_this_host_or_absent(relay: Relay) -> None:
    port = relay.port
    with pytest.raises(HandshakeRefused) as refused:
        await WsClient.connect(port, origin="https://evil.example")
    assert refused.value.status == 403
    for origin in (f"http://127.0.0.1:{port}", None):
        client = await WsClient.connect(port, origin=origin)
        assert client.answer is not None
        assert client.answer.headers["sec-websocket-protocol"] == ws.SUBPROTOCOL
        client.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (ws.encode_frame(ws.Opcode.BINARY, b"FERRY 1 SEND\n"), ws.CloseCode.PROTOCOL_ERROR),
        (b"\xf2\x80abcd", ws.CloseCode.PROTOCOL_ERROR),  # reserved bits
        (ws.encode_frame(ws.Opcode.TEXT, b"hi", mask=b"abcd"), ws.CloseCode.UNSUPPORTED_DATA),
    ],
)
async def test_garbage_frames_get_a_close_with_their_code(
    relay: Relay, frame: bytes, code: ws.CloseCode
) -> None:
    client = await WsClient.connect(relay.port)
    await client.send_raw(frame)
    data, closed_with = await client.read_until_close()
    assert (data, closed_with) == (b"", code)
    client.close()
    assert "Traceback" not in relay.log()


async def test_a_rendezvous_refusal_reaches_the_browser_then_a_normal_close(relay: Relay) -> None:
    client = await WsClient.connect(relay.port)
    await client.send(b"FERRY 1 RECV 999999\n")
    data, code = await client.read_until_close()
    assert data.startswith(b"ERROR unknown-nameplate"), data
    assert code == ws.CloseCode.NORMAL
    client.close()


async def test_per_address_connection_limit_counts_websocket_legs_once(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(extra_args=["--limit-loopback", "--max-connections-per-address", "2"])
    first = await WsClient.connect(relay.port)
    # While the first leg stays open, a second comes and goes: each time it gives
    # back its own slot, once (twice would free the first leg's too: then a third fits).
    for _ in range(3):
        second = await WsClient.connect(relay.port)
        with pytest.raises(HandshakeRefused) as refused:
            await WsClient.connect(relay.port)
        assert refused.value.status == 429, refused.value.head
        assert b"too many connections from your address" in refused.value.body
        second.close()
        await asyncio.sleep(0.3)
    first.close()


def test_no_web_gives_http_the_rendezvous_refusal(
    relay_factory: Callable[..., Relay],
) -> None:
    relay = relay_factory(extra_args=["--no-web"])
    answer = http_request(relay.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"ERROR bad-request"), answer
    upgrade = http_request(relay.port, upgrade_request(relay.port))
    assert upgrade.startswith(b"ERROR bad-request"), upgrade


@pytest.mark.own_relay
def test_the_relay_serves_the_shipped_web_app_by_default(relay: Relay) -> None:
    from ferry.webbundle import WEBAPP

    for name in ("index.html", "app.js", "app.css"):
        answer = get(relay.port, "/" if name == "index.html" else f"/{name}")
        assert answer.status == 200, name
        assert answer.body == (WEBAPP / name).read_bytes(), name
