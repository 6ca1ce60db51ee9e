"""What the receiver asks on the terminal: the "what is coming" line and --ask.

- On a terminal (stderr), one line before any data moves says what is
  coming; --ask then waits for y/N on stdin (anything but y/yes declines,
  and so does end of input). Never by default: scripts run unattended.
  While it waits, the connection is watched (Wire.while_deciding): a
  sender that goes away or gives up ends the prompt with its error.
- stdin is read a byte at a time (read_answer, read_line), so a code read
  from stdin takes nothing of the answer that follows it; and where the
  loop can watch it (POSIX) without a thread: a thread blocked in a read
  cannot be stopped. Where it cannot (Windows' proactor loop), a daemon
  thread reads the line: asyncio.run never waits for one at exit, so the
  prompt can still be left.

A text, or a file to `-`, is written by to_stdout.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferry import platform

if TYPE_CHECKING:
    from ferry.client.wire import Wire


@dataclass
class Output:
    to_stdout: bool = False
    """`-` was given as DIR: a file's bytes go to stdout."""
    ask: bool = False
    """--ask: wait for y/N before accepting."""
    announce: bool = False
    """Show the "what is coming" line (stderr is a terminal)."""
    terminal: bool = False
    """stdout is a terminal: a file's bytes are refused there unless `force`."""
    force: bool = False
    """--force: write a file's bytes to stdout even when it is a terminal."""

    async def confirm(self, summary: str, wire: Wire) -> bool:
        """Say what is coming (on a terminal, or with --ask); with --ask, wait for y/N."""
        if self.announce or self.ask:
            print(f"receive: coming: {summary}", file=sys.stderr, flush=True)
        if not self.ask:
            return True
        print("receive: accept? [y/N] ", end="", file=sys.stderr, flush=True)
        try:
            line = await wire.while_deciding(read_answer())
        except BaseException:
            print(file=sys.stderr, flush=True)  # the error line that follows gets its own line
            raise
        return line.decode("utf-8", "replace").strip().lower() in ("y", "yes")


STDIN = 0
MAX_LINE = 4096
"""Bytes of an answer (or a code) read from stdin at most; the rest of a longer line is left."""


def read_line(fd: int = STDIN) -> bytes:
    """One line from fd (blocking), read a byte at a time so nothing after it is taken."""
    line = bytearray()
    while len(line) < MAX_LINE and not line.endswith(b"\n"):
        try:
            byte = os.read(fd, 1)
        except OSError:
            break
        if not byte:
            break
        line += byte
    return bytes(line)


async def read_answer(fd: int = STDIN) -> bytes:
    """One line from fd without blocking the event loop, so waiting for it can be cancelled.

    A byte is read each time fd is readable (a terminal: once a line is
    typed). A file or /dev/null, which the loop cannot watch, never blocks
    and is read directly.
    """
    loop = asyncio.get_running_loop()
    line = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if done.done():
            return
        try:
            byte = os.read(fd, 1)
        except OSError:
            byte = b""
        line.extend(byte)
        if not byte or byte == b"\n" or len(line) >= MAX_LINE:
            loop.remove_reader(fd)
            done.set_result(None)

    try:
        if not platform.add_reader(loop, fd, readable):
            return await _read_line_on_thread(fd)
    except (OSError, ValueError):  # PermissionError: epoll cannot watch a regular file
        return read_line(fd)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(line)


async def _read_line_on_thread(fd: int) -> bytes:
    """read_line(fd) on a daemon thread (never waited for at exit), awaited here."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    def finish(line: bytes) -> None:
        if not done.done():
            done.set_result(line)

    def run() -> None:
        line = read_line(fd)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(finish, line)

    threading.Thread(target=run, name="ferry-answer", daemon=True).start()
    return await done
