"""A browser's WebSocket leg, bridged to the byte stream the relay already serves.

Theory of operation. Over its WebSocket a browser sends and receives
exactly the bytes a command-line client writes and reads over TCP: a
rendezvous line, then records. Binary messages only; where one message
ends and the next begins means nothing. So the relay does not learn a
second protocol: the bridge turns the WebSocket back into a byte stream on
one end of a socketpair and admits the other end as an ordinary
connection (server.py), with the browser's peer address and per-address
key. Every limit, deadline, outcome and log line of a command-line client
applies unchanged, and the per-address connection slot the browser's
socket took is the admitted connection's, released once when it ends.

    browser ==WS frames== outer TCP socket  [bridge]  pair end ----- InnerEnd == relay
                          (the real leg)     unframe,   (fixed small  (an ordinary
                                             frame      buffers)      connection)

Two tasks copy: up (WS payload, unmasked -> the pair) and down (the pair ->
one binary frame per read). Up answers pings. It ends the leg when the
browser sends a close frame (answered with a close), closes its TCP
connection, or breaks the protocol (a close with the decoder's code:
1002, 1003, 1007, 1009). Down ends the leg when the relay closes its end
(a pipe ended, a refusal line was sent): a close frame 1000 (1001 while
the relay shuts down), then a short wait for the browser's answer. The
bridge has no deadline of its own: the relay's rules for the admitted
connection (handshake deadline, PING/PONG, idle timeout) end it as they
end a command-line client's, by closing the admitted end; the bridge then
writes what is still queued (FLUSH_TIMEOUT at most) and hangs up, so a
browser that stops reading is dropped when the relay's rules say.

Memory. The relay sizes a transfer's socket buffers on the sockets it
pairs (buffers.py). The admitted end is an InnerEnd: the buffer and TCP
options the relay sets on it go to the browser's TCP socket, which is the
real leg where bytes are in flight, minus BRIDGE_HOLD, the most the bridge
itself can hold (both directions: the socketpair's queue and the bridge's
read and frame buffers). The socketpair keeps fixed small buffers. So a
transfer with a browser leg holds no more than the per-transfer budget,
whatever the browser does (tests/faults/test_web_legs.py measures it).

Standard library only.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ferry.errors import WebSocketError
from ferry.protocol.websocket import (
    MAX_HEADER,
    CloseCode,
    CloseReceived,
    DataReceived,
    FrameDecoder,
    Opcode,
    PingReceived,
    encode_close,
    encode_frame,
    frame_header,
)
from ferry.relay import legs
from ferry.relay.legs import LegEnd

KIB: Final = 1024

CHUNK: Final = 64 * KIB
"""Most bytes the bridge reads at once from either side."""

PAIR_BUFFER: Final = 64 * KIB
"""Send buffer of each socketpair end, as the kernel counts it (the request is half)."""

USER_HOLD: Final = 4 * CHUNK
"""The bridge's own buffers, both directions: down, one read buffer the frame
is built in; up, one read buffer, the decoder's copy of it and the unmasked
payload."""

BRIDGE_HOLD: Final = 2 * (PAIR_BUFFER + PAIR_BUFFER // 2) + USER_HOLD
"""Most a bridge holds, both directions: per direction the pair's queue (its
send buffer and one more buffer's worth of overshoot at most: the kernel
lets one send pass the limit), plus USER_HOLD."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds to wait for the browser's answer to our close frame (and to write ours)."""

FLUSH_TIMEOUT: Final = 10.0
"""Seconds the bridge keeps writing to the browser what the relay sent before it
closed its end (at most the socketpair's queue); a browser that takes nothing
for that long is dropped."""


class InnerEnd(LegEnd):
    """The relay's end of a bridge's socketpair. Socket options that describe the
    network leg (buffer sizes, keep-alive, TCP options) are set on, and read
    from, the browser's TCP socket (module docstring: Memory; legs.py)."""

    hold = BRIDGE_HOLD


def leg_request(request: int) -> int:
    """What to ask of the browser's TCP socket when the relay asks for ``request``
    (half the kernel's count): a data-direction buffer gives up BRIDGE_HOLD;
    the small control buffers stay as they are."""
    return legs.leg_request(request, BRIDGE_HOLD)


def socketpair(outer: socket.socket) -> tuple[InnerEnd, socket.socket]:
    """(the end to admit, the bridge's end), non-blocking, with small fixed buffers."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (left, right):
        end.setblocking(False)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER // 2)
    inner = InnerEnd(left.detach(), outer)
    inner.setblocking(False)
    return inner, right


@dataclass
class BridgeResult:
    close_sent: int | None = None
    """The close code the relay sent (None: none could be sent)."""
    close_received: int | None = None
    """The browser's close code (None: it sent none, or one without a code)."""
    bytes_up: int = 0
    """Payload bytes from the browser to the relay."""
    bytes_down: int = 0
    """Payload bytes from the relay to the browser."""


class Bridge:
    def __init__(
        self,
        outer: socket.socket,
        inner: socket.socket,
        *,
        early: bytes = b"",
        inner_closed: asyncio.Event | None = None,
        going_away: Callable[[], bool] = lambda: False,
        max_frame: int | None = None,
    ) -> None:
        """outer: the browser's socket, after the 101 answer; inner: the bridge's end
        of the pair; early: bytes the browser sent behind its request head;
        inner_closed: set when the relay closes the admitted end (InnerEnd.on_close);
        going_away(): whether the relay is shutting down (close code 1001)."""
        self.outer = outer
        self.inner = inner
        self.inner_closed = inner_closed or asyncio.Event()
        self.going_away = going_away
        self.decoder = FrameDecoder() if max_frame is None else FrameDecoder(max_frame)
        self.decoder.receive_data(early)
        self.result = BridgeResult()
        self._write_lock = asyncio.Lock()
        self._closing = False
        self._partial = False

    async def run(self) -> BridgeResult:
        """Copy both ways until either side ends; close both sockets."""
        up = asyncio.create_task(self._up())
        down = asyncio.create_task(self._down())
        gone = asyncio.create_task(self.inner_closed.wait())
        try:
            either = {up, down}
            done, _ = await asyncio.wait({*either, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not done & either:
                # The relay let go (a deadline, the idle timeout, a refusal): what it
                # sent before still goes out, unless the browser takes nothing.
                done, _ = await asyncio.wait(
                    either, timeout=FLUSH_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
            if up in done:
                down.cancel()
                await asyncio.gather(down, return_exceptions=True)
                await self._browser_ended(up)
            elif down in done:
                await self._relay_ended(down, up)
        finally:
            for task in (up, down, gone):
                task.cancel()
            await asyncio.gather(up, down, gone, return_exceptions=True)
            self.inner.close()
            self.outer.close()
        return self.result

    async def _browser_ended(self, up: asyncio.Task[None]) -> None:
        error = up.exception()
        self.inner.close()  # the relay sees its client go, as a CLI's close
        if isinstance(error, WebSocketError):
            await self._send_close(CloseCode(error.code), str(error))
        elif error is None and self.decoder.closed:
            await self._send_close(CloseCode.NORMAL)  # the answer to the browser's close

    async def _relay_ended(self, down: asyncio.Task[None], up: asyncio.Task[None]) -> None:
        error = down.exception()
        if error is not None and not isinstance(error, OSError):
            await self._send_close(CloseCode.INTERNAL_ERROR)
            return
        code = CloseCode.GOING_AWAY if self.going_away() else CloseCode.NORMAL
        self._closing = True
        if await self._send_close(code):
            # The browser answers with its close frame (or closes): then hang up.
            await asyncio.wait({up}, timeout=CLOSE_TIMEOUT)

    async def _send_close(self, code: CloseCode, reason: str = "") -> bool:
        if self._partial:
            return False  # a frame was cut off mid-write: the stream is broken anyway
        try:
            await self._write(encode_close(code, reason), CLOSE_TIMEOUT)
        except (OSError, TimeoutError):
            return False
        self.result.close_sent = code
        return True

    async def _write(self, frame: bytes | memoryview, timeout: float | None = None) -> None:
        """One frame to the browser; no timeout but the close's: a browser that stops
        reading is ended by the relay's rules for the inner connection (run())."""
        loop = asyncio.get_running_loop()
        async with self._write_lock, asyncio.timeout(timeout):
            self._partial = True  # stays set if this write is cut off
            await loop.sock_sendall(self.outer, frame)
            self._partial = False

    async def _up(self) -> None:
        """Browser -> relay: frames in, payload out; pings answered; ends at close."""
        loop = asyncio.get_running_loop()
        decoder = self.decoder
        read = memoryview(bytearray(CHUNK))
        while True:
            while (event := decoder.next_event()) is not None:
                if isinstance(event, DataReceived):
                    if event.data and not self._closing:
                        await loop.sock_sendall(self.inner, event.data)
                        self.result.bytes_up += len(event.data)
                elif isinstance(event, PingReceived):
                    if not self._closing:
                        await self._write(encode_frame(Opcode.PONG, event.payload))
                elif isinstance(event, CloseReceived):
                    self.result.close_received = event.code
                    return
            count = await loop.sock_recv_into(self.outer, read)
            if not count:
                return
            decoder.receive_data(read[:count])

    async def _down(self) -> None:
        """Relay -> browser: one binary frame per read, until the relay's end closes.

        Each read lands behind MAX_HEADER spare bytes and its header is written
        in front of it, so the frame goes out from the read buffer: no copy."""
        loop = asyncio.get_running_loop()
        frame = memoryview(bytearray(MAX_HEADER + CHUNK))
        while count := await loop.sock_recv_into(self.inner, frame[MAX_HEADER:]):
            head = frame_header(Opcode.BINARY, count)
            start = MAX_HEADER - len(head)
            frame[start:MAX_HEADER] = head
            await self._write(frame[start : MAX_HEADER + count])
            self.result.bytes_down += count
