"""The sending side's session: offer, then send_data() once accepted, then the ACK.

The states it moves through and the steps between them are
transitions.SENDER; the protocol as a whole is protocol/session.py's
docstring. What a kept file asks of the DATA (its START and DIGEST) is the
Cursor's (protocol/cursor.py), the same for a tree's files and for the one
file or stream (index None).

Compression (protocol/compression.py): a sender made with compress=True
compresses DATA records when the receiver's ANSWER names a codec it knows
and the Policy says so; the driver reports each write (wrote(now, waited)),
which is the policy's signal. ferry/codec.py is imported only then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol import compression, manifest, messages
from ferry.protocol.cursor import Cursor, Index
from ferry.protocol.events import (
    Acknowledged,
    Answered,
    Event,
    State,
    Timeouts,
    VerdictReceived,
)
from ferry.protocol.records import (
    FLAG_COMPRESSED,
    FLAG_FINAL,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    TAG_SIZE,
    Header,
    RecordDecoder,
    RecordType,
)
from ferry.protocol.session import Session, data_records_allowed
from ferry.protocol.transitions import SENDER, Step

if TYPE_CHECKING:
    from ferry.codec import Compressor


class SenderSession(Session):
    """The sending side: offer, then send_data() once accepted, then the ACK."""

    side = "sender"
    machine = SENDER

    def __init__(
        self,
        password: bytes,
        offer: messages.Offer,
        timeouts: Timeouts,
        raw_offer: bytes | None = None,
        manifest_records: Sequence[bytes] = (),
        file_sizes: Mapping[int, int] | None = None,
        compress: bool = False,
    ) -> None:
        super().__init__(password, timeouts, capacity=RecordDecoder.MIN_READ)
        self.compress = compress
        """Compress DATA records when it helps, if the receiver can inflate them."""
        self.policy = compression.Policy()
        self._compressor: Compressor | None = None
        self.compressed_records = 0
        """DATA records sent compressed."""
        self.wire_bytes = 0
        """Plaintext bytes of DATA records as sealed (compressed ones as compressed)."""
        self.offer = offer
        if raw_offer is None:
            # Padded: the relay sees the sealed OFFER's length (messages.py).
            raw_offer = messages.padded(messages.encode_offer(offer))
        self._offer_body = raw_offer
        self._manifest = manifest_records
        self.sent = 0
        """Bytes delivered, the kept bytes of files that resumed included (the ACK's)."""
        self.resume_from = 0
        """A file or a stream: the bytes the receiver kept (from its ANSWER)."""
        self.matched: set[Index] = set()
        """The kept files whose proof matched (None: the one file or stream): each may
        start_file() after its kept bytes."""
        self._is_tree = offer.kind == messages.KIND_TREE
        if file_sizes is None and self._is_tree:
            entries = [e for body in manifest_records for e in manifest.decode_record(body)]
            file_sizes = dict(manifest.file_sizes(entries))
        self.file_sizes: Mapping[int, int] = file_sizes or {}
        """tree: the size of each file entry, by manifest index (read from the manifest
        records if not given): where its DATA splits, and what RESUME records may say."""
        self.kept: dict[int, messages.Kept] = {}
        """tree: what the receiver kept, by manifest index (start_file() each, in order)."""
        files: list[tuple[Index, int | None]] = (
            [(i, self.file_sizes[i]) for i in sorted(self.file_sizes)]
            if self._is_tree
            else [(None, None)]
        )
        self._cursor = Cursor(files, LocalProtocolError)
        self._verdicts: list[bool] = []
        self._verdicts_due = 0
        self._answer: messages.Answer | None = None
        self._resume_records = 0
        self._out = memoryview(bytearray(0))
        self.data_records = 0
        self._delivered = 0

    @property
    def resume_matched(self) -> bool:
        """A file or a stream: our proof matched; DATA may start at resume_from."""
        return None in self.matched

    def _keyed(self) -> None:
        # The manifest rides right behind the OFFER: the receiver can decide
        # on the whole tree without another round trip.
        self._outgoing += self.seal_record(RecordType.OFFER, self._offer_body)
        for body in self._manifest:
            # Padded like the OFFER: sizes would tell the relay the names' lengths.
            self._outgoing += self.seal_record(RecordType.MANIFEST, messages.padded(body))

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        if header.type is RecordType.ANSWER:
            return self._answered(messages.decode_answer(bytes(plain)))
        if header.type is RecordType.RESUME:
            return self._resume_part(plain)
        if header.type is RecordType.VERDICT:
            return self._verdict_part(plain)
        assert header.type is RecordType.ACK  # the only other the table lets through
        ack = messages.decode_ack(bytes(plain))
        if ack.size != self.sent:
            raise RemoteProtocolError(f"the receiver stored {ack.size} bytes, not {self.sent}")
        self._move(Step.ACK)
        return Acknowledged(ack)

    def _answered(self, answer: messages.Answer) -> Event | None:
        offer = self.offer
        sized = offer.size != messages.UNKNOWN_SIZE
        if answer.resume_from and not (
            answer.accept
            and offer.resume
            and not self._is_tree
            and (answer.resume_from <= offer.size or not sized)
        ):
            raise RemoteProtocolError("the receiver offered a resume that was not possible")
        if answer.resume_records and not (self._is_tree and offer.resume):
            raise RemoteProtocolError("the receiver offered a resume that was not possible")
        self.resume_from = answer.resume_from
        if answer.accept and compression.negotiated(answer.compress, self.compress):
            from ferry.codec import Compressor

            self._compressor = Compressor()
        if answer.resume_records:
            self._answer, self._resume_records = answer, answer.resume_records
            self._move(Step.KEPT_LIST)
            return None
        if not answer.accept:
            self._move(Step.REFUSAL)
        elif answer.resume_from:
            self._cursor.keep({None: answer.resume_from})
            self._move(Step.KEPT_ONE)
        else:
            self._move(Step.ACCEPTANCE)
        return Answered(answer)

    def _resume_part(self, plain: memoryview) -> Event | None:
        """One RESUME record: files the receiver kept, checked against ours."""
        for kept in messages.decode_resume(bytes(plain)):
            size = self.file_sizes.get(kept.index)
            last = max(self.kept, default=-1)
            if size is None or not 0 < kept.size <= size or kept.index <= last:
                raise RemoteProtocolError("the receiver's resume list does not fit the tree")
            self.kept[kept.index] = kept
        self._resume_records -= 1
        if self._resume_records:
            self._move(Step.RESUME)
            return None
        assert self._answer is not None
        self._cursor.keep({index: kept.size for index, kept in self.kept.items()})
        self._move(Step.LAST_RESUME)
        return Answered(self._answer)

    def _kept_order(self) -> list[Index]:
        return list(self._cursor.kept)

    def send_proofs(self, macs: Sequence[str], now: float) -> None:
        """Our proof() of each kept file (hex), in order: a file's or a stream's one, or
        one per file of self.kept; the receiver's verdict follows (VerdictReceived)."""
        expected = len(self._cursor.kept)
        if self.state is State.PROVING and len(macs) != expected:
            raise LocalProtocolError(f"{len(macs)} proofs for {expected} kept files")
        self._move(Step.SEND_PROOFS)
        bodies = messages.encode_proofs(list(macs))
        for body in bodies:
            self._outgoing += self.seal_record(RecordType.PROOF, body)
        self._verdicts_due = len(bodies)
        self._progress_at = now

    def _verdict_part(self, plain: memoryview) -> Event | None:
        """One VERDICT record: whether each of the next kept files resumes."""
        batch = messages.decode_verdict(bytes(plain))
        kept = self._kept_order()
        if len(batch) != min(messages.KEPT_PER_RECORD, len(kept) - len(self._verdicts)):
            raise RemoteProtocolError("the receiver's verdict does not fit what it kept")
        self._verdicts += batch
        self._verdicts_due -= 1
        if self._verdicts_due:
            self._move(Step.VERDICT)
            return None
        for index, ok in zip(kept, self._verdicts, strict=True):
            if ok:
                self.matched.add(index)
            else:
                self._cursor.reject(index)
        self._move(Step.LAST_VERDICT)
        return VerdictReceived(tuple(self._verdicts))

    def start_file(self, index: Index, offset: int, now: float) -> None:
        """Before the DATA of a kept file (None: the one file or stream): it starts at
        offset, the bytes kept if its proof matched (self.matched), else 0.

        Every byte of the files before it must be out first, and so must the
        DIGEST of one that resumed; a file resumed (offset > 0) then needs
        send_file_digest() right after its last byte.
        """
        self._catch_up()
        if self.state is State.SENDING:
            self._cursor.start(index, offset)
        body = messages.encode_start(messages.Start(offset, index))
        self._send(Step.SEND_START, RecordType.START, body, now)
        self.sent += offset

    def send_file_digest(self, index: Index, sha256: str, now: float) -> None:
        """Right after the last byte of a file resumed by start_file() (the one file: after
        its final record): its whole SHA-256."""
        self._catch_up()
        if self.state in (State.SENDING, State.AWAIT_ACK):
            self._cursor.digest(index)
        body = messages.encode_digest(messages.Digest(sha256, index))
        self._send(Step.SEND_DIGEST, RecordType.DIGEST, body, now)

    def _catch_up(self) -> None:
        """Pass the files that have no bytes left to send (empty, or kept whole)."""
        while self._cursor.pass_empty():
            pass

    def send_data(self, chunk: memoryview, now: float, end: bool = False) -> memoryview:
        """Seal the next DATA record; the last one (the offered size reached) is final.

        A stream has no offered size: `end` marks its last record. The
        returned view is reused by the next call: write it out first.
        """
        stream = self.offer.size == messages.UNKNOWN_SIZE
        final = end if stream else self.sent + len(chunk) == self.offer.size
        # Checked before anything moves: the table, the size, then the cursor.
        after = self.machine.advance(self.state, Step.SEND_FINAL if final else Step.SEND_DATA)
        over = not stream and self.sent + len(chunk) > self.offer.size
        if over or len(chunk) > MAX_DATA_PAYLOAD:
            raise LocalProtocolError("more data than offered, or a chunk over the record cap")
        self._cursor.advance(len(chunk))
        if final:
            self._cursor.end()
        self.state = after
        self.sent += len(chunk)
        self.data_records += 1
        self._delivered += len(chunk)
        flags = FLAG_FINAL if final else 0
        body: memoryview | bytes = chunk
        if chunk and self._compressor is not None and self.policy.wants(now):
            frame = self._compressor.compress(chunk)
            packed = compression.PREFIX_SIZE + len(frame)
            if self.policy.worth(len(chunk), packed):
                body = compression.encode_prefix(len(chunk)) + frame
                flags |= FLAG_COMPRESSED
                self.compressed_records += 1
        self.wire_bytes += len(body)
        size = HEADER_SIZE + len(body) + TAG_SIZE
        if len(self._out) < size:
            self._out = memoryview(bytearray(size))
        encoded = Header(len(body) + TAG_SIZE, RecordType.DATA, flags).encode()
        self._out[:HEADER_SIZE] = encoded
        assert self._sealer is not None
        self._sealer.seal_into(encoded, memoryview(body), self._out[HEADER_SIZE:size])
        self._progress_at = now
        return self._out[:size]

    def wrote(self, now: float, waited: bool = False) -> None:
        super().wrote(now, waited)
        self.policy.wrote(waited, now, self.wire_bytes)

    @property
    def delivered(self) -> int:
        """Bytes the DATA records carried (raw, before any compression)."""
        return self._delivered

    def may_send_short(self, size: int) -> bool:
        """Whether a DATA record of `size` bytes now stays within the receiver's allowance
        (session.py's docstring): a stream sends what it has when its input pauses, if
        so."""
        return self.data_records + 1 <= data_records_allowed(self._delivered + size)
