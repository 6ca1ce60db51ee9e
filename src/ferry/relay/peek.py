"""Looking at a connection's first bytes without consuming them.

The web front (web.py) tells a rendezvous line from HTTP or TLS this way,
and a refusal before the first read (refusals.py) learns whether to answer
with an ERROR line or an HTTP status. The bytes stay queued for whoever
reads the connection next. No deadline here: callers bound the wait.

Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Final

SNIFF_BYTES: Final = 8
"""Bytes peeked to tell HTTP from a rendezvous line (http.sniff needs 5)."""
PEEK_POLL: Final = 0.02
"""Seconds between peeks while the bytes queued are too few to tell (a slow start)."""


async def peek(
    sock: socket.socket, enough: Callable[[bytes], bool], size: int = SNIFF_BYTES
) -> bytes:
    """The first bytes queued (not consumed) once enough(bytes) says so, or what
    there is at EOF or an error.

    Peeking leaves the bytes queued, so the socket stays readable: while they
    are too few, SO_RCVLOWAT makes it readable only once more arrive (or at
    EOF); where the platform lacks it, the front polls."""
    seen = b""
    try:
        while True:
            waited = not seen or wait_for_more(sock, len(seen))
            if waited:
                await readable(sock)
            else:
                await asyncio.sleep(PEEK_POLL)
            try:
                data = sock.recv(size, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return seen  # the server meets the error itself
            if len(data) <= len(seen):
                if waited:
                    return seen  # EOF: the server sees it as before
                continue
            seen = data
            if enough(seen) or len(seen) >= size:
                return seen
    finally:
        if seen:
            wait_for_more(sock, 0)


def wait_for_more(sock: socket.socket, queued: int) -> bool:
    """Make the socket readable only past ``queued`` bytes (0: back to normal);
    False where SO_RCVLOWAT cannot be set."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, queued + 1)
    except (OSError, AttributeError):
        return False
    return True


async def readable(sock: socket.socket) -> None:
    """Until the socket is readable (data, EOF or an error)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
