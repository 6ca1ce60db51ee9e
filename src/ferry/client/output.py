"""What the receiver prints: the "what is coming" line, --ask, texts, and `-` (stdout).

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
- A text message is printed on stdout once it is complete and
  authenticated, exactly the bytes sent plus a newline if it lacks one.
  On a terminal, control and format characters (escape sequences) are
  shown as "?" so a text cannot drive the terminal; to a pipe or file,
  the bytes are written unchanged.
- `receive RELAY CODE -` writes one file's bytes (or a stream's) to stdout
  as they arrive; a tree is refused before data moves (receiver.py).
  When stdout is a terminal, a file is refused too, before data moves,
  unless --force: its bytes may be binary or carry escape sequences (OSC 52
  writes the clipboard, others clear the screen or fake a prompt), and
  they cannot be looked at before the answer, which must come first for
  the refusal to keep the sender's code alive for a redirected retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferry import platform, units
from ferry.client.wire import Wire
from ferry.errors import ConnectionLost, LocalFileError, NotForTerminal
from ferry.names import display_name
from ferry.protocol import messages
from ferry.protocol.events import DataReceived
from ferry.protocol.receiver_session import ReceiverSession

if TYPE_CHECKING:
    from ferry.client.receiver import Receiver


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


async def receive_text(
    receiver: Receiver, wire: Wire, session: ReceiverSession, offer: messages.Offer
) -> None:
    loop = asyncio.get_running_loop()
    limit = receiver.config.max_text
    if sys.stdout is None:  # closed when the program started (cli/common.py)
        text = "the receiver cannot show a text: its standard output is closed"
        error = LocalFileError("a text came, but standard output is closed")
        raise await receiver.refuse(wire, session, messages.REASON_LOCAL_ERROR, text, error)
    if offer.size > limit:
        text = f"a text of {offer.size} bytes is over this receiver's limit ({limit})"
        raise await receiver.refuse(wire, session, messages.REASON_TOO_LARGE, text)
    if not await receiver.confirm(f"a text message ({units.size(offer.size)})"):
        raise await receiver.refuse(wire, session, messages.REASON_DECLINED, "declined")
    session.accept(loop.time())
    await wire.flush()
    message = bytearray()
    while True:
        event = await wire.expect(DataReceived)
        message += event.data
        if event.final:
            break
    if not message.endswith(b"\n"):
        message += b"\n"
    _write_stdout(_for_terminal(bytes(message)) if sys.stdout.isatty() else message)
    session.acknowledge(loop.time())
    with contextlib.suppress(ConnectionLost):
        await wire.flush()


def _for_terminal(text: bytes) -> bytes:
    shown = "".join(
        char if char in "\n\t" or unicodedata.category(char) not in ("Cc", "Cf", "Cs")
        else "?"
        for char in text.decode("utf-8", "replace")
    )  # fmt: skip
    return shown.encode("utf-8")


async def receive_to_stdout(
    receiver: Receiver, wire: Wire, session: ReceiverSession, offer: messages.Offer
) -> None:
    loop = asyncio.get_running_loop()
    size = units.offered_size(offer.size)
    if receiver.output.terminal and not receiver.output.force:
        error = NotForTerminal(
            f"{display_name(offer.name)} ({size}) not written: standard output is a terminal, "
            "and binary data or escape sequences can mess it up; redirect it (> FILE) or "
            "pass --force (the code still works)"
        )
        text = "the receiver's standard output is a terminal; it takes a file redirected"
        raise await receiver.refuse(wire, session, messages.REASON_DECLINED, text, error)
    if not await receiver.confirm(f"{display_name(offer.name)} ({size}) to standard output"):
        raise await receiver.refuse(wire, session, messages.REASON_DECLINED, "declined")
    session.accept(loop.time())
    await wire.flush()
    progress = receiver.progress
    progress.start(max(offer.size, 0), display_name(offer.name))
    try:
        while True:
            event = await wire.expect(DataReceived)
            _write_stdout(event.data)
            progress.update(len(event.data))
            if event.final:
                break
    except BaseException as exc:
        await receiver.abort_on(wire, exc)
        raise
    finally:
        progress.close()
    session.acknowledge(loop.time())
    with contextlib.suppress(ConnectionLost):
        await wire.flush()


def _write_stdout(data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(sys.stdout.fileno(), view) :]
    except OSError as exc:
        raise LocalFileError(f"cannot write to standard output: {exc.strerror}") from None
