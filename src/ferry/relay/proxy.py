"""The PROXY protocol header a trusted TCP proxy puts before a client's bytes.

Theory of operation. Behind a TCP load balancer every client arrives from
the balancer's address, so the per-address limits would see one client. A
balancer that speaks the PROXY protocol (HAProxy's `send-proxy` and
`send-proxy-v2`, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
writes the real client's address first:

    v1  "PROXY TCP4 203.0.113.9 192.0.2.1 33566 9021\\r\\n"   (at most 107 bytes)
        "PROXY TCP6 2001:db8::9 2001:db8::1 33566 9021\\r\\n"
        "PROXY UNKNOWN ...\\r\\n"                            (the proxy's own check)
    v2  12-byte signature \\r\\n\\r\\n\\0\\r\\nQUIT\\n, version/command, family,
        length (u16 BE), then addresses and optional TLVs (skipped):
        TCP over IPv4: src(4) dst(4) sport(2) dport(2); over IPv6: 16, 16, 2, 2.
        Command LOCAL (the proxy's own health check) carries no client.

The relay reads this header only from addresses on its --trusted-proxy
list, and only there: from anyone else a header is refused (it could name
any address). `parse` is pure, takes the bytes received so far, and says
"need more", or gives the client (None when the header names none: LOCAL,
UNKNOWN, or a family other than TCP) and how many bytes the header took.
Anything else is a BadRequest, so a trusted connection that does not start
with a header is refused too.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from ferry.errors import BadRequest
from ferry.protocol import rendezvous as rv

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107
"""Longest v1 header, CRLF included (the specification's bound)."""
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16
V2_MAX_BODY: Final = 1024
"""Longest v2 address block with TLVs we accept, in bytes (TCP over IPv6 needs 36)."""
_V2_TCP4: Final = 0x11
_V2_TCP6: Final = 0x21
_V2_LOCAL: Final = 0x20
_V2_PROXY: Final = 0x21


@dataclass(frozen=True)
class Client:
    """The address the proxy says the connection came from."""

    host: str
    port: int


@dataclass(frozen=True)
class Header:
    client: Client | None
    """None: the header names no client (a proxy's health check)."""
    length: int
    """Bytes the header took; what follows is the client's."""


def _bad(text: str) -> BadRequest:
    return BadRequest(rv.REASON_BAD_REQUEST, text)


def looks_like_header(line: bytes) -> bool:
    """True if a client's first line is (the start of) a PROXY header: v1, or v2's
    signature, whose first line is a bare CRLF."""
    return line.startswith(V1_PREFIX) or (
        len(line) >= 2 and V2_SIGNATURE.startswith(line[: len(V2_SIGNATURE)])
    )


def parse(data: bytes) -> Header | None:
    """The header at the start of data; None if more bytes are needed."""
    if data.startswith(V2_SIGNATURE[: len(data)]) and len(data) < len(V2_SIGNATURE):
        return None
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if len(data) < len(V1_PREFIX) and V1_PREFIX.startswith(data):
        return None
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    raise _bad("a trusted proxy's connection must start with a PROXY header")


def _parse_v1(data: bytes) -> Header | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise _bad("PROXY header too long")
        return None
    try:
        words = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise _bad("PROXY header is not ASCII") from None
    length = end + 2
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return Header(None, length)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise _bad("malformed PROXY header")
    version = 4 if words[1] == "TCP4" else 6
    host = _address(words[2], version)
    _address(words[3], version)
    port = _port(words[4])
    _port(words[5])
    return Header(Client(host, port), length)


def _address(text: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise _bad("malformed address in PROXY header") from None
    if ip.version != version:
        raise _bad("address family does not match the PROXY header")
    return str(ip)


def _port(text: str) -> int:
    if not (text.isdigit() and text.isascii()) or len(text) > 5 or int(text) > 65535:
        raise _bad("malformed port in PROXY header")
    if len(text) > 1 and text.startswith("0"):
        raise _bad("malformed port in PROXY header")
    return int(text)


def _parse_v2(data: bytes) -> Header | None:
    if len(data) < V2_FIXED:
        return None
    command, family, size = struct.unpack_from("!BBH", data, len(V2_SIGNATURE))
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise _bad("unsupported PROXY v2 version or command")
    if size > V2_MAX_BODY:
        raise _bad("PROXY v2 header too long")
    length = V2_FIXED + size
    if len(data) < length:
        return None
    if command == _V2_LOCAL:
        return Header(None, length)
    body = data[V2_FIXED:length]
    if family == _V2_TCP4:
        if size < 12:
            raise _bad("PROXY v2 address block too short")
        host = str(ipaddress.IPv4Address(body[:4]))
        (port,) = struct.unpack_from("!H", body, 8)
        return Header(Client(host, port), length)
    if family == _V2_TCP6:
        if size < 36:
            raise _bad("PROXY v2 address block too short")
        host = str(ipaddress.IPv6Address(body[:16]))
        (port,) = struct.unpack_from("!H", body, 32)
        return Header(Client(host, port), length)
    return Header(None, length)  # UDP, Unix sockets, unspecified: no client to count
