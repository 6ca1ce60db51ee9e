"""The byte pump: moves bytes both ways between two paired sockets.

Theory of operation. Each direction owns one fixed buffer (a bytearray for
the portable copy path, a kernel pipe for the splice path) of pump_buffer
bytes. A direction reads from its source only while its buffer has room and
writes to its destination only while it holds bytes, driven by the event
loop's readiness callbacks. So a receiver that stops reading fills the
relay's buffer, the relay stops reading from the sender, the sender's
kernel buffers fill and its writes block: backpressure end to end, and the
relay never holds more than the fixed buffer plus the sockets' kernel
buffers per pipe, whatever the file size.

End of stream: when a source reaches EOF and its buffer has drained, the
pump shuts down writing on the destination (half-close), so each side sees
the other's FIN. The pipe ends when both directions have finished, either
socket fails, or no byte moved for idle_timeout seconds (on the clock it is
given, the event loop's by default, so a test can move time instead of
sleeping). The result says which side's bytes moved last and which side
closed first: all the relay can know of how a transfer ended.

The opening: until `opening_bytes` have moved from b to a (the sender's
handshake and offer: a pipe has not reached its data phase before), a side
that ends its stream or fails ends the whole pipe as soon as what it sent
is delivered ("early"): nobody is left waiting on a half-closed pipe for a
peer that will never speak again. `on_opened` is called once when the
opening is over.

splice(2) moves bytes socket -> pipe -> socket inside the kernel without
copying them to user space; it exists on Linux only, so the copy path
remains and both are tested the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Final

from ferry import platform
from ferry.relay.pipes import PumpEnd, PumpResult, Side

__all__ = ["SPLICE_AVAILABLE", "PumpEnd", "PumpResult", "Side", "pump"]

SPLICE_AVAILABLE: Final = platform.SPLICE
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_BURST: Final = 16


class _Direction:
    """One direction of a pipe; subclasses say how bytes are buffered."""

    def __init__(self, pump: _Pump, src: socket.socket, dst: socket.socket, size: int) -> None:
        self.pump = pump
        self.source = Side.A  # set by pump()
        self.src = src
        self.dst = dst
        self.size = size
        self.pending = 0  # bytes held, not yet written
        self.moved = 0
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    # Subclasses: fill() reads up to `room` bytes (0 at EOF), drain() writes held bytes.
    def fill(self, room: int) -> int:
        raise NotImplementedError

    def drain(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def has_room(self) -> bool:
        return self.pending < self.size

    def start(self, preload: bytes) -> None:
        if preload:
            self.preload(preload)
        self.update()

    def preload(self, data: bytes) -> None:
        raise NotImplementedError

    def update(self) -> None:
        """Register for exactly the readiness this direction needs now."""
        loop = self.pump.loop
        want_read = not self.eof and not self.done and self.has_room()
        want_write = not self.done and self.pending > 0
        if want_read != self.reading:
            if want_read:
                loop.add_reader(self.src.fileno(), self.on_readable)
            else:
                loop.remove_reader(self.src.fileno())
            self.reading = want_read
        if want_write != self.writing:
            if want_write:
                loop.add_writer(self.dst.fileno(), self.on_writable)
            else:
                loop.remove_writer(self.dst.fileno())
            self.writing = want_write

    def on_readable(self) -> None:
        self.run()

    def on_writable(self) -> None:
        self.run()

    def run(self) -> None:
        """Move bytes until both sides would block (or a bounded burst is done).

        Trying the other side right away, instead of waiting for the next
        readiness event, halves the event-loop round trips per byte; the
        burst bound keeps one busy pipe from starving the others.
        """
        moved = 0
        for _ in range(_BURST):
            progressed = False
            if not self.eof and self.has_room():
                try:
                    n = self.fill(self.size - self.pending)
                except (BlockingIOError, InterruptedError):
                    n = -1
                except OSError:
                    self.pump.fail()
                    return
                if n == 0:
                    self.eof = True
                    self.pump.first_eof = self.pump.first_eof or self.source
                elif n > 0:
                    self.pending += n
                    progressed = True
            if self.pending:
                try:
                    n = self.drain()
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.pump.fail()
                    return
                self.pending -= n
                self.moved += n
                moved += n
                progressed = progressed or n > 0
            if not progressed:
                break
        if moved:
            self.pump.moved(moved, self.source)
        if self.eof and not self.pending and not self.done:
            self.done = True
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.pump.stream_ended()
        self.update()
        self.pump.check_done()

    def stop(self) -> None:
        loop = self.pump.loop
        if self.reading:
            loop.remove_reader(self.src.fileno())
            self.reading = False
        if self.writing:
            loop.remove_writer(self.dst.fileno())
            self.writing = False
        self.close()


class _CopyDirection(_Direction):
    def __init__(self, pump: _Pump, src: socket.socket, dst: socket.socket, size: int) -> None:
        super().__init__(pump, src, dst, size)
        self.buffer = memoryview(bytearray(size))
        self.start_at = 0  # first held byte

    def preload(self, data: bytes) -> None:
        self.buffer[: len(data)] = data
        self.pending = len(data)

    def has_room(self) -> bool:
        return self.pending == 0  # refill only once the buffer is fully drained

    def fill(self, room: int) -> int:
        self.start_at = 0
        return self.src.recv_into(self.buffer)

    def drain(self) -> int:
        n = self.dst.send(self.buffer[self.start_at : self.start_at + self.pending])
        self.start_at += n
        return n


class _SpliceDirection(_Direction):
    def __init__(self, pump: _Pump, src: socket.socket, dst: socket.socket, size: int) -> None:
        super().__init__(pump, src, dst, size)
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        got = platform.pipe_size(self.pipe_w, size)  # what we got
        self.size = min(size, 64 * 1024) if got is None else got

    def preload(self, data: bytes) -> None:
        self.pending = os.write(self.pipe_w, data)  # tiny (< MAX_LINE), always fits

    def fill(self, room: int) -> int:
        return os.splice(self.src.fileno(), self.pipe_w, room, flags=_SPLICE_FLAGS)

    def drain(self) -> int:
        return os.splice(self.pipe_r, self.dst.fileno(), self.pending, flags=_SPLICE_FLAGS)

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Pump:
    def __init__(
        self,
        idle_timeout: float,
        on_moved: Callable[[int], None] | None,
        clock: Callable[[], float] | None,
        opening_bytes: int = 0,
        on_opened: Callable[[], None] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.clock = clock or self.loop.time
        self.finished: asyncio.Future[PumpEnd] = self.loop.create_future()
        self.idle_timeout = idle_timeout
        self.on_moved = on_moved
        self.last_activity = self.clock()
        self.last_from: Side | None = None
        self.first_eof: Side | None = None
        self.directions: list[_Direction] = []
        self.opening_bytes = opening_bytes
        self.on_opened = on_opened
        self.opening = opening_bytes > 0

    def moved(self, count: int, source: Side) -> None:
        """Bytes went out: the pipe is not idle, and live counters learn of it."""
        self.last_activity = self.clock()
        self.last_from = source
        if self.on_moved is not None:
            self.on_moved(count)
        if self.opening and source is Side.B and self.directions[1].moved >= self.opening_bytes:
            self.opening = False
            if self.on_opened is not None:
                self.on_opened()

    def stream_ended(self) -> None:
        """One side's stream ended and is delivered: during the opening, so does the pipe."""
        if self.opening and not self.finished.done():
            self.finished.set_result(PumpEnd.EARLY)

    def fail(self) -> None:
        if not self.finished.done():
            self.finished.set_result(PumpEnd.ERROR)

    def check_done(self) -> None:
        if all(d.done for d in self.directions) and not self.finished.done():
            self.finished.set_result(PumpEnd.CLOSED)

    async def run(self) -> PumpEnd:
        while True:
            remaining = self.last_activity + self.idle_timeout - self.clock()
            if remaining <= 0:
                return PumpEnd.IDLE
            try:
                return await asyncio.wait_for(asyncio.shield(self.finished), remaining)
            except TimeoutError:
                continue


async def pump(
    a: socket.socket,
    b: socket.socket,
    *,
    buffer_size: int,
    idle_timeout: float,
    use_splice: bool = True,
    preload_a_to_b: bytes = b"",
    preload_b_to_a: bytes = b"",
    on_moved: Callable[[int], None] | None = None,
    clock: Callable[[], float] | None = None,
    opening_bytes: int = 0,
    on_opened: Callable[[], None] | None = None,
) -> PumpResult:
    """Move bytes between a and b until both finish, one fails, or idle_timeout passes.

    The sockets must be non-blocking. They are left open; the caller closes them.
    preload_* are bytes already read from one side (e.g. pipelined after the
    handshake line) that must reach the other side first. on_moved, if given,
    is called with each burst's byte count as it goes out (live metrics).
    clock (seconds; the event loop's time by default) measures idle_timeout;
    the idle check waits on the event loop, so a test's clock must move with it.
    opening_bytes, on_opened: the opening (module docstring); 0 means none.
    """
    kind = _SpliceDirection if use_splice and SPLICE_AVAILABLE else _CopyDirection
    state = _Pump(idle_timeout, on_moved, clock, opening_bytes, on_opened)
    forward = kind(state, a, b, buffer_size)
    try:
        backward = kind(state, b, a, buffer_size)
    except OSError:
        forward.close()
        raise
    forward.source, backward.source = Side.A, Side.B
    state.directions = [forward, backward]
    try:
        forward.start(preload_a_to_b)
        backward.start(preload_b_to_a)
        outcome = await state.run()
    finally:
        forward.stop()
        backward.stop()
    return PumpResult(forward.moved, backward.moved, outcome, state.last_from, state.first_eof)
