"""A refusal in the language the client speaks: an ERROR line, or an HTTP status.

Theory of operation. The relay refuses some connections before it reads a
byte: an address past its connection limit, no descriptors to spare, the
handshake pool full, a relay shutting down (admission.py, web.py). A ferry
client reads the rendezvous ERROR line; a browser would show that line as
a broken page, or a WebSocket that "failed" for no reason. So, with the
web on, such a refusal first peeks at the client's first bytes (none
consumed) for at most SNIFF_WAIT: an HTTP request gets an HTTP answer, the
status and Retry-After below, with the same text as the ERROR line;
anything else (a rendezvous line, silence, TLS) gets the ERROR line as
before. A ferry client sends its line at once, so it waits no longer than
before; only a silent one hears its refusal SNIFF_WAIT later. Then the
usual half-close and linger (connection.py). The wait counts as lingering:
at most MAX_LINGERING refused sockets do either at once (admission.py).

    refusal reason          HTTP status                 Retry-After (s)
    too-many-connections    429 Too Many Requests       RETRY_AFTER_SLOT
    rate-limited            429 Too Many Requests       RETRY_AFTER_BUSY
    busy, unavailable       503 Service Unavailable     RETRY_AFTER_BUSY
    shutting-down           503 Service Unavailable     RETRY_AFTER_DRAIN
    timeout                 408 Request Timeout         -
    anything else           400 Bad Request             -

A HEAD request gets the headers of the answer and no body.

Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from ferry.config import REFUSAL_LINGER_SECONDS
from ferry.protocol import http
from ferry.protocol import rendezvous as rv
from ferry.relay import peek
from ferry.relay.connection import linger, say_and_half_close

SNIFF_WAIT: Final = REFUSAL_LINGER_SECONDS
"""Seconds a refusal before the first read waits for the client's first bytes."""

RETRY_AFTER_SLOT: Final = 5
"""Seconds a browser is told to wait for one of its address's connections to end."""
RETRY_AFTER_BUSY: Final = 10
"""Seconds a browser is told to wait when the relay is busy."""
RETRY_AFTER_DRAIN: Final = 30
"""Seconds a browser is told to wait when the relay shuts down (its drain, at most)."""

ERROR_HEADERS: Final = {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Every error answer of the relay's web front carries these."""

_STATUSES: Final[dict[str, tuple[int, int | None]]] = {
    rv.REASON_TOO_MANY_CONNECTIONS: (429, RETRY_AFTER_SLOT),
    rv.REASON_RATE_LIMITED: (429, RETRY_AFTER_BUSY),
    rv.REASON_BUSY: (503, RETRY_AFTER_BUSY),
    rv.REASON_UNAVAILABLE: (503, RETRY_AFTER_BUSY),
    rv.REASON_SHUTTING_DOWN: (503, RETRY_AFTER_DRAIN),
    rv.REASON_TIMEOUT: (408, None),
}


def status_for(reason: str) -> tuple[int, int | None]:
    """(HTTP status, Retry-After seconds or None) for a rendezvous refusal reason."""
    return _STATUSES.get(reason, (400, None))


def http_error(
    status: int, text: str, *, head_only: bool = False, retry_after: int | None = None
) -> bytes:
    """A complete plain-text error answer (headers only for a HEAD request)."""
    body = f"{status} {http.STATUS_TEXT.get(status, 'Error')}: {text}\n".encode()
    headers = dict(ERROR_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 426:
        headers["Upgrade"] = "websocket"
        headers["Sec-WebSocket-Version"] = "13"
    return http.response(status, headers, body, include_body=not head_only)


def answer(first: bytes, reason: str, text: str) -> bytes:
    """What to write for a refusal, given the client's first bytes."""
    if http.sniff(first) is not http.Protocol.HTTP:
        return rv.encode(rv.Refused(reason, text))
    status, retry_after = status_for(reason)
    return http_error(status, text, head_only=first.startswith(b"HEAD "), retry_after=retry_after)


async def refuse(sock: socket.socket, reason: str, text: str) -> None:
    """Peek (SNIFF_WAIT at most), answer in the client's language, half-close, linger."""
    first = b""
    try:
        async with asyncio.timeout(SNIFF_WAIT):
            first = await peek.peek(sock, _decided)
    except (TimeoutError, OSError):
        pass
    except asyncio.CancelledError:
        sock.close()
        raise
    say_and_half_close(sock, answer(first, reason, text))
    await linger(sock)


def _decided(first: bytes) -> bool:
    return http.sniff(first) is not http.Protocol.UNKNOWN
