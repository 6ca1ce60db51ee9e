"""Reading standard input (`send -`) without blocking the event loop, on every system.

Two readers with one interface (read_fully, at_eof, close):

- PollingReader (POSIX): the descriptor is made non-blocking, read with
  readv straight into the caller's buffer, and waited on with the loop's
  add_reader;
- ThreadedReader (Windows: no readv, no non-blocking pipes before 3.12, no
  add_reader on the proactor loop): a daemon thread does blocking reads of
  at most THREAD_CHUNK bytes and hands them to the loop through a queue of at
  most QUEUE_CHUNKS items, so at most about QUEUE_CHUNKS * THREAD_CHUNK bytes
  wait in memory: the thread blocks while the queue is full. A daemon thread
  is never waited for at exit (asyncio.run would wait for an executor's), so
  a sender that stops while stdin is silent still exits.

`open_reader` picks the one this system supports (platform.POLL_STDIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from stat import S_ISDIR, S_ISFIFO, S_ISREG
from typing import Protocol

from ferry import platform
from ferry.errors import LocalFileError

PIPE_SIZE = 1024 * 1024
"""Bytes of pipe buffer asked for on a stdin pipe (Linux's default unprivileged maximum)."""
THREAD_CHUNK = 128 * 1024
"""Bytes one blocking read of the reader thread asks for at most."""
QUEUE_CHUNKS = 8
"""Chunks read ahead by the thread at most (1 MiB: what a widened pipe would hold)."""


class StdinReader(Protocol):
    at_eof: bool

    async def read_fully(
        self,
        view: memoryview,
        linger: float | None = None,
        may_stop: Callable[[int], bool] | None = None,
    ) -> int: ...

    def close(self) -> None: ...


def open_reader(fd: int, loop: asyncio.AbstractEventLoop) -> StdinReader:
    """The reader for fd that this system supports."""
    if platform.POLL_STDIN:
        return PollingReader(fd, loop)
    return ThreadedReader(fd, loop)


def _read_error(exc: OSError) -> LocalFileError:
    return LocalFileError(f"cannot read standard input: {exc.strerror}")


class _Linger:
    """When bytes in hand may go out although the view is not full (read_fully's rule)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, linger: float) -> None:
        self.loop = loop
        self.linger = linger
        self.deadline: float | None = None

    def left(self, got: int, may_stop: Callable[[int], bool] | None) -> float | None:
        """Seconds still to wait for more input, or None: return what is in hand now."""
        now = self.loop.time()
        self.deadline = self.deadline or now + self.linger
        if now >= self.deadline:
            if may_stop is None or may_stop(got):
                return None
            self.deadline = now + self.linger
        return self.deadline - now


class PollingReader:
    """Reads a pipe (or terminal) without blocking the event loop; a regular file as is."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.at_eof = False
        mode = os.fstat(fd).st_mode
        self._was_blocking = os.get_blocking(fd)
        self._poll = not S_ISREG(mode) and not S_ISDIR(mode)
        if self._poll:
            os.set_blocking(fd, False)
        if S_ISFIFO(mode):
            # 1 MiB instead of 64 KiB: the writer runs ahead, we read whole records
            # (with 64 KiB a 128 KiB record takes two reads and a wait in between).
            platform.pipe_size(fd, PIPE_SIZE)

    async def read_fully(
        self,
        view: memoryview,
        linger: float | None = None,
        may_stop: Callable[[int], bool] | None = None,
    ) -> int:
        """Bytes read into view: until it is full or the input ends (at_eof), or, with
        `linger`, once the input paused that long with bytes in hand (and may_stop(bytes)
        agrees: the receiver's record allowance)."""
        got = 0
        waiting = None if linger is None else _Linger(self.loop, linger)
        while got < len(view):
            try:
                n = os.readv(self.fd, [view[got:]])
            except BlockingIOError:
                if not got or waiting is None:
                    await self._readable()
                    continue
                left = waiting.left(got, may_stop)
                if left is None:
                    return got
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._readable()
                continue
            except OSError as exc:
                raise _read_error(exc) from None
            if not n:
                self.at_eof = True
                break
            got += n
        return got

    async def _readable(self) -> None:
        ready = self.loop.create_future()
        self.loop.add_reader(self.fd, ready.set_result, None)
        try:
            await ready
        finally:
            self.loop.remove_reader(self.fd)

    def close(self) -> None:
        if self._poll and self._was_blocking:
            os.set_blocking(self.fd, True)  # a terminal's other readers expect it


class ThreadedReader:
    """Reads fd on a daemon thread, through a bounded queue (see the module docstring)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.at_eof = False
        self._queue: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        self._room = threading.Semaphore(QUEUE_CHUNKS)
        """Chunks the thread may still hand over: what bounds the queue."""
        self._rest = memoryview(b"")
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._room.acquire()  # waits while QUEUE_CHUNKS chunks are unread
            if self._closed.is_set():
                return
            item: bytes | OSError
            try:
                item = os.read(self.fd, THREAD_CHUNK)
            except OSError as exc:
                item = exc
            try:
                self.loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:
                return  # the loop is closed: nobody reads any more
            if not item or isinstance(item, OSError):
                return

    async def read_fully(
        self,
        view: memoryview,
        linger: float | None = None,
        may_stop: Callable[[int], bool] | None = None,
    ) -> int:
        """As PollingReader.read_fully."""
        got = 0
        waiting = None if linger is None else _Linger(self.loop, linger)
        while got < len(view):
            if self._rest:
                n = min(len(self._rest), len(view) - got)
                view[got : got + n] = self._rest[:n]
                self._rest = self._rest[n:]
                got += n
                continue
            if self.at_eof:
                break
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if not got or waiting is None:
                    item = await self._queue.get()
                else:
                    left = waiting.left(got, may_stop)
                    if left is None:
                        return got
                    try:
                        async with asyncio.timeout(left):
                            item = await self._queue.get()  # a cancelled get loses nothing
                    except TimeoutError:
                        continue
            self._room.release()
            if isinstance(item, OSError):
                raise _read_error(item)
            if not item:
                self.at_eof = True
                break
            self._rest = memoryview(item)
        return got

    def close(self) -> None:
        self._closed.set()
        self._room.release()  # a thread waiting for room ends now
