"""The PROXY protocol header parser (ferry.relay.proxy): v1 and v2, whole and byte at a
time; garbage gives a header, "need more" or a BadRequest, never anything else."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import BadRequest
from ferry.relay import proxy
from ferry.relay.proxy import Client, Header


def v2(command: int, family: int, body: bytes) -> bytes:
    return proxy.V2_SIGNATURE + struct.pack("!BBH", command, family, len(body)) + body


def v2_tcp4(src: str, sport: int, tlvs: bytes = b"") -> bytes:
    body = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address("192.0.2.1").packed
    return v2(0x21, 0x11, body + struct.pack("!HH", sport, 9021) + tlvs)


def v2_tcp6(src: str, sport: int) -> bytes:
    body = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address("2001:db8::1").packed
    return v2(0x21, 0x21, body + struct.pack("!HH", sport, 9021))


CASES = [
    (b"PROXY TCP4 203.0.113.9 192.0.2.1 33566 9021\r\n", Client("203.0.113.9", 33566)),
    (b"PROXY TCP6 2001:db8::9 2001:db8::1 1 9021\r\n", Client("2001:db8::9", 1)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None),
    (v2_tcp4("203.0.113.9", 33566), Client("203.0.113.9", 33566)),
    (v2_tcp4("198.51.100.7", 65535, tlvs=b"\x04\x00\x02ab"), Client("198.51.100.7", 65535)),
    (v2_tcp6("2001:db8::9", 443), Client("2001:db8::9", 443)),
    (v2(0x20, 0x00, b""), None),  # LOCAL: the proxy's health check
    (v2(0x21, 0x31, b"\x00" * 216), None),  # a Unix socket: no address to count
]


@pytest.mark.parametrize(("header", "client"), CASES)
def test_header_whole_gives_the_client_and_its_length(header: bytes, client: Client) -> None:
    assert proxy.parse(header + b"FERRY 1 SEND\n") == Header(client, len(header))


@pytest.mark.parametrize(("header", "client"), CASES)
def test_header_byte_at_a_time_needs_more_until_complete(header: bytes, client: Client) -> None:
    for end in range(len(header)):
        assert proxy.parse(header[:end]) is None, end
    assert proxy.parse(header) == Header(client, len(header))


@pytest.mark.parametrize(
    "garbage",
    [
        b"FERRY 1 SEND\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 33566\r\n",
        b"PROXY TCP4 2001:db8::9 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 65536 2\r\n",
        b"PROXY TCP4 203.0.113.9 192.0.2.1 01 2\r\n",
        b"PROXY TCP5 203.0.113.9 192.0.2.1 1 2\r\n",
        b"PROXY " + b"x" * 200,
        v2(0x22, 0x11, b"\x00" * 12),
        v2(0x21, 0x11, b"\x00" * 11),
        v2(0x21, 0x21, b"\x00" * 35),
        proxy.V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, proxy.V2_MAX_BODY + 1),
    ],
)
def test_malformed_header_is_a_bad_request(garbage: bytes) -> None:
    with pytest.raises(BadRequest):
        proxy.parse(garbage)


@given(st.binary(max_size=300))
def test_garbage_gives_a_header_none_or_bad_request(data: bytes) -> None:
    try:
        result = proxy.parse(data)
    except BadRequest:
        return
    assert result is None or (isinstance(result, Header) and result.length <= len(data))


@given(st.binary(max_size=120))
def test_v1_prefixed_garbage_gives_a_header_none_or_bad_request(data: bytes) -> None:
    try:
        proxy.parse(b"PROXY " + data)
    except BadRequest:
        pass


@pytest.mark.parametrize(
    ("line", "expected"),
    [(b"PROXY TCP4 1.2.3.4\n", True), (b"\r\n", True), (b"FERRY 1 SEND\n", False)],
)
def test_looks_like_header_spots_v1_and_v2_first_lines(line: bytes, expected: bool) -> None:
    assert proxy.looks_like_header(line) is expected
