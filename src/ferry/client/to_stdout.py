"""A text, or a file to `-`: written to standard output, never to DIR.

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

import os
import sys
import unicodedata

from ferry import units
from ferry.client.exchange import Exchange
from ferry.errors import LocalFileError, NotForTerminal
from ferry.names import display_name
from ferry.protocol import messages


async def receive_text(ex: Exchange, offer: messages.Offer) -> None:
    from ferry.protocol.events import DataReceived

    limit = ex.config.max_text
    if sys.stdout is None:  # closed when the program started (cli/common.py)
        text = "the receiver cannot show a text: its standard output is closed"
        error = LocalFileError("a text came, but standard output is closed")
        raise await ex.refuse(messages.REASON_LOCAL_ERROR, text, error)
    if offer.size > limit:
        text = f"a text of {offer.size} bytes is over this receiver's limit ({limit})"
        raise await ex.refuse(messages.REASON_TOO_LARGE, text)
    if not await ex.confirm(f"a text message ({units.size(offer.size)})"):
        raise await ex.refuse(messages.REASON_DECLINED, "declined")
    ex.session.accept(ex.now())
    await ex.wire.flush()
    message = bytearray()
    while True:
        event = await ex.wire.expect(DataReceived)
        assert isinstance(event, DataReceived)
        message += event.data
        if event.final:
            break
    if not message.endswith(b"\n"):
        message += b"\n"
    _write_stdout(_for_terminal(bytes(message)) if sys.stdout.isatty() else message)
    await ex.acknowledge()


def _for_terminal(text: bytes) -> bytes:
    shown = "".join(
        char if char in "\n\t" or unicodedata.category(char) not in ("Cc", "Cf", "Cs")
        else "?"
        for char in text.decode("utf-8", "replace")
    )  # fmt: skip
    return shown.encode("utf-8")


async def receive_to_stdout(ex: Exchange, offer: messages.Offer) -> None:
    from ferry.protocol.events import DataReceived

    size = units.offered_size(offer.size)
    if ex.output.terminal and not ex.output.force:
        error = NotForTerminal(
            f"{display_name(offer.name)} ({size}) not written: standard output is a terminal, "
            "and binary data or escape sequences can mess it up; redirect it (> FILE) or "
            "pass --force (the code still works)"
        )
        text = "the receiver's standard output is a terminal; it takes a file redirected"
        raise await ex.refuse(messages.REASON_DECLINED, text, error)
    if not await ex.confirm(f"{display_name(offer.name)} ({size}) to standard output"):
        raise await ex.refuse(messages.REASON_DECLINED, "declined")
    ex.session.accept(ex.now())
    await ex.wire.flush()
    progress = ex.progress
    progress.start(max(offer.size, 0), display_name(offer.name))
    try:
        while True:
            event = await ex.wire.expect(DataReceived)
            assert isinstance(event, DataReceived)
            _write_stdout(event.data)
            progress.update(len(event.data))
            if event.final:
                break
    except BaseException as exc:
        await ex.wire.abort_on(exc)
        raise
    finally:
        progress.close()
    await ex.acknowledge()


def _write_stdout(data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(sys.stdout.fileno(), view) :]
    except OSError as exc:
        raise LocalFileError(f"cannot write to standard output: {exc.strerror}") from None
