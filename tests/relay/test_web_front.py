"""The web front and the WebSocket bridge, in process (relay on 127.0.0.1:0).

Sorting (first bytes, slow starts, silence, a trusted proxy's header), the
bridge's control frames and close codes, its socket options, and the pump's
splice path through the bridge's socketpair.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from pathlib import Path

import pytest

from ferry.protocol import websocket as ws
from ferry.relay import bridge, pump, refusals, tls
from ferry.relay.legs import LegEnd
from ferry_testing.certs import Certs, make_certs
from ferry_testing.waiting import until
from ferry_testing.wsclient import HandshakeRefused, WsClient, parse_answer, upgrade_request
from tests.relay.clock import ClockLoop, run_on_clock, turns
from tests.relay.conditions import logged
from tests.relay.harness import (
    PAKE_RECORD,
    RawClient,
    claim,
    close_all,
    register_sender,
    running_relay,
)
from tests.relay.test_limits_enforced import nothing_to_read

pytestmark = pytest.mark.timeout(60)

GET_ROOT = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PROXY_V1 = b"PROXY TCP4 203.0.113.9 192.0.2.1 33566 9021\r\n"


async def test_a_request_whose_first_bytes_trickle_in_is_still_http(tmp_path: Path) -> None:
    async with running_relay(web_root=str(tmp_path)) as r:
        for first in (b"G", b"HE"):
            rest = (b"HEAD" if first == b"HE" else b"GET")[len(first) :] + GET_ROOT[3:]
            client = await RawClient.connect(r.port)
            await client.send(first)
            await asyncio.sleep(0.15)
            await client.send(rest)
            answer = await client.read_until_closed()
            assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer
            client.close()
        assert r.relay.handshaking == 0
        assert r.relay.web is not None and r.relay.web.fds_held() == 0


@pytest.mark.parametrize("sent", [b"", b"GE"])
async def test_silence_or_a_stalled_method_is_refused_at_the_handshake_deadline(
    sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay(handshake_timeout=0.5) as r:
        client = await RawClient.connect(r.port)
        await client.send(sent)
        started = asyncio.get_running_loop().time()
        assert await client.line(timeout=5) == "ERROR timeout handshake timed out"
        assert asyncio.get_running_loop().time() - started < 2.0
        [line] = await logged(caplog)
        assert (line["outcome"], line["reason"]) == ("refused", "timeout")
        client.close()
        await until(lambda: len(r.relay.gate.per_address) == 0, "slot released")


async def test_a_ferry_client_behind_a_trusted_proxy_is_served_as_before() -> None:
    async with running_relay(trusted_proxy=("127.0.0.1/32",)) as r:
        client = await RawClient.connect(r.port)
        await client.send(PROXY_V1 + b"FERRY 1 SEND\n")
        assert (await client.line()).startswith("NAMEPLATE ")
        client.close()


async def test_http_behind_a_trusted_proxy_gets_the_clients_address_and_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    settings = {"trusted_proxy": ("127.0.0.1/32",), "max_connections_per_address": 1}
    async with running_relay(web_root=str(tmp_path), **settings) as r:
        page = await RawClient.connect(r.port)
        await page.send(PROXY_V1 + GET_ROOT)
        assert (await page.read_until_closed()).startswith(b"HTTP/1.1 404 ")
        page.close()
        [line] = await logged(caplog)
        assert (line["role"], line["peer"], line["status"]) == ("http", "203.0.113.9:33566", 404)
        # A WebSocket leg of that client holds its one slot: a second is refused.
        legs = []
        for _ in range(2):
            sock = await RawClient.connect(r.port)
            await sock.send(PROXY_V1 + upgrade_request(r.port))
            legs.append(sock)
        assert parse_answer(await _head(legs[0])).status == 101
        # Refused as any connection over the limit is, in HTTP: it sent a request.
        refused = parse_answer(await legs[1].read_until_closed())
        assert (refused.status, refused.headers["retry-after"]) == (429, "5")
        await legs[0].send(ws.encode_frame(ws.Opcode.BINARY, b"FERRY 1 SEND\n", mask=b"abcd"))
        await logged(caplog, 2)
        for leg in legs:
            leg.close()
        await until(lambda: len(r.relay.gate.per_address) == 0, "slots released")


async def _head(client: RawClient) -> bytes:
    """An HTTP answer's head, read from a connection that stays open."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(5):
        while b"\r\n\r\n" not in data:
            data += await loop.sock_recv(client.sock, 4096)
    return data


async def test_ping_gets_a_pong_and_a_close_gets_a_close() -> None:
    async with running_relay() as r:
        client = await WsClient.connect(r.port)
        await client.send(b"are you there", ws.Opcode.PING)
        assert await client.event() == ws.PongReceived(b"are you there")
        # The leg is counted as a Hold (capacity.py), its two descriptors too.
        assert r.relay.capacity.held().get("bridges") == 1
        assert r.relay.web is not None and r.relay.web.fds_held() == 2
        await client.send_close(ws.CloseCode.NORMAL)
        assert await client.event() == ws.CloseReceived(1000, "")
        assert await client.event() is None  # and the relay hangs up
        client.close()
        await until(lambda: r.relay.open_connections == 0, "the leg's connection ended")


async def test_fragmented_messages_and_any_boundaries_make_one_byte_stream() -> None:
    async with running_relay() as r:
        client = await WsClient.connect(r.port)
        line = b"FERRY 1 SEND\n"
        first = ws.encode_frame(ws.Opcode.BINARY, line[:3], mask=b"wxyz")
        first = bytes([first[0] & 0x7F]) + first[1:]
        middle = ws.encode_frame(ws.Opcode.PING, b"", mask=b"abcd")
        rest = ws.encode_frame(ws.Opcode.CONTINUATION, line[3:], mask=b"efgh")
        for piece in (first, middle, rest):
            await client.send_raw(piece)
        assert await client.event() == ws.PongReceived(b"")
        assert (await client.line()).startswith("NAMEPLATE ")
        client.close()


async def test_relay_shutdown_closes_a_browser_leg_with_going_away() -> None:
    async with running_relay() as r:
        client = await WsClient.connect(r.port)
        await client.send(b"FERRY 1 SEND\n")
        assert (await client.line()).startswith("NAMEPLATE ")
        closing = asyncio.create_task(r.relay.close())
        data, code = await client.read_until_close()
        assert data.startswith(b"ERROR shutting-down"), data
        assert code == ws.CloseCode.GOING_AWAY
        client.close()
        await closing


async def test_an_oversized_frame_is_closed_with_1009() -> None:
    async with running_relay() as r:
        client = await WsClient.connect(r.port)
        await client.send_raw(b"\x82\xff" + (1 << 40).to_bytes(8, "big") + b"mask")
        assert await client.read_until_close() == (b"", ws.CloseCode.MESSAGE_TOO_BIG)
        client.close()


async def test_a_cross_site_page_cannot_open_a_leg() -> None:
    async with running_relay() as r:
        with pytest.raises(HandshakeRefused) as refused:
            await WsClient.connect(r.port, origin="https://evil.example")
        assert refused.value.status == 403
        await until(lambda: len(r.relay.gate.per_address) == 0, "slot released")


# -- the socketpair's end, as the relay sees it ------------------------------------


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def test_buffer_and_tcp_options_on_the_inner_end_go_to_the_browsers_socket() -> None:
    browser, outer = _tcp_pair()
    inner, mine = bridge.socketpair(outer)
    probe, probe_peer = _tcp_pair()
    try:
        request = 1 << 20
        inner.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, request)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bridge.leg_request(request))
        expected = probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert outer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == expected
        assert inner.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == expected
        assert bridge.leg_request(request) == request - bridge.BRIDGE_HOLD // 2
        assert bridge.leg_request(8192) == 8192  # control-size requests stay
        inner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert outer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        # The pair's own buffers stay small and fixed.
        pair_buffer = super(LegEnd, inner).getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert pair_buffer == bridge.PAIR_BUFFER
        closed: list[bool] = []
        inner.on_close = lambda: closed.append(True)
        inner.close()
        inner.close()
        assert closed == [True]
    finally:
        for sock in (browser, outer, inner, mine, probe, probe_peer):
            sock.close()


@pytest.mark.skipif(not pump.SPLICE_AVAILABLE, reason="splice(2) is Linux only")
async def test_a_pipe_with_a_browser_leg_splices_through_the_socketpair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unix_fds: set[int] = set()
    spliced: list[int] = []
    real_splice = os.splice

    def counting_splice(src: int, dst: int, count: int, *args: object, **kw: object) -> int:
        moved = real_splice(src, dst, count, *args, **kw)  # type: ignore[arg-type]
        if src in unix_fds or dst in unix_fds:
            spliced.append(moved)
        return moved

    monkeypatch.setattr(os, "splice", counting_splice)  # pump looks it up per call
    real_socketpair = bridge.socketpair

    def watched(outer: socket.socket) -> tuple[bridge.InnerEnd, socket.socket]:
        inner, mine = real_socketpair(outer)
        unix_fds.add(inner.fileno())
        return inner, mine

    monkeypatch.setattr(bridge, "socketpair", watched)
    async with running_relay(use_splice=True) as r:
        control, nameplate = await register_sender(r.port)
        browser = await WsClient.connect(r.port)
        await browser.send(claim(nameplate))
        ticket = (await control.line()).split()[1]
        data = await RawClient.connect(r.port)
        await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
        assert await data.line() == "PAIRED"
        assert await browser.line() == "PAIRED"
        payload = os.urandom(3 << 20)
        sending = asyncio.create_task(data.send(payload))
        received = bytearray()
        while len(received) < len(payload):
            event = await browser.event()
            assert isinstance(event, ws.DataReceived), event
            received += event.data
        await sending
        await browser.send(b"ACK")
        back = bytearray()
        while len(back) < len(PAKE_RECORD) + 3:
            chunk = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(data.sock, 64), 5)
            assert chunk
            back += chunk
        assert bytes(back) == PAKE_RECORD + b"ACK"  # the claim's record, then the reply
        assert bytes(received) == payload
        assert sum(spliced) >= len(payload)  # every byte went through splice
        for client in (control, data):
            client.close()
        browser.close()


# -- https on the same port (relay/tls.py) -------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _tls_settings(certs: Certs) -> dict[str, object]:
    return {"tls_cert": str(certs.cert), "tls_key": str(certs.key)}


async def _https(port: int, certs: Certs) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection that verifies the relay's certificate against the test CA."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    async with asyncio.timeout(10):
        return await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="relay.ferry.test"
        )


async def test_ferry_lines_https_and_http_share_one_port(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay(**_tls_settings(certs)) as r:
        ferry = await RawClient.connect(r.port)  # a rendezvous line, in the clear
        await ferry.send(b"FERRY 1 SEND\n")
        assert (await ferry.line()).startswith("NAMEPLATE ")
        plain = await RawClient.connect(r.port)
        await plain.send(GET_ROOT)
        assert (await plain.read_until_closed()).startswith(b"HTTP/1.1 200 OK\r\n")
        plain.close()

        reader, writer = await _https(r.port, certs)
        writer.write(b"GET / HTTP/1.1\r\nHost: relay.ferry.test\r\n\r\n")
        async with asyncio.timeout(10):
            answer = parse_answer(await reader.read())  # to the relay's close
        writer.close()
        assert answer.status == 200 and b'src="app.js"' in answer.body
        assert "connect-src 'self'" in answer.headers["content-security-policy"]

        # A WebSocket leg inside TLS is a rendezvous client like any other.
        reader, writer = await _https(r.port, certs)
        writer.write(upgrade_request(r.port))
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(ws.encode_frame(ws.Opcode.BINARY, b"FERRY 1 SEND\n", mask=b"abcd"))
        decoder = ws.FrameDecoder(masked=False)
        async with asyncio.timeout(10):
            while (event := decoder.next_event()) is None:
                decoder.receive_data(await reader.read(4096))
        assert isinstance(event, ws.DataReceived) and event.data.startswith(b"NAMEPLATE ")
        held = r.relay.capacity.held()
        assert (held.get("bridges"), held.get("tls_legs")) == (1, 1), held
        writer.close()
        ferry.close()
        await until(lambda: r.relay.open_connections == 0, "every connection ended")
        assert r.relay.web is not None
        await until(lambda: r.relay.web is not None and r.relay.web.fds_held() == 0, "legs")
        roles = [line.get("role") for line in await logged(caplog, count=3)]
        assert "https" in roles and "http" in roles


async def test_a_tls_handshake_counts_in_the_handshake_deadline_and_address_limit(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    settings = {"handshake_timeout": 0.5, "max_connections_per_address": 1}
    async with running_relay(**settings, **_tls_settings(certs)) as r:
        stalled = await RawClient.connect(r.port)
        await stalled.send(b"\x16\x03\x01\x02\x00")  # a ClientHello's record header, no more
        await until(lambda: r.relay.handshaking == 1, "the handshake is counted")
        second = await RawClient.connect(r.port)  # the address holds its one slot
        assert await second.line() == (
            "ERROR too-many-connections too many connections from your address"
        )
        second.close()
        started = asyncio.get_running_loop().time()
        await stalled.read_until_closed(timeout=5)
        assert asyncio.get_running_loop().time() - started < 2.0
        stalled.close()
        await until(lambda: len(r.relay.gate.per_address) == 0, "slot released")
        assert r.relay.handshaking == 0 and r.relay.open_connections == 0
        reasons = [line.get("reason") for line in await logged(caplog, count=2)]
        assert "timeout" in reasons


async def test_a_broken_tls_handshake_is_dropped_and_its_slot_given_back(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay(**_tls_settings(certs)) as r:
        client = await RawClient.connect(r.port)
        await client.send(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)  # not a ClientHello
        answer = await client.read_until_closed(timeout=5)
        assert not answer.startswith(b"ERROR"), answer  # at most a TLS alert
        client.close()
        [line] = await logged(caplog)
        assert (line["outcome"], line["role"], line["reason"]) == (
            "refused",
            "https",
            "bad-request",
        )
        await until(lambda: len(r.relay.gate.per_address) == 0, "slot released")
        assert r.relay.handshaking == 0 and r.relay.web is not None
        assert r.relay.web.fds_held() == 0


async def test_without_a_certificate_a_client_hello_is_refused_as_before() -> None:
    async with running_relay() as r:
        client = await RawClient.connect(r.port)
        await client.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\n")
        assert (await client.line()).startswith("ERROR bad-request ")
        client.close()


def test_plain_end_gives_buffer_requests_to_the_tcp_socket_minus_what_tls_holds() -> None:
    outer, other = _tcp_pair()
    try:
        leg = tls.TlsLeg(outer, ssl.create_default_context().wrap_bio(
            ssl.MemoryBIO(), ssl.MemoryBIO()), ssl.MemoryBIO(), ssl.MemoryBIO())  # fmt: skip
        big = 2 * 1024 * 1024
        leg.plain.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big)
        expected = outer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        probe, spare = _tcp_pair()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big - tls.TLS_HOLD // 2)
        assert expected == probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        for sock in (probe, spare):
            sock.close()
        leg.plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert outer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for sock in (leg.plain, leg.mine):
            sock.close()
    finally:
        outer.close()
        other.close()


# -- refusals in HTTP (relay/refusals.py) ---------------------------------------------


async def test_a_browser_past_its_address_limit_gets_429_with_retry_after() -> None:
    async with running_relay(max_connections_per_address=1) as r:
        held = await RawClient.connect(r.port)
        await held.send(b"FERRY 1 SEND\n")
        assert (await held.line()).startswith("NAMEPLATE ")
        page = await RawClient.connect(r.port)
        await page.send(GET_ROOT)
        answer = parse_answer(await page.read_until_closed())
        assert answer.status == 429
        assert answer.headers["retry-after"] == str(refusals.RETRY_AFTER_SLOT)
        assert answer.body == b"429 Too Many Requests: too many connections from your address\n"
        page.close()
        # HEAD: the same headers, no body.
        head = await RawClient.connect(r.port)
        await head.send(b"HEAD" + GET_ROOT[3:])
        data = await head.read_until_closed()
        answer = parse_answer(data)
        assert answer.status == 429 and data.endswith(b"\r\n\r\n")
        assert int(answer.headers["content-length"]) > 0 and answer.body == b""
        head.close()
        # A ferry client, talking or silent, still reads the ERROR line.
        for sent in (b"FERRY 1 RECV 7\n", b""):
            cli = await RawClient.connect(r.port)
            await cli.send(sent)
            assert await cli.line() == (
                "ERROR too-many-connections too many connections from your address"
            )
            cli.close()
        held.close()


async def test_a_browser_finding_the_handshakes_full_gets_503_with_retry_after() -> None:
    async with running_relay(max_handshakes=1, handshake_timeout=5) as r:
        silent = await RawClient.connect(r.port, "127.0.0.2")  # holds the one handshake
        await until(lambda: r.relay.handshaking == 1, "the handshake is held")
        page = await RawClient.connect(r.port, "127.0.0.3")
        await page.send(GET_ROOT)
        answer = parse_answer(await page.read_until_closed())
        assert answer.status == 503
        assert answer.headers["retry-after"] == str(refusals.RETRY_AFTER_BUSY)
        assert b"relay busy" in answer.body
        page.close()
        cli = await RawClient.connect(r.port, "127.0.0.3")
        await cli.send(b"FERRY 1 SEND\n")
        assert (await cli.line()).startswith("ERROR busy ")
        close_all(cli, silent)
        await until(lambda: len(r.relay.gate.per_address) == 0, "slots released")


async def test_a_head_request_for_an_error_gets_the_headers_and_no_body(tmp_path: Path) -> None:
    async with running_relay(web_root=str(tmp_path)) as r:
        client = await RawClient.connect(r.port)
        await client.send(b"HEAD /missing.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = await client.read_until_closed()
        client.close()
        answer = parse_answer(data)
        assert answer.status == 404 and data.endswith(b"\r\n\r\n") and answer.body == b""
        assert int(answer.headers["content-length"]) == len(b"404 Not Found: no such file\n")
        client = await RawClient.connect(r.port)
        await client.send(b"HEAD /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = parse_answer(await client.read_until_closed())
        client.close()
        assert answer.status == 426 and answer.body == b""


@pytest.mark.parametrize(
    ("reason", "status", "retry"),
    [
        ("too-many-connections", 429, "5"),
        ("rate-limited", 429, "10"),
        ("busy", 503, "10"),
        ("shutting-down", 503, "30"),
        ("timeout", 408, None),
        ("bad-request", 400, None),
    ],
)
def test_each_refusal_reason_has_its_http_status(reason: str, status: int, retry: str) -> None:
    for first in (b"GET / HTTP/1.1\r\n", b"HEAD / HTTP/1.1\r\n"):
        answer = parse_answer(refusals.answer(first, reason, "the text"))
        assert answer.status == status
        assert answer.headers.get("retry-after") == retry
        assert answer.body == (b"" if first.startswith(b"HEAD") else answer.body)
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    for first in (b"FERRY 1 SEND\n", b"", b"GE", b"\x16\x03\x01"):
        assert refusals.answer(first, reason, "the text") == f"ERROR {reason} the text\n".encode()


async def test_a_large_file_of_the_web_root_is_sent_whole_and_quickly(tmp_path: Path) -> None:
    """A static answer gets a send buffer of its own: through the small pre-pairing buffer,
    a 20 MB file crawled at about 1.4 MB/s and was cut off by the write timeout."""
    body = os.urandom(20 * 1024 * 1024)
    (tmp_path / "big.txt").write_bytes(body)
    async with running_relay(web_root=str(tmp_path)) as r:
        client = await RawClient.connect(r.port)
        await client.send(b"GET /big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(client.sock, 1 << 20):
                answer += chunk
        client.close()
    head, _, got = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert got == body


def test_a_stalled_browser_leg_ends_at_the_idle_timeout(caplog: pytest.LogCaptureFixture) -> None:
    # A browser receiver that stops reading is ended by the relay's rules for its
    # connection, logged as idle like a CLI receiver, and every leg is let go. (What
    # it holds meanwhile is measured against a relay process: tests/faults/test_web_legs.py.)
    caplog.set_level(logging.INFO, "ferry.relay")

    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(idle_timeout=600) as r:
            control, nameplate = await register_sender(r.port)
            browser = await WsClient.connect(r.port, receive_buffer=32 * 1024)
            await browser.send(claim(nameplate))
            ticket = (await control.line()).split()[1]
            data = await RawClient.connect(r.port)
            await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
            assert await data.line() == "PAIRED"
            assert await browser.line() == "PAIRED"
            assert await data.exactly(len(PAKE_RECORD)) == PAKE_RECORD
            await data.send(b"\0" * 65536)  # the browser reads none of it
            await turns()
            loop.advance(599)
            await turns()
            assert r.relay.active == 1 and nothing_to_read(data)
            loop.advance(2)
            assert await data.read_until_closed() == b""
            [line] = await logged(caplog)
            assert (line["role"], line["outcome"]) == ("receiver", "idle")
            loop.advance(bridge.FLUSH_TIMEOUT)  # the bridge's flush to a browser that reads nothing
            await until(lambda: r.relay.open_connections == 1, "the browser's legs let go")
            assert r.relay.active == 0
            close_all(control, data)
            browser.close()

    run_on_clock(scenario)
