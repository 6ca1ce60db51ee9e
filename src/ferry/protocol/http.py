"""The little HTTP/1.1 the relay speaks: one request head, one response.

Theory of operation. The relay's port carries two protocols. A ferry
client's first bytes are a rendezvous line (``FERRY 1 …``, rendezvous.py) or
a PROXY protocol header; a browser's are an HTTP request line (``GET / …``).
``sniff()`` tells them apart from the first bytes alone, so the relay never
buffers more than it would for a rendezvous line before it knows which.

An HTTP connection sends one request head, at most MAX_HEAD bytes and
MAX_HEADERS header lines, and gets one answer: a static file of the web app,
a WebSocket upgrade (websocket.py), or an error status. No bodies are read
(the relay serves GET and HEAD only), no keep-alive, no chunked encoding:
the smaller the surface, the fewer ways to hold the relay's memory.

    browser                                   relay
    GET /app.js HTTP/1.1\\r\\n
    Host: relay.example.com\\r\\n
    \\r\\n                           --->
                                     <---     HTTP/1.1 200 OK\\r\\n … body, close

This module does no I/O: ``head_end()`` finds where a head ends in a buffer,
``parse_request()`` turns it into a Request, ``response()`` builds the bytes
to write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from ferry.errors import HttpError

MAX_HEAD: Final = 8 * 1024
"""Largest request head (request line and headers, final blank line included), in bytes."""
MAX_HEADERS: Final = 48
"""Most header lines a request may carry."""

_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET: Final = re.compile(rb"^/[\x21-\x7e]*$")
_HEADER_VALUE: Final = re.compile(rb"^[\t\x20-\x7e\x80-\xff]*$")

STATUS_TEXT: Final = {
    101: "Switching Protocols",
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class Protocol(Enum):
    """What a connection's first bytes say it speaks."""

    FERRY = "ferry"
    HTTP = "http"
    TLS = "tls"
    """A TLS ClientHello (a handshake record, first byte 0x16): https, when the relay
    has a certificate (relay/tls.py); no rendezvous line or HTTP method starts so."""
    UNKNOWN = "unknown"
    """Too few bytes yet to tell."""


_HTTP_METHODS: Final = (b"GET ", b"HEAD ")
TLS_HANDSHAKE: Final = 0x16
"""The content type of a TLS handshake record, the first byte of every ClientHello."""


def sniff(first: bytes) -> Protocol:
    """Tell an HTTP request from anything else by its first bytes.

    Only GET and HEAD are HTTP to the relay; every other start (a rendezvous
    line, a PROXY header, garbage) is left to the rendezvous parser, which
    already refuses what it does not know, except a TLS handshake record
    (TLS), which the web front wraps when it has a certificate. UNKNOWN means
    "read more": it is returned only while ``first`` is a strict prefix of a
    method.
    """
    if first[:1] == bytes([TLS_HANDSHAKE]):
        return Protocol.TLS
    for method in _HTTP_METHODS:
        if first.startswith(method):
            return Protocol.HTTP
        if method.startswith(first):
            return Protocol.UNKNOWN
    return Protocol.FERRY


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    """The path and query as sent (always starts with "/")."""
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names; repeated headers joined with ", " as RFC 9110 allows."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (Connection, Upgrade) lists ``token``."""
        wanted = token.lower()
        return any(part.strip().lower() == wanted for part in self.header(name).split(","))


def head_end(buffer: bytes | bytearray) -> int | None:
    """Index just past the blank line that ends the head, or None if not there yet.

    Raises HttpError 431 once ``buffer`` holds MAX_HEAD bytes without one, so
    a caller never needs to buffer more than MAX_HEAD.
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end >= 0:
        return end + 4
    if len(buffer) >= MAX_HEAD:
        raise HttpError(431, "request head too large")
    return None


def parse_request(head: bytes) -> Request:
    """Parse a request head (as delimited by head_end)."""
    if len(head) > MAX_HEAD or not head.endswith(b"\r\n\r\n"):
        raise HttpError(400, "malformed request head")
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "too many header lines")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(400, "malformed request line")
    method, target, _version = parts
    if not _TOKEN.match(method) or not _TARGET.match(target):
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name) or not _HEADER_VALUE.match(value):
            raise HttpError(400, "malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(method.decode("ascii"), target.decode("ascii"), headers)


def response(
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    include_body: bool = True,
) -> bytes:
    """The bytes of a complete response; the connection closes after it.

    ``include_body=False`` answers a HEAD request: same headers, no body.
    Content-Length is always set (from ``body``) except on a 101 upgrade.
    """
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}"]
    all_headers = dict(headers or {})
    if status != 101:
        all_headers.setdefault("Content-Length", str(len(body)))
        all_headers.setdefault("Connection", "close")
    for name, value in all_headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} would split the response")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if include_body else head


def error_response(error: HttpError) -> bytes:
    """A short plain-text answer for a request the relay refuses."""
    body = f"{error.status} {STATUS_TEXT.get(error.status, 'Error')}: {error}\n".encode()
    return response(error.status, {"Content-Type": "text/plain; charset=utf-8"}, body)
