"""Where a transfer's DATA stands, file by file: the one resume path of both sessions.

Theory of operation. The DATA of a transfer is its files' bytes back to
back: a tree's files in manifest order, or the one file, stream or text
(index None; it ends with the final record, its size is the session's
business). A single file is a one-entry tree: resuming asks the same of
both, per kept file, and the Cursor is the one place that says it.

- A kept file's START comes before any of its bytes and after every byte
  of the files before it (and the DIGEST of one that resumed), at 0 or,
  if its proof matched, at the bytes kept (reject() says it did not).
- A file that resumed (START > 0) is followed, right after its last byte,
  by its DIGEST: the SHA-256 of the whole file. For the one file, its
  last byte is the final record's.

Each session keeps one Cursor: the sender's raises LocalProtocolError
when its driver breaks a rule, the receiver's RemoteProtocolError when the
peer did. The cursor does no I/O and holds no bytes: take() says how many
of the bytes at hand belong to the current file; the session keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ferry.errors import ProtocolError
from ferry.protocol.records import RecordType

Index = int | None
"""A tree's manifest entry, or None: the one file, stream or text (as on the wire)."""


def _named(index: Index) -> str:
    return "the file" if index is None else f"file {index}"


class Cursor:
    def __init__(
        self, files: Sequence[tuple[Index, int | None]], error: type[ProtocolError]
    ) -> None:
        """`files`: (index, size) in DATA order; size None: the file ends with the final
        record. `error`: what breaking a rule raises (whose fault it would be)."""
        self._files = list(files)
        self._error = error
        self._at = 0
        self._left = self._files[0][1] if self._files else 0
        self.kept: dict[Index, int] = {}
        """Bytes kept of each kept file: where its START may say it starts (besides 0)."""
        self.due: RecordType | None = None
        """START or DIGEST when that record must come next (no DATA before it)."""
        self.ended = False
        """The final DATA record went out, or came in."""
        self.completed: Index = None
        """The file completed last (by take() or pass_empty())."""
        self.skipped = 0
        """Bytes kept and not sent: the sum of the START offsets."""
        self._resuming = False
        self._digest_of: Index = None
        self.finished = not self._files
        """Every file is complete (a DIGEST may still be due)."""

    @property
    def current(self) -> Index:
        return self._files[self._at][0]

    def keep(self, kept: Mapping[Index, int]) -> None:
        """The files kept in part or whole, before any DATA: each needs a START."""
        self.kept = dict(kept)
        if self._files and self.current in self.kept:
            self.due = RecordType.START

    def reject(self, index: Index) -> None:
        """The proof of a kept file did not match: it can only start at 0."""
        self.kept[index] = 0

    def take(self, n: int) -> tuple[Index, int, bool]:
        """Of n bytes (n > 0) at hand: the file they go to, how many of them it takes, and
        whether that completes it."""
        if self.due is not None:
            raise self._error("DATA where a START or DIGEST was due")
        left = self._left
        if self.finished or left == 0:
            raise self._error("more DATA than the files offered hold")
        index = self._files[self._at][0]
        if left is None:
            return index, n, False
        if n < left:
            self._left = left - n
            return index, n, False
        self._left = 0
        self._complete()
        return index, left, True

    def advance(self, n: int) -> None:
        """n bytes (n >= 0) went out in one record: through every file they complete, and
        past the files with nothing left to send (empty, or kept whole). The sender's
        take(), a record at a time."""
        while True:
            left = self._left
            if self.due is not None or self.finished:
                if n:
                    self.take(n)  # raises: a START or DIGEST was due, or nothing is left
                return
            if left is None or n < left:
                if left is not None:
                    self._left = left - n
                return
            n -= left
            self._left = 0
            self._complete()

    def pass_empty(self) -> bool:
        """Complete the current file if nothing is left of it (an empty file, one kept
        whole); False if there is none such (or a START or DIGEST is due first)."""
        if self.due is not None or self.finished or self._left != 0:
            return False
        self._complete()
        return True

    def end(self) -> None:
        """The final DATA record: the one file (size None) is complete."""
        self.ended = True
        if not self.finished and self._left is None and self.due is None:
            self._complete()

    def start(self, index: Index, offset: int) -> None:
        """A START of file `index` at `offset`."""
        allowed = (0, self.kept.get(index, 0))
        if self.due is not RecordType.START or index != self.current or offset not in allowed:
            raise self._error(
                f"a START of {_named(index)} at {offset} does not answer what was kept "
                "(it comes before the file's bytes, at 0 or, if its proof matched, the "
                "bytes kept)"
            )
        self.due = None
        if self._left is not None:
            self._left -= offset
        self.skipped += offset
        self._resuming = offset > 0

    def digest(self, index: Index) -> None:
        """A DIGEST of file `index`."""
        if self.due is not RecordType.DIGEST or index != self._digest_of:
            raise self._error(
                f"a DIGEST of {_named(index)} is for another file: it follows, once, the "
                "last byte of a file that resumed"
            )
        self.due = None
        self._arrive()

    def _complete(self) -> None:
        self.completed = self._files[self._at][0]
        self._at += 1
        if self._resuming:
            self._resuming = False
            self._digest_of = self.completed
            self.due = RecordType.DIGEST
        else:
            self._arrive()

    def _arrive(self) -> None:
        """On to the file at _at (if any): a kept one's START is due first."""
        if self._at >= len(self._files):
            self.finished = True
            self._left = 0
            return
        index, self._left = self._files[self._at]
        if index in self.kept:
            self.due = RecordType.START
