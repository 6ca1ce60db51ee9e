"""The conversation between sender and receiver after PAIRED, as pure state machines.

Theory of operation. A session holds everything one side knows about the
conversation — the key exchange, the record counters, what was offered,
how many bytes have moved, which timer runs — and does no I/O, in the
style of h11 and aioquic: the driver (client/wire.py) feeds it the bytes
it reads (writable() + commit(), or receive_data()), takes the events it
yields (next_event()), hands it local decisions (accept, refuse,
acknowledge, abort, send_data) and writes out what it produces
(data_to_send(), and the sealed DATA records send_data() returns). Every
method that cares about time takes `now` (seconds, monotonic), so tests
drive a session with a fake clock and no sockets.

    sender                                          receiver
    KEY_EXCHANGE   PAKE ------------------------> <- PAKE       KEY_EXCHANGE
    CONFIRMING     CONFIRM + sealed OFFER ------> <- CONFIRM    CONFIRMING
    AWAIT_ANSWER                                                AWAIT_OFFER
                                                                DECIDING (local)
                   <------------------------------- ANSWER
    SENDING        DATA ... DATA(final) -------->               RECEIVING
    AWAIT_ACK                                                   STORING (local)
                   <------------------------------- ACK
    DONE                                                        DONE

A tree OFFER (several files, directories) is followed by its MANIFEST
records (protocol/manifest.py): the receiver collects them in
AWAIT_MANIFEST and reports OfferReceived with the manifest once the last
has arrived, so it decides knowing every entry. The DATA of a tree is the
files' bytes back to back; the receiver session splits it at the file
boundaries the manifest gives (FileData events, then AllReceived). A
stream OFFER has no size: the sender's send_data(..., end=True) marks the
last record, and the ACK repeats the byte count.

Resume (an OFFER with "resume": 2). A file or a stream: the receiver may
accept with resume_from=K, the bytes it kept; a tree: with the list of
files it kept part or all of (index, bytes kept) in RESUME records behind
the ANSWER, which the sender collects (AWAIT_RESUME). The receiver
reveals nothing of the kept bytes themselves: the sender must prove it
has them. It feeds its own first bytes of each kept file to proof() (an
HMAC keyed by this session, crypto.resume_proof) and sends the MACs
(send_proofs(): PROVING, local, then AWAIT_VERDICT); the receiver gets
them (AWAIT_PROOF, then ProofReceived and VERIFYING, local), compares
them with its own and says which match (verdict()); the sender gets
VerdictReceived. A file or a stream then says where its DATA starts,
start_at(K if it matched, else 0), as a START record; a resumed file
(START > 0) ends with a DIGEST record, the whole file's SHA-256, which the
receiver checks (AWAIT_DIGEST) before it may store the file. A tree: when
its DATA reaches a kept file, start_file(index, kept if it matched, else
0) first, and after the last byte of a file it resumed, send_file_digest().
The receiver checks the order: a START before such a file's first byte,
at an offset the verdict allows, the DIGEST right after its last.

Each side's PAKE record is its first flight: it travels behind the
rendezvous line and the relay delivers it right behind PAIRED. The sender's
OFFER travels with its CONFIRM; the receiver opens it only after checking
that CONFIRM, so nothing sealed is trusted before the peer proved it holds
the code. Either side may send ABORT (sealed) at any point after the key
exchange; the other side sees PeerAborted and the session is over.

Errors: anything the peer did wrong raises (RemoteProtocolError,
IntegrityError, WrongCode) out of next_event() and leaves the session
FAILED; misuse by the driver raises LocalProtocolError.

DATA records are paid for in bytes: every one but the last must carry at
least one byte, and a sender may send at most FREE_DATA_RECORDS records
plus one per BYTES_PER_DATA_RECORD bytes it delivered. Otherwise a peer
holding the code could keep the receiver busy, for ever and without
tripping the I/O timer, with records that carry nothing (200,000 empty
records took 1.5 s before this rule). Ferry's senders fill their records
(4 KiB at least), but for a stream whose input pauses: that sends what it has if
may_send_short() says the allowance has room.

The timer (deadline) is the session's: from PAIRED until both MACs are
checked, `handshake` seconds in total; then `io` seconds without progress
(bytes in, or a write completed: wrote()); `answer` seconds for the
sender waiting on the receiver's decision (a person, with --ask); `ack`
seconds for the acknowledgement after the last DATA record; none while
the decision or the storing is local.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import Final

from ferry.crypto import (
    Opener,
    Pake,
    Role,
    Sealer,
    SessionKeys,
    confirmation,
    peer_confirmed,
    resume_proof,
)
from ferry.errors import (
    FerryError,
    LocalProtocolError,
    RemoteProtocolError,
    TimedOut,
    WrongCode,
)
from ferry.protocol import manifest, messages
from ferry.protocol.records import (
    FLAG_FINAL,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    TAG_SIZE,
    Header,
    Record,
    RecordDecoder,
    RecordType,
    encode_record,
)


class State(Enum):
    KEY_EXCHANGE = "key-exchange"
    """Our PAKE message is out; waiting for the peer's (it has had no guess yet)."""
    CONFIRMING = "confirming"
    """Keys derived, our MAC out (sender: with the OFFER); waiting for the peer's MAC."""
    AWAIT_OFFER = "await-offer"
    """Receiver: the sender is authenticated; its OFFER comes next."""
    AWAIT_MANIFEST = "await-manifest"
    """Receiver: a tree was offered; its MANIFEST records come next."""
    DECIDING = "deciding"
    """Receiver: holds the offer; accept() or refuse() next (local)."""
    AWAIT_ANSWER = "await-answer"
    """Sender: waiting for the receiver to accept or refuse."""
    AWAIT_RESUME = "await-resume"
    """Sender: a tree was accepted; the RESUME records saying what the receiver kept follow."""
    PROVING = "proving"
    """Sender: accepted with bytes kept; send_proofs() next, once they are hashed (local)."""
    AWAIT_VERDICT = "await-verdict"
    """Sender: proofs sent; the receiver's VERDICT records say which kept files resume."""
    AWAIT_PROOF = "await-proof"
    """Receiver: accepted with bytes kept; the sender's PROOF records come next."""
    VERIFYING = "verifying"
    """Receiver: holds the sender's proofs; verdict() next (local)."""
    SENDING = "sending"
    """Sender: accepted; send_data() until the final record."""
    RECEIVING = "receiving"
    """Receiver: DATA records arrive until the final one."""
    AWAIT_DIGEST = "await-digest"
    """Receiver: a resumed file's bytes all arrived; its whole-content hash comes next."""
    STORING = "storing"
    """Receiver: every byte arrived and checked; acknowledge() once stored (local)."""
    AWAIT_ACK = "await-ack"
    """Sender: everything sent; waiting for the receiver's ACK."""
    DONE = "done"
    """Over as agreed: acknowledged, or the offer was refused."""
    FAILED = "failed"
    """Over: an error, or an ABORT either way."""


FREE_DATA_RECORDS: Final = 1024
"""DATA records a sender may send regardless of the bytes they carry."""
BYTES_PER_DATA_RECORD: Final = 1024
"""Beyond FREE_DATA_RECORDS, one more DATA record is allowed per this many bytes delivered."""


def data_records_allowed(delivered: int) -> int:
    """DATA records a receiver takes once they carried `delivered` bytes in all."""
    return FREE_DATA_RECORDS + delivered // BYTES_PER_DATA_RECORD


HANDSHAKE_STATES: Final = frozenset({State.KEY_EXCHANGE, State.CONFIRMING})
_LOCAL_STATES: Final = frozenset({State.DECIDING, State.STORING, State.PROVING, State.VERIFYING})


@dataclass(frozen=True)
class Timeouts:
    handshake: float
    """Seconds from PAIRED until both sides have proved they hold the code."""
    io: float
    """Seconds without progress before the peer counts as gone."""
    ack: float
    """Seconds the sender waits for the ACK after its last DATA record."""
    answer: float = 600.0
    """Seconds the sender waits for the receiver to accept or refuse (a person may be
    deciding, with --ask)."""


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyed:
    """The key exchange finished; the peer has had its one guess at the code."""


@dataclass(frozen=True)
class Confirmed:
    """The peer proved it holds the same code."""


@dataclass(frozen=True)
class OfferReceived:
    offer: messages.Offer
    entries: tuple[manifest.Entry, ...] = ()
    """A tree's manifest, complete (empty for other kinds, or a tree not read: see
    ReceiverSession.max_entries)."""


@dataclass(frozen=True)
class Answered:
    answer: messages.Answer


@dataclass(frozen=True)
class DataReceived:
    data: memoryview
    """The plaintext, valid until the session receives more bytes."""
    final: bool


@dataclass(frozen=True)
class FileData:
    """Bytes of one file of a tree (entry `index` of the manifest)."""

    index: int
    data: memoryview
    """The plaintext, valid until the session receives more bytes."""
    done: bool
    """These are the file's last bytes (an empty file: no bytes, done)."""


@dataclass(frozen=True)
class Started:
    """Where a file's DATA starts (the receiver offered to resume): 0 or resume_from."""

    offset: int
    index: int | None = None
    """tree: the manifest entry whose DATA starts (None for a file or a stream)."""


@dataclass(frozen=True)
class DigestReceived:
    """A resumed file's whole SHA-256 (hex), as the sender computed it."""

    sha256: str
    index: int | None = None
    """tree: the manifest entry it is the digest of (None for a file or a stream)."""


@dataclass(frozen=True)
class ProofReceived:
    """Receiver: the sender's MAC (hex) of each kept file, in the order they were kept."""

    macs: tuple[str, ...]


@dataclass(frozen=True)
class VerdictReceived:
    """Sender: for each kept file, in order, whether it resumes (its proof matched)."""

    matched: tuple[bool, ...]


@dataclass(frozen=True)
class AllReceived:
    """Every byte of a tree arrived and was authenticated (receiver: STORING)."""


@dataclass(frozen=True)
class Acknowledged:
    ack: messages.Ack


@dataclass(frozen=True)
class PeerAborted:
    abort: messages.Abort


@dataclass(frozen=True)
class NeedData:
    """No whole record yet: read more bytes."""


NEED_DATA: Final = NeedData()

Event = (
    Keyed
    | Confirmed
    | OfferReceived
    | Answered
    | DataReceived
    | FileData
    | AllReceived
    | Started
    | DigestReceived
    | ProofReceived
    | VerdictReceived
    | Acknowledged
    | PeerAborted
)


class Session:
    """What both sides share: the key exchange, sealing and opening, the timer."""

    role: Role

    def __init__(self, password: bytes, timeouts: Timeouts, capacity: int) -> None:
        self.state = State.KEY_EXCHANGE
        self.timeouts = timeouts
        self._pake = Pake(self.role, password)
        self._first_flight = encode_record(RecordType.PAKE, self._pake.start())
        self._decoder = RecordDecoder(capacity)
        self._outgoing = bytearray()
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self._plain: memoryview | None = None
        self._paired_at: float | None = None
        self._progress_at = 0.0
        self.peer_keyed = False
        """The peer sent a PAKE message the SPAKE2 library accepted: it has had its one
        guess at the code. Until then (nothing, garbage, a wrong record, an invalid
        point, silence) it guessed nothing, and a sender counts no attempt for it."""

    @property
    def peer(self) -> str:
        return self.role.peer.value

    def first_flight(self) -> bytes:
        """Our PAKE record: it goes out behind the rendezvous line, before PAIRED."""
        return self._first_flight

    # -- bytes in ------------------------------------------------------------------------

    def writable(self) -> memoryview:
        """Where to receive the next bytes, then commit(n, now); earlier events' views end."""
        return self._decoder.writable()

    def commit(self, n: int, now: float) -> None:
        self._decoder.commit(n)
        if n:
            self._progress_at = now

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        self._decoder.receive_data(data)
        if data:
            self._progress_at = now

    def next_event(self) -> Event | NeedData:
        """The next thing the peer said, or NEED_DATA."""
        if self.state in (State.DONE, State.FAILED):
            return NEED_DATA
        try:
            while True:
                pending = self._pending_event()
                if pending is not None:
                    return pending
                record = self._decoder.next_record()
                if record is None:
                    return NEED_DATA
                event = self._handle(record)
                if event is not None:
                    return event
        except FerryError:
            self.state = State.FAILED
            raise

    # -- bytes out -----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Records produced since the last call, to be written in order."""
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def wrote(self, now: float) -> None:
        """A write to the peer completed: that is progress too."""
        self._progress_at = now

    def seal_record(self, record_type: RecordType, body: bytes, flags: int = 0) -> bytes:
        """One sealed record, the next in our sequence; no state checks (a building block)."""
        if self._sealer is None:
            raise LocalProtocolError("nothing can be sealed before the key exchange")
        header = Header(len(body) + TAG_SIZE, record_type, flags).encode()
        return header + self._sealer.seal(header, body)

    def proof(self, index: int, kept: int) -> hmac.HMAC:
        """The resume proof of file `index` (-1: the one file or stream) of which `kept`
        bytes were kept: feed it those bytes (crypto.resume_proof)."""
        if self._sealer is None:
            raise LocalProtocolError("no proof before the key exchange")
        return resume_proof(self._keys, index, kept)

    def abort(self, reason: str, message: str, now: float) -> None:
        """Give up; the peer is told why if keys exist (data_to_send())."""
        if self._sealer is not None and self.state is not State.FAILED:
            body = messages.encode_abort(messages.Abort(reason, message))
            self._outgoing += self.seal_record(RecordType.ABORT, body)
        self._progress_at = now
        self.state = State.FAILED

    # -- time ----------------------------------------------------------------------------

    def paired(self, now: float) -> None:
        """The relay paired us: the handshake timer starts."""
        self._paired_at = self._progress_at = now

    @property
    def deadline(self) -> float | None:
        """When the session gives up unless something happens first (None: no timer)."""
        if self._paired_at is None or self.state in _LOCAL_STATES:
            return None
        if self.state in HANDSHAKE_STATES:
            return self._paired_at + self.timeouts.handshake
        if self.state is State.AWAIT_ACK:
            return self._progress_at + self.timeouts.ack
        if self.state is State.AWAIT_ANSWER:
            return self._progress_at + self.timeouts.answer
        return self._progress_at + self.timeouts.io

    def expire(self, now: float) -> TimedOut | None:
        """The error to raise if the deadline has passed (the session is then FAILED)."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        if self.state in HANDSHAKE_STATES:
            error = TimedOut(f"timed out during the key exchange with the {self.peer}")
        elif self.state is State.AWAIT_ACK:
            error = TimedOut(
                f"the {self.peer} did not confirm it stored the file ({self.timeouts.ack:.0f}s)"
            )
        elif self.state is State.AWAIT_ANSWER:
            error = TimedOut(f"the {self.peer} did not answer ({self.timeouts.answer:.0f}s)")
        else:
            error = TimedOut(f"the {self.peer} stopped responding ({self.timeouts.io:.0f}s)")
        self.state = State.FAILED
        return error

    # -- records -------------------------------------------------------------------------

    def _handle(self, record: Record) -> Event | None:
        """The event a record makes (None: it only fed the session, e.g. a MANIFEST part)."""
        header = record.header
        if self.state is State.KEY_EXCHANGE:
            keys = self._pake.finish(bytes(self._unsealed(record, RecordType.PAKE)))
            self.peer_keyed = True
            self._sealer, self._opener = Sealer(keys.seal_key), Opener(keys.open_key)
            self._keys = keys
            self._outgoing += encode_record(RecordType.CONFIRM, confirmation(keys))
            self._keyed()
            self.state = State.CONFIRMING
            return Keyed()
        if self.state is State.CONFIRMING:
            if not peer_confirmed(self._keys, bytes(self._unsealed(record, RecordType.CONFIRM))):
                raise WrongCode("wrong code")
            self.state = self._after_confirmation()
            return Confirmed()
        if not header.sealed:
            raise RemoteProtocolError(f"unexpected {header.type.name} record")
        plain = self._open(record)
        if header.type is RecordType.ABORT:
            self.state = State.FAILED
            return PeerAborted(messages.decode_abort(bytes(plain)))
        return self._sealed(header, plain)

    def _unsealed(self, record: Record, expected: RecordType) -> bytes | memoryview:
        if record.header.type is not expected:
            raise RemoteProtocolError(f"expected {expected.name}, got {record.header.type.name}")
        return record.body

    def _open(self, record: Record) -> memoryview:
        assert self._opener is not None
        if self._plain is None or len(self._plain) < len(record.body):
            self._plain = memoryview(bytearray(max(len(record.body), 4096)))
        size = self._opener.open_into(record.header.encode(), record.body, self._plain)
        return self._plain[:size]

    def _expect(self, header: Header, expected: RecordType) -> None:
        if header.type is not expected:
            raise RemoteProtocolError(f"expected {expected.name}, got {header.type.name}")

    def _require(self, *states: State) -> None:
        if self.state not in states:
            wanted = " or ".join(state.value for state in states)
            raise LocalProtocolError(f"session is {self.state.value}, not {wanted}")

    # -- what differs by role --------------------------------------------------------------

    _keys: SessionKeys

    def _keyed(self) -> None:
        """Keys are fresh and our CONFIRM is queued: add what rides with it."""

    def _after_confirmation(self) -> State:
        raise NotImplementedError

    def _pending_event(self) -> Event | None:
        """An event still owed from a record already opened (a tree's next file piece)."""
        return None

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        raise NotImplementedError


class SenderSession(Session):
    """The sending side: offer, then send_data() once accepted, then the ACK."""

    role = Role.SENDER

    def __init__(
        self,
        password: bytes,
        offer: messages.Offer,
        timeouts: Timeouts,
        raw_offer: bytes | None = None,
        manifest_records: Sequence[bytes] = (),
        file_sizes: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__(password, timeouts, capacity=RecordDecoder.MIN_READ)
        self.offer = offer
        if raw_offer is None:
            # Padded: the relay sees the sealed OFFER's length (messages.py).
            raw_offer = messages.padded(messages.encode_offer(offer))
        self._offer_body = raw_offer
        self._manifest = manifest_records
        self.sent = 0
        self.resume_from = 0
        """What the receiver offered to resume from (start_at() before any DATA)."""
        self.resume_matched = False
        """file, stream: the receiver's verdict: our proof matched, DATA may start at
        resume_from."""
        self.matched: set[int] = set()
        """tree: the kept files whose proof matched (start_file() after their kept bytes)."""
        self._verdicts: list[bool] = []
        self._verdicts_due = 0
        self.resumed = False
        self._must_start = False
        self._digest_sent = False
        self._out = memoryview(bytearray(0))
        self.file_sizes: Mapping[int, int] = file_sizes or {}
        """tree: the size of each file entry, by manifest index (checks RESUME records)."""
        self.kept: dict[int, messages.Kept] = {}
        """tree: what the receiver kept, by manifest index (start_file() each, in order)."""
        self._answer: messages.Answer | None = None
        self._resume_records = 0
        self._last_started = -1
        self._digests_due: set[int] = set()
        self.data_records = 0
        self._delivered = 0

    def _keyed(self) -> None:
        # The manifest rides right behind the OFFER: the receiver can decide
        # on the whole tree without another round trip.
        self._outgoing += self.seal_record(RecordType.OFFER, self._offer_body)
        for body in self._manifest:
            # Padded like the OFFER: sizes would tell the relay the names' lengths.
            self._outgoing += self.seal_record(RecordType.MANIFEST, messages.padded(body))

    def _after_confirmation(self) -> State:
        return State.AWAIT_ANSWER

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        if self.state is State.AWAIT_ANSWER:
            self._expect(header, RecordType.ANSWER)
            answer = messages.decode_answer(bytes(plain))
            sized = self.offer.size != messages.UNKNOWN_SIZE
            if answer.resume_from and not (
                answer.accept
                and self.offer.resume
                and self.offer.kind != messages.KIND_TREE
                and (answer.resume_from <= self.offer.size or not sized)
            ):
                raise RemoteProtocolError("the receiver offered a resume that was not possible")
            if answer.resume_records and not (
                self.offer.kind == messages.KIND_TREE and self.offer.resume
            ):
                raise RemoteProtocolError("the receiver offered a resume that was not possible")
            self.resume_from = answer.resume_from
            self._must_start = answer.resume_from > 0
            if answer.resume_records:
                self._answer, self._resume_records = answer, answer.resume_records
                self.state = State.AWAIT_RESUME
                return None
            if not answer.accept:
                self.state = State.DONE
            else:
                self.state = State.PROVING if answer.resume_from else State.SENDING
            return Answered(answer)
        if self.state is State.AWAIT_RESUME:
            self._expect(header, RecordType.RESUME)
            return self._resume_part(plain)
        if self.state is State.AWAIT_VERDICT:
            self._expect(header, RecordType.VERDICT)
            return self._verdict_part(plain)
        if self.state is State.AWAIT_ACK:
            self._expect(header, RecordType.ACK)
            ack = messages.decode_ack(bytes(plain))
            if ack.size != self.sent:
                raise RemoteProtocolError(f"the receiver stored {ack.size} bytes, not {self.sent}")
            self.state = State.DONE
            return Acknowledged(ack)
        raise RemoteProtocolError(f"unexpected {header.type.name} record")

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
            return None
        assert self._answer is not None
        self.state = State.PROVING
        return Answered(self._answer)

    def send_proofs(self, macs: Sequence[str], now: float) -> None:
        """Our proof() of each kept file (hex), in order: a file's or a stream's one, or
        one per file of self.kept; the receiver's verdict follows (VerdictReceived)."""
        self._require(State.PROVING)
        expected = len(self.kept) if self.offer.kind == messages.KIND_TREE else 1
        if len(macs) != expected:
            raise LocalProtocolError(f"{len(macs)} proofs for {expected} kept files")
        bodies = messages.encode_proofs(list(macs))
        for body in bodies:
            self._outgoing += self.seal_record(RecordType.PROOF, body)
        self._verdicts_due = len(bodies)
        self.state = State.AWAIT_VERDICT
        self._progress_at = now

    def _verdict_part(self, plain: memoryview) -> Event | None:
        """One VERDICT record: whether each of the next kept files resumes."""
        batch = messages.decode_verdict(bytes(plain))
        total = len(self.kept) if self.offer.kind == messages.KIND_TREE else 1
        if len(batch) != min(messages.KEPT_PER_RECORD, total - len(self._verdicts)):
            raise RemoteProtocolError("the receiver's verdict does not fit what it kept")
        self._verdicts += batch
        self._verdicts_due -= 1
        if self._verdicts_due:
            return None
        if self.offer.kind == messages.KIND_TREE:
            self.matched = {i for i, ok in zip(self.kept, self._verdicts, strict=True) if ok}
        else:
            self.resume_matched = self._verdicts[0]
        self.state = State.SENDING
        return VerdictReceived(tuple(self._verdicts))

    def start_file(self, index: int, offset: int, now: float) -> None:
        """tree: before file `index`'s DATA (the receiver kept some): it starts at offset.

        offset is kept.size if its proof matched (self.matched), else 0; any
        DATA of earlier files must be out before this START (the receiver
        checks). A file resumed (offset > 0) then needs send_file_digest().
        """
        self._require(State.SENDING)
        kept = self.kept.get(index)
        allowed = (0, kept.size if index in self.matched else 0) if kept is not None else ()
        if kept is None or index <= self._last_started or offset not in allowed:
            raise LocalProtocolError(
                "start_file() answers a kept file, once, at 0 or (if it matched) its size"
            )
        body = messages.encode_start(messages.Start(offset, index))
        self._outgoing += self.seal_record(RecordType.START, body)
        self._last_started = index
        self.sent += offset
        if offset:
            self._digests_due.add(index)
        self._progress_at = now

    def send_file_digest(self, index: int, sha256: str, now: float) -> None:
        """tree: right after the last byte of a file resumed by start_file(): its SHA-256."""
        self._require(State.SENDING, State.AWAIT_ACK)
        if index not in self._digests_due:
            raise LocalProtocolError("a digest follows a resumed file, once")
        self._digests_due.discard(index)
        body = messages.encode_digest(messages.Digest(sha256, index))
        self._outgoing += self.seal_record(RecordType.DIGEST, body)
        self._progress_at = now

    def send_data(self, chunk: memoryview, now: float, end: bool = False) -> memoryview:
        """Seal the next DATA record; the last one (the offered size reached) is final.

        A stream has no offered size: `end` marks its last record. The
        returned view is reused by the next call: write it out first.
        """
        self._require(State.SENDING)
        if self._must_start:
            raise LocalProtocolError("the receiver offered to resume: start_at() first")
        stream = self.offer.size == messages.UNKNOWN_SIZE
        over = not stream and self.sent + len(chunk) > self.offer.size
        if over or len(chunk) > MAX_DATA_PAYLOAD:
            raise LocalProtocolError("more data than offered, or a chunk over the record cap")
        self.sent += len(chunk)
        self.data_records += 1
        self._delivered += len(chunk)
        final = end if stream else self.sent == self.offer.size
        size = HEADER_SIZE + len(chunk) + TAG_SIZE
        if len(self._out) < size:
            self._out = memoryview(bytearray(size))
        header = Header(len(chunk) + TAG_SIZE, RecordType.DATA, FLAG_FINAL if final else 0)
        encoded = header.encode()
        self._out[:HEADER_SIZE] = encoded
        assert self._sealer is not None
        self._sealer.seal_into(encoded, chunk, self._out[HEADER_SIZE:size])
        if final:
            self.state = State.AWAIT_ACK
        self._progress_at = now
        return self._out[:size]

    def may_send_short(self, size: int) -> bool:
        """Whether a DATA record of `size` bytes now stays within the receiver's allowance
        (module docstring): a stream sends what it has when its input pauses, if so."""
        return self.data_records + 1 <= data_records_allowed(self._delivered + size)

    def start_at(self, offset: int, now: float) -> None:
        """Answer a resume offer: the DATA starts at `offset` (0, or resume_from if our
        proof matched)."""
        self._require(State.SENDING)
        allowed = (0, self.resume_from if self.resume_matched else 0)
        if not self._must_start or offset not in allowed:
            raise LocalProtocolError(
                "start_at() answers a resume offer, at 0 or (if it matched) resume_from"
            )
        self._outgoing += self.seal_record(
            RecordType.START, messages.encode_start(messages.Start(offset))
        )
        self._must_start = False
        self.sent = offset
        self.resumed = offset > 0
        self._progress_at = now

    def send_digest(self, sha256: str, now: float) -> None:
        """After a resumed file's last DATA: its whole SHA-256 (data_to_send())."""
        self._require(State.AWAIT_ACK)
        if not self.resumed or self._digest_sent:
            raise LocalProtocolError("a digest follows a resumed file, once")
        body = messages.encode_digest(messages.Digest(sha256))
        self._outgoing += self.seal_record(RecordType.DIGEST, body)
        self._digest_sent = True
        self._progress_at = now


class ReceiverSession(Session):
    """The receiving side: the offer, a decision, the data, the ACK once stored."""

    role = Role.RECEIVER

    def __init__(
        self,
        password: bytes,
        timeouts: Timeouts,
        max_entries: int = 100_000,
        max_manifest_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        # Room for two of the largest records: reads stay large, and a
        # partial record is moved at most once per buffer's worth.
        super().__init__(password, timeouts, capacity=RecordDecoder.MAX_BUFFER)
        self.offer: messages.Offer | None = None
        self.received = 0
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
        """The sender agreed to resume: received counts from resume_from."""
        self._kept_order: list[int] = []
        self._proofs_total = 0
        self._macs: list[str] = []
        self._await_start = False
        self._delivered = 0
        # A tree's resume: bytes kept of each file offered (by entry index),
        # the file whose START is due, the resumed file whose DIGEST is due,
        # whether the final DATA record arrived.
        self._kept: dict[int, int] = {}
        self._start_due: int | None = None
        self._resumed_file: int | None = None
        self._digest_due: int | None = None
        self._final_seen = False
        # A tree's data, split at file boundaries: (entry index, size) of each
        # file, the one being filled, its bytes still missing, plaintext not
        # yet reported.
        self._files: list[tuple[int, int]] = []
        self._cursor = 0
        self._left = 0
        self._pending = memoryview(b"")
        self._all_reported = False

    @property
    def is_tree(self) -> bool:
        return self.offer is not None and self.offer.kind == messages.KIND_TREE

    def _after_confirmation(self) -> State:
        return State.AWAIT_OFFER

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        if self.state is State.AWAIT_OFFER:
            self._expect(header, RecordType.OFFER)
            offer = self.offer = messages.decode_offer(bytes(plain))
            if not self.is_tree or not self._readable_tree(offer):
                # An unread manifest's records may still arrive: passed over.
                self._unread_records = offer.records if self.is_tree else 0
                self.state = State.DECIDING
                return OfferReceived(offer)
            self.state = State.AWAIT_MANIFEST
            return None
        if self.state is State.AWAIT_MANIFEST:
            self._expect(header, RecordType.MANIFEST)
            return self._manifest_part(plain)
        if self.state is State.AWAIT_PROOF:
            self._expect(header, RecordType.PROOF)
            return self._proof_part(plain)
        if header.type is RecordType.MANIFEST and self._unread_records > 0:
            self._unread_records -= 1
            return None
        if self.state is State.RECEIVING and self.is_tree:
            return self._tree_record(header, plain)
        if self.state is State.RECEIVING and self._await_start:
            self._expect(header, RecordType.START)
            start = messages.decode_start(bytes(plain))
            if start.offset not in (0, self.resume_from):
                raise RemoteProtocolError(f"the sender started at {start.offset}")
            self._await_start = False
            self.received = start.offset
            self.resumed = start.offset > 0
            return Started(start.offset)
        if self.state is State.AWAIT_DIGEST:
            self._expect(header, RecordType.DIGEST)
            self.state = State.STORING
            return DigestReceived(messages.decode_digest(bytes(plain)).sha256)
        if self.state is State.RECEIVING:
            assert self.offer is not None
            offer = self.offer
            self._expect(header, RecordType.DATA)
            self._count_record(len(plain), header.final)
            self.received += len(plain)
            sized = offer.size != messages.UNKNOWN_SIZE
            if sized and self.received > offer.size:
                raise RemoteProtocolError("the sender sent more than it offered")
            if header.final:
                self._check_end()
                self.state = State.AWAIT_DIGEST if self.resumed else State.STORING
            return DataReceived(plain, header.final)
        raise RemoteProtocolError(f"unexpected {header.type.name} record")

    def _check_end(self) -> None:
        assert self.offer is not None
        if self.offer.size != messages.UNKNOWN_SIZE and self.received != self.offer.size:
            raise RemoteProtocolError(
                f"the sender ended after {self.received} of {self.offer.size} bytes"
            )

    def _tree_record(self, header: Header, plain: memoryview) -> Event | None:
        """A record while a tree's data arrives: DATA, or a kept file's START or DIGEST."""
        assert self.offer is not None
        if self._digest_due is not None:
            self._expect(header, RecordType.DIGEST)
            digest = messages.decode_digest(bytes(plain))
            if digest.index != self._digest_due:
                raise RemoteProtocolError("the sender's DIGEST is for another file")
            self._digest_due = None
            return DigestReceived(digest.sha256, digest.index)
        if self._start_due is not None and not self._pending:
            self._expect(header, RecordType.START)
            start = messages.decode_start(bytes(plain))
            index, self._start_due = self._start_due, None
            if start.index != index or start.offset not in (0, self._kept[index]):
                raise RemoteProtocolError("the sender's START does not answer the kept file")
            self._left -= start.offset
            self.received += start.offset
            self._resumed_file = index if start.offset else None
            return Started(start.offset, index)
        if self._final_seen or self._pending:
            raise RemoteProtocolError(f"unexpected {header.type.name} record")
        self._expect(header, RecordType.DATA)
        self._count_record(len(plain), header.final)
        self.received += len(plain)
        if self.received > self.offer.size:
            raise RemoteProtocolError("the sender sent more than it offered")
        if header.final:
            self._check_end()
            self._final_seen = True
        self._pending = plain  # reported piece by piece by _pending_event()
        return None

    def _count_record(self, size: int, final: bool) -> None:
        """A DATA record's cost in bytes (module docstring); raises past the allowance."""
        if not size and not final:
            raise RemoteProtocolError("the sender sent an empty DATA record")
        self.data_records += 1
        self._delivered += size
        if self.data_records > data_records_allowed(self._delivered):
            raise RemoteProtocolError("the sender sent too many DATA records for their bytes")

    def _readable_tree(self, offer: messages.Offer) -> bool:
        """Whether to read this tree's manifest (if not, the driver refuses the offer)."""
        if offer.manifest != messages.MANIFEST_VERSION or offer.entries > self.max_entries:
            return False
        if offer.entries == 0 or offer.records == 0:
            raise RemoteProtocolError("the sender offered an empty tree")
        return True

    def _manifest_part(self, plain: memoryview) -> Event | None:
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
            return None
        self._files = list(manifest.file_sizes(self.entries))
        total = sum(size for _, size in self._files)
        if len(self.entries) != offer.entries or len(self._files) != offer.files:
            raise RemoteProtocolError("the manifest does not hold the entries offered")
        if total != offer.size:
            raise RemoteProtocolError("the manifest's sizes do not add up to the offered size")
        self.state = State.DECIDING
        return OfferReceived(offer, tuple(self.entries))

    def _pending_event(self) -> Event | None:
        """The next piece of a tree's data: bytes up to a file boundary, an empty file, the end."""
        if self.state is not State.RECEIVING or not self.is_tree:
            return None
        if self._start_due is not None or self._digest_due is not None:
            if self._pending:
                raise RemoteProtocolError("the sender sent DATA where a START or DIGEST was due")
            return None
        while self._cursor < len(self._files):
            index = self._files[self._cursor][0]
            if self._left == 0:  # an empty file, or one whose last byte was reported
                return self._file_done(index, memoryview(b""))
            if not self._pending:
                return None
            piece = self._pending[: self._left]
            self._pending = self._pending[len(piece) :]
            self._left -= len(piece)
            if self._left == 0:
                return self._file_done(index, piece)
            return FileData(index, piece, done=False)
        if self._final_seen and not self._all_reported:
            self._all_reported = True
            self.state = State.STORING
            return AllReceived()
        return None

    def _file_done(self, index: int, piece: memoryview) -> FileData:
        """File `index` is complete: on to the next (its START may be due)."""
        if self._resumed_file == index:
            self._resumed_file = None
            self._digest_due = index  # _pending must be empty by the next call
        self._cursor += 1
        self._left = 0
        if self._cursor < len(self._files):
            next_index, self._left = self._files[self._cursor]
            if next_index in self._kept:
                self._start_due = next_index
        return FileData(index, piece, done=True)

    def accept(self, now: float, resume_from: int = 0, kept: Sequence[messages.Kept] = ()) -> None:
        """Accept; offer to resume after the bytes kept, if the sender proves it has them.

        A file or a stream: resume_from. A tree: `kept`, the files kept part
        or all of, in manifest order. With either, the sender's proofs come
        next (ProofReceived), then verdict().
        """
        self._require(State.DECIDING)
        offer = self.offer
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
        self._answer(
            messages.Answer(True, resume_from=resume_from, resume_records=len(resume)), now
        )
        for body in resume:
            self._outgoing += self.seal_record(RecordType.RESUME, body)
        self.resume_from = resume_from
        self._await_start = resume_from > 0
        self._kept = {k.index: k.size for k in kept}
        self._kept_order = [k.index for k in kept]
        if self._files:
            first, self._left = self._files[0]
            if first in self._kept:
                self._start_due = first
        self._proofs_total = len(kept) if kept else int(resume_from > 0)
        self.state = State.AWAIT_PROOF if self._proofs_total else State.RECEIVING

    def _proof_part(self, plain: memoryview) -> Event | None:
        """One PROOF record: the sender's MACs of the next kept files."""
        batch = messages.decode_proof(bytes(plain))
        if len(batch) != min(messages.KEPT_PER_RECORD, self._proofs_total - len(self._macs)):
            raise RemoteProtocolError("the sender's proof does not fit what was kept")
        self._macs += batch
        if len(self._macs) < self._proofs_total:
            return None
        self.state = State.VERIFYING
        return ProofReceived(tuple(self._macs))

    def verdict(self, matched: Sequence[bool], now: float) -> None:
        """Which kept files resume, in order (the sender's proof matched ours; compare in
        constant time): a file that does not starts over (its START must be 0)."""
        self._require(State.VERIFYING)
        if len(matched) != self._proofs_total:
            raise LocalProtocolError(f"{len(matched)} verdicts for {self._proofs_total} proofs")
        for body in messages.encode_verdicts(list(matched)):
            self._outgoing += self.seal_record(RecordType.VERDICT, body)
        if self.is_tree:
            for index, ok in zip(self._kept_order, matched, strict=True):
                if not ok:
                    self._kept[index] = 0
        elif not matched[0]:
            self.resume_from = 0
        self._progress_at = now
        self.state = State.RECEIVING

    def _fits(self, kept: Sequence[messages.Kept]) -> bool:
        """Kept files are files of this tree, in order, kept in part or whole (not empty)."""
        sizes = dict(self._files)
        indexes = [k.index for k in kept]
        in_order = all(a < b for a, b in pairwise(indexes))
        return in_order and all(0 < k.size <= sizes.get(k.index, -1) for k in kept)

    def refuse(self, reason: str, message: str, now: float) -> None:
        self._require(State.DECIDING)
        self._answer(messages.Answer(False, reason, message), now)
        self.state = State.DONE

    def acknowledge(self, now: float) -> None:
        """The file is stored: say so (data_to_send())."""
        self._require(State.STORING)
        assert self.offer is not None
        body = messages.encode_ack(messages.Ack(self.received))
        self._outgoing += self.seal_record(RecordType.ACK, body)
        self._progress_at = now
        self.state = State.DONE

    def _answer(self, answer: messages.Answer, now: float) -> None:
        self._outgoing += self.seal_record(RecordType.ANSWER, messages.encode_answer(answer))
        self._progress_at = now
