"""The receiving side's session: the offer, a decision, the data, the ACK once stored.

The states it moves through and the steps between them are
transitions.RECEIVER; the protocol as a whole is protocol/session.py's
docstring. A tree's DATA is split here at the file boundaries of its
manifest (FileData events, then AllReceived); the one file, stream or
text comes as DataReceived, a record at a time. Either way the Cursor
(protocol/cursor.py) says where a kept file's START and a resumed file's
DIGEST are due: RECEIVING moves to AWAIT_START or AWAIT_DIGEST, and any
DATA record then is out of turn.

Compression (protocol/compression.py): a receiver made with
decompress=True (the default) names its codecs in every acceptance, and
inflates a compressed DATA record, checked and bounded, before anything
else sees it: events carry the raw bytes. A compressed record from a
sender that was not told it may send one is a protocol error.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol import compression, manifest, messages
from ferry.protocol.cursor import Cursor, Index
from ferry.protocol.events import (
    AllReceived,
    DataReceived,
    DigestReceived,
    Event,
    FileData,
    OfferReceived,
    ProofReceived,
    Started,
    State,
    Timeouts,
)
from ferry.protocol.records import MAX_DATA_PAYLOAD, Header, RecordDecoder, RecordType
from ferry.protocol.session import Session, data_records_allowed
from ferry.protocol.transitions import RECEIVER, Step

if TYPE_CHECKING:
    from ferry.codec import Inflater


class ReceiverSession(Session):
    """The receiving side: the offer, a decision, the data, the ACK once stored."""

    side = "receiver"
    machine = RECEIVER

    def __init__(
        self,
        password: bytes,
        timeouts: Timeouts,
        max_entries: int = 100_000,
        max_manifest_bytes: int = 32 * 1024 * 1024,
        decompress: bool = True,
    ) -> None:
        # Room for two of the largest records: reads stay large, and a
        # partial record is moved at most once per buffer's worth.
        super().__init__(password, timeouts, capacity=RecordDecoder.MAX_BUFFER)
        self.offer: messages.Offer | None = None
        self.received = 0
        """Bytes of the DATA so far, the kept bytes of files that resumed included."""
        self.data_records = 0
        self.max_entries = max_entries
        """A tree OFFER with more entries is not read: the driver refuses it."""
        self.max_manifest_bytes = max_manifest_bytes
        """Plaintext bytes of MANIFEST records held at most (a RemoteProtocolError past it)."""
        self.entries: list[manifest.Entry] = []
        self._manifest_bytes = 0
        self._manifest_records = 0
        self._unread_records = 0
        self.resume_from = 0
        """Bytes kept of a file or a stream, where its DATA may start (0 once its proof
        did not match)."""
        self.resumed = False
        """The one file or stream resumed (its START was past 0): a DIGEST follows it."""
        self._proofs_total = 0
        self._macs: list[str] = []
        self._delivered = 0
        self._files: list[tuple[int, int]] = []
        """A tree's files: (entry index, size), in DATA order."""
        self._cursor = Cursor([], RemoteProtocolError)
        self._pending = memoryview(b"")
        """Plaintext of a tree's DATA record not yet reported (FileData)."""
        self._is_tree = False
        self.decompress = decompress
        """Tell the sender, when accepting, that compressed DATA records are welcome."""
        self._inflater: Inflater | None = None
        self.compressed_records = 0
        """DATA records that came compressed."""

    @property
    def is_tree(self) -> bool:
        return self._is_tree

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        kind = header.type
        if kind is RecordType.OFFER:
            return self._offered(messages.decode_offer(bytes(plain)))
        if kind is RecordType.MANIFEST:
            return self._manifest_part(plain)
        if kind is RecordType.PROOF:
            return self._proof_part(plain)
        if kind is RecordType.START:
            return self._started(messages.decode_start(bytes(plain)))
        if kind is RecordType.DIGEST:
            return self._digested(messages.decode_digest(bytes(plain)))
        assert kind is RecordType.DATA  # the only other the table lets through
        return self._data(header, plain)

    # -- the offer -----------------------------------------------------------------------

    def _offered(self, offer: messages.Offer) -> Event | None:
        self.offer = offer
        self._is_tree = offer.kind == messages.KIND_TREE
        if not self.is_tree or not self._readable_tree(offer):
            # An unread manifest's records may still arrive: passed over.
            self._unread_records = offer.records if self.is_tree else 0
            self._move(Step.OFFER)
            return OfferReceived(offer)
        self._move(Step.TREE_OFFER)
        return None

    def _readable_tree(self, offer: messages.Offer) -> bool:
        """Whether to read this tree's manifest (if not, the driver refuses the offer)."""
        if offer.manifest != messages.MANIFEST_VERSION or offer.entries > self.max_entries:
            return False
        if offer.entries == 0 or offer.records == 0:
            raise RemoteProtocolError("the sender offered an empty tree")
        return True

    def _manifest_part(self, plain: memoryview) -> Event | None:
        if self.state is State.DECIDING:
            if not self._unread_records:
                raise RemoteProtocolError("unexpected MANIFEST record")
            self._unread_records -= 1
            self._move(Step.UNREAD_MANIFEST)
            return None
        offer = self.offer
        assert offer is not None
        self._manifest_bytes += len(plain)
        if self._manifest_bytes > self.max_manifest_bytes:
            most = self.max_manifest_bytes / (1 << 20)
            raise RemoteProtocolError(
                f"the sender's list of files is larger than {most:g} MiB (refused unread)"
            )
        self.entries += manifest.decode_record(bytes(plain))
        self._manifest_records += 1
        if len(self.entries) > offer.entries:
            raise RemoteProtocolError("the manifest holds more entries than offered")
        if self._manifest_records < offer.records:
            self._move(Step.MANIFEST)
            return None
        self._files = list(manifest.file_sizes(self.entries))
        total = sum(size for _, size in self._files)
        if len(self.entries) != offer.entries or len(self._files) != offer.files:
            raise RemoteProtocolError("the manifest does not hold the entries offered")
        if total != offer.size:
            raise RemoteProtocolError("the manifest's sizes do not add up to the offered size")
        self._move(Step.LAST_MANIFEST)
        return OfferReceived(offer, tuple(self.entries))

    # -- the decision --------------------------------------------------------------------

    def accept(self, now: float, resume_from: int = 0, kept: Sequence[messages.Kept] = ()) -> None:
        """Accept; offer to resume after the bytes kept, if the sender proves it has them.

        A file or a stream: resume_from. A tree: `kept`, the files kept part
        or all of, in manifest order. With either, the sender's proofs come
        next (ProofReceived), then verdict().
        """
        offer = self.offer
        step = Step.ACCEPT_KEPT if resume_from or kept else Step.ACCEPT
        self.machine.advance(self.state, step)  # out of turn raises before anything is sent
        assert offer is not None
        if self.is_tree and not self.entries:
            raise LocalProtocolError("a tree whose manifest was not read cannot be accepted")
        sized = offer.size != messages.UNKNOWN_SIZE
        if resume_from and not (
            offer.resume and not self.is_tree and (resume_from <= offer.size or not sized)
        ):
            raise LocalProtocolError("this offer cannot be resumed from there")
        if kept and not (offer.resume and self._fits(kept)):
            raise LocalProtocolError("this tree cannot be resumed so")
        resume = messages.encode_resume(list(kept))
        codecs = compression.CODECS if self.decompress else ()
        answer = messages.Answer(
            True, resume_from=resume_from, resume_records=len(resume), compress=codecs
        )
        if codecs:
            from ferry.codec import Inflater

            self._inflater = Inflater()
        self._send(step, RecordType.ANSWER, messages.encode_answer(answer), now)
        for body in resume:
            self._outgoing += self.seal_record(RecordType.RESUME, body)
        self.resume_from = resume_from
        files: list[tuple[Index, int | None]] = [*self._files] if self.is_tree else [(None, None)]
        self._cursor = Cursor(files, RemoteProtocolError)
        self._cursor.keep({k.index: k.size for k in kept} if kept else
                          {None: resume_from} if resume_from else {})  # fmt: skip
        self._proofs_total = len(self._cursor.kept)
        self._follow()

    def _fits(self, kept: Sequence[messages.Kept]) -> bool:
        """Kept files are files of this tree, in order, kept in part or whole (not empty)."""
        sizes = dict(self._files)
        indexes = [k.index for k in kept]
        in_order = all(a < b for a, b in pairwise(indexes))
        return in_order and all(0 < k.size <= sizes.get(k.index, -1) for k in kept)

    def refuse(self, reason: str, message: str, now: float) -> None:
        answer = messages.Answer(False, reason, message)
        self._send(Step.REFUSE, RecordType.ANSWER, messages.encode_answer(answer), now)

    # -- resume: proofs and verdict ---------------------------------------------------------

    def _proof_part(self, plain: memoryview) -> Event | None:
        """One PROOF record: the sender's MACs of the next kept files."""
        batch = messages.decode_proof(bytes(plain))
        if len(batch) != min(messages.KEPT_PER_RECORD, self._proofs_total - len(self._macs)):
            raise RemoteProtocolError("the sender's proof does not fit what was kept")
        self._macs += batch
        if len(self._macs) < self._proofs_total:
            self._move(Step.PROOF)
            return None
        self._move(Step.LAST_PROOF)
        return ProofReceived(tuple(self._macs))

    def verdict(self, matched: Sequence[bool], now: float) -> None:
        """Which kept files resume, in order (the sender's proof matched ours; compare in
        constant time): a file that does not starts over (its START must be 0)."""
        if self.state is State.VERIFYING and len(matched) != self._proofs_total:
            raise LocalProtocolError(f"{len(matched)} verdicts for {self._proofs_total} proofs")
        self._move(Step.SEND_VERDICT)
        for body in messages.encode_verdicts(list(matched)):
            self._outgoing += self.seal_record(RecordType.VERDICT, body)
        for index, ok in zip(list(self._cursor.kept), matched, strict=True):
            if not ok:
                self._cursor.reject(index)
        if not self.is_tree and not matched[0]:
            self.resume_from = 0
        self._progress_at = now
        self._follow()

    # -- the data ------------------------------------------------------------------------

    def _data(self, header: Header, plain: memoryview) -> Event | None:
        assert self.offer is not None
        if header.compressed:
            plain = self._inflate(plain)
        self._count_record(len(plain), header.final)
        self.received += len(plain)
        if self.offer.size != messages.UNKNOWN_SIZE and self.received > self.offer.size:
            raise RemoteProtocolError("the sender sent more than it offered")
        sized = self.offer.size != messages.UNKNOWN_SIZE
        if header.final and sized and self.received != self.offer.size:
            raise RemoteProtocolError(
                f"the sender ended after {self.received} of {self.offer.size} bytes"
            )
        self._move(Step.DATA)
        if self.is_tree:
            if header.final:
                self._cursor.end()
            self._pending = plain  # reported piece by piece by _pending_event()
            return None
        if plain:
            self._cursor.take(len(plain))
        if header.final:
            self._cursor.end()
        self._follow()
        return DataReceived(plain, header.final)

    def _inflate(self, body: memoryview) -> memoryview:
        """The raw bytes of a compressed DATA record, never more than it states, nor more
        than the offer has left (protocol/compression.py)."""
        if self._inflater is None:
            raise RemoteProtocolError("the sender compressed a record it was not told it may")
        assert self.offer is not None
        most = MAX_DATA_PAYLOAD
        if self.offer.size != messages.UNKNOWN_SIZE:
            most = min(most, self.offer.size - self.received)
        stated, frame = compression.parse(body, most)
        self.compressed_records += 1
        return memoryview(self._inflater.inflate(frame, stated))

    def _count_record(self, size: int, final: bool) -> None:
        """A DATA record's cost in bytes (session.py's docstring); raises past the
        allowance."""
        if not size and not final:
            raise RemoteProtocolError("the sender sent an empty DATA record")
        self.data_records += 1
        self._delivered += size
        if self.data_records > data_records_allowed(self._delivered):
            raise RemoteProtocolError("the sender sent too many DATA records for their bytes")

    def _started(self, start: messages.Start) -> Event:
        self._cursor.start(start.index, start.offset)
        self._move(Step.START)
        self.received += start.offset
        if start.index is None:
            self.resumed = start.offset > 0
        return Started(start.offset, start.index)

    def _digested(self, digest: messages.Digest) -> Event:
        self._cursor.digest(digest.index)
        self._move(Step.DIGEST)
        if not self.is_tree:
            self._follow()
        return DigestReceived(digest.sha256, digest.index)

    def _follow(self) -> None:
        """In RECEIVING, follow the cursor: to AWAIT_START or AWAIT_DIGEST when one is due;
        the one file, to STORING once its final record (and DIGEST) arrived."""
        if self.state is not State.RECEIVING:
            return
        due = self._cursor.due
        if due is RecordType.START:
            self._move(Step.START_DUE)
        elif due is RecordType.DIGEST:
            self._move(Step.DIGEST_DUE)
        elif self._cursor.ended and not self.is_tree:
            self._move(Step.ALL_RECEIVED)

    def _pending_event(self) -> Event | None:
        """The next piece of a tree's data: bytes up to a file boundary, an empty file, the end."""
        if not self._is_tree or self.state is not State.RECEIVING:
            return None
        cursor = self._cursor
        if cursor.due is not None:
            if self._pending:
                raise RemoteProtocolError("the sender sent DATA where a START or DIGEST was due")
            self._follow()
            return None
        if cursor.pass_empty():  # an empty file, or one kept whole
            assert isinstance(cursor.completed, int)
            return FileData(cursor.completed, memoryview(b""), done=True)
        if self._pending:
            index, n, done = cursor.take(len(self._pending))
            assert isinstance(index, int)
            piece, self._pending = self._pending[:n], self._pending[n:]
            return FileData(index, piece, done)
        if cursor.finished and cursor.ended:
            self._move(Step.ALL_RECEIVED)
            return AllReceived()
        return None

    def acknowledge(self, now: float) -> None:
        """The file is stored: say so (data_to_send())."""
        body = messages.encode_ack(messages.Ack(self.received))
        self._send(Step.ACKNOWLEDGE, RecordType.ACK, body, now)
