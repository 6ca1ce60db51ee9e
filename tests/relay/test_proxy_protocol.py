"""PROXY protocol from trusted proxies (--trusted-proxy), in process: the header's
client address is what every per-address limit and log line uses; a header from
anyone else, or a trusted connection without one, is refused."""

from __future__ import annotations

import logging
import struct

import pytest

from ferry.protocol import rendezvous as rv
from ferry_testing.waiting import until

from .conditions import logged, outcome_lines
from .harness import RawClient, close_all, running_relay

pytestmark = pytest.mark.timeout(30)


def reason(line: str) -> str:
    assert line.startswith("ERROR "), line
    return line.split()[1]


def v1(host: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {host} 127.0.0.1 {port} 9021\r\n".encode()


def v2(host: str, port: int = 40000) -> bytes:
    body = bytes(int(part) for part in host.split(".")) + bytes([127, 0, 0, 1])
    body += struct.pack("!HH", port, 9021)
    return b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x21, 0x11, len(body)) + body


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
async def test_lookups_are_counted_per_real_client_and_logged_with_it(
    header, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay(trusted_proxy=("127.0.0.1/32",), lookups_per_minute=1) as r:
        answers = []
        for client in ("203.0.113.9", "203.0.113.9", "198.51.100.7"):
            proxied = await RawClient.connect(r.port)
            await proxied.send(header(client) + b"FERRY 1 RECV 42\n")
            answers.append(reason(await proxied.line()))
            proxied.close()
        await logged(caplog, 3)
    assert answers == [
        rv.REASON_UNKNOWN_NAMEPLATE,
        rv.REASON_RATE_LIMITED,  # the same client: its own budget is spent
        rv.REASON_UNKNOWN_NAMEPLATE,  # another client behind the same proxy
    ]
    peers = [line["peer"] for line in outcome_lines(caplog)]
    assert peers == ["203.0.113.9:40000", "203.0.113.9:40000", "198.51.100.7:40000"]


async def test_connections_are_counted_per_real_client() -> None:
    async with running_relay(trusted_proxy=("127.0.0.1/32",), max_connections_per_address=1) as r:
        first = await RawClient.connect(r.port)
        await first.send(v1("203.0.113.9"))  # then silent: it holds its slot
        await until(lambda: len(r.relay.gate.per_address) == 1, "the first client counted")
        second = await RawClient.connect(r.port)
        await second.send(v1("203.0.113.9", 40001) + b"FERRY 1 SEND\n")
        assert reason(await second.line()) == rv.REASON_TOO_MANY_CONNECTIONS
        other = await RawClient.connect(r.port)
        await other.send(v1("198.51.100.7") + b"FERRY 1 SEND\n")
        assert (await other.line()).startswith("NAMEPLATE ")
        close_all(first, second, other)


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
async def test_a_header_from_an_untrusted_address_is_refused(header) -> None:
    async with running_relay(trusted_proxy=("127.0.0.9/32",)) as r:
        client = await RawClient.connect(r.port)
        await client.send(header("203.0.113.9") + b"FERRY 1 SEND\n")
        line = await client.line()
        assert reason(line) == rv.REASON_BAD_REQUEST
        assert "PROXY" in line
        client.close()


async def test_a_trusted_proxy_connection_without_a_header_is_refused() -> None:
    async with running_relay(trusted_proxy=("127.0.0.0/8",)) as r:
        client = await RawClient.connect(r.port)
        await client.send(b"FERRY 1 SEND\n")
        line = await client.line()
        assert reason(line) == rv.REASON_BAD_REQUEST and "PROXY" in line
        client.close()


async def test_a_proxy_health_check_header_keeps_the_proxy_as_the_peer() -> None:
    async with running_relay(trusted_proxy=("127.0.0.1/32",)) as r:
        client = await RawClient.connect(r.port)
        await client.send(b"PROXY UNKNOWN\r\nFERRY 1 SEND\n")
        assert (await client.line()).startswith("NAMEPLATE ")
        client.close()
