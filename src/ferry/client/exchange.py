"""One receive after the key exchange: the interface every kind of offer is stored through.

Theory of operation. receiver.py pairs and authenticates, then hands the
offer to the module for its kind: a single file (receiver.py itself), a
tree (receive_tree.py), a text or a file to standard output (to_stdout.py).
Each answers the offer and ends it the same way, through one Exchange:

- refuse() before any data moves: the sender keeps its code alive;
- confirm(): the "what is coming" line, and --ask's y/N (output.py);
- check_space(): an offer the filesystem cannot hold is refused, not cut;
- acknowledge() once the data is stored (and, for a file, fsynced);
- after a local failure mid-transfer, Wire.abort_on tells the sender
  why, by the one rule both sides follow (peer.abort_for).

This module sits below the three that use it and imports none of them, so
the receive side has no import cycle: receiver.py imports receive_tree.py
and to_stdout.py, and those import only this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ferry.client.output import Output
from ferry.client.progress import Progress
from ferry.config import ClientConfig
from ferry.errors import ConnectionLost, FerryError, LocalFileError, RefusedOffer
from ferry.names import display_name
from ferry.protocol import messages

if TYPE_CHECKING:
    from ferry.client.wire import Wire
    from ferry.protocol.receiver_session import ReceiverSession


@dataclass
class Exchange:
    wire: Wire
    """The authenticated connection to the sender."""
    session: ReceiverSession
    config: ClientConfig
    progress: Progress
    output: Output
    directory: Path
    """The output directory (made by the receiver before any data moves)."""
    overwrite: bool = False
    """--overwrite: an existing regular file (or a tree's) may be replaced."""
    resume: bool = True
    """False (--no-resume): what an earlier try kept is discarded."""
    merge: bool = False
    """--merge: a tree's directories may go into existing ones (client/placement.py)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def refuse(
        self, reason: str, message: str, error: FerryError | None = None
    ) -> FerryError:
        """Refuse the offer (the sender keeps its code alive); the error to raise here."""
        self.session.refuse(reason, message, self.now())
        await self.wire.flush()
        return error or RefusedOffer(message)

    async def confirm(self, summary: str) -> bool:
        """Show what is coming (on a terminal); with --ask, wait for y/N.

        The wait ends early if the sender goes away or gives up meanwhile
        (Wire.while_deciding): it raises that error.
        """
        return await self.output.confirm(summary, self.wire)

    async def check_space(self, size: int, entries: int = 1) -> None:
        """Refuse an offer the directory's filesystem cannot hold: its bytes plus a
        block per entry (a directory takes one even when empty), and an inode per
        entry where the filesystem counts them (room_for)."""
        try:
            stats = os.statvfs(self.directory)
        except (OSError, AttributeError):
            return
        short = room_for(stats, size, entries)
        if short is not None:
            where = display_name(str(self.directory))
            raise await self.refuse(
                messages.REASON_LOCAL_ERROR, f"not enough disk space ({short})",
                LocalFileError(f"not enough space in {where}: {short}"),
            )  # fmt: skip

    async def acknowledge(self) -> None:
        """Send the ACK. Stored safely even if it cannot go out; the sender then
        reports the missing acknowledgement."""
        self.session.acknowledge(self.now())
        with contextlib.suppress(ConnectionLost):
            await self.wire.flush()


def room_for(stats: os.statvfs_result, size: int, entries: int) -> str | None:
    """What the filesystem lacks to store `entries` entries holding `size` bytes (None:
    it has room). Counts a block per entry on top of the bytes, and an inode per
    entry where the filesystem has a fixed number (f_files 0: it does not)."""
    block = stats.f_frsize or 4096
    free = stats.f_bavail * stats.f_frsize
    needed = size + entries * block if size != messages.UNKNOWN_SIZE else entries * block
    if needed > free:
        return f"{free} bytes free, {needed} needed"
    if stats.f_files and entries + 1 > stats.f_favail:  # +1: the staging directory
        return f"{stats.f_favail} files or directories can still be created, {entries} offered"
    return None
