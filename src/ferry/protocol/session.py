"""The conversation between sender and receiver after PAIRED: what both sides share.

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
                   (+ a tree's MANIFEST records)                AWAIT_OFFER
                                                                AWAIT_MANIFEST (a tree)
    AWAIT_ANSWER                                                DECIDING (local)
                   <------------------------------- ANSWER
    AWAIT_RESUME   <---------------- RESUME records (a tree, bytes kept)
    PROVING (local)
    AWAIT_VERDICT  PROOF records ---------------->              AWAIT_PROOF
                                                                VERIFYING (local)
                   <------------------------------ VERDICT records
    SENDING        [START] DATA ... [DIGEST] ---->              RECEIVING
                                                                AWAIT_START (a kept file)
                                                                AWAIT_DIGEST (it resumed)
    AWAIT_ACK      DATA(final) [DIGEST] -------->               STORING (local)
                   <------------------------------- ACK
    DONE                                                        DONE
    FAILED: an error, a timeout, or an ABORT either way (both sides, any time)

The transitions are protocol/transitions.py's tables (one per side, the
only place a state changes); the events and states are
protocol/events.py's; what a kept file asks of the DATA (its START and
DIGEST) is protocol/cursor.py's, one rule for a tree's files and for the
one file or stream.

A tree OFFER (several files, directories) is followed by its MANIFEST
records (protocol/manifest.py): the receiver collects them in
AWAIT_MANIFEST and reports OfferReceived with the manifest once the last
has arrived, so it decides knowing every entry. The DATA of a tree is the
files' bytes back to back; the receiver session splits it at the file
boundaries the manifest gives (FileData events, then AllReceived). A
stream OFFER has no size: the sender's send_data(..., end=True) marks the
last record, and the ACK repeats the byte count.

Resume (an OFFER with "resume": 2). The receiver may accept with the bytes
it kept: of a file or a stream, resume_from=K in the ANSWER; of a tree's
files, the list (index, bytes kept) in RESUME records behind it, which
the sender collects (AWAIT_RESUME). The receiver reveals nothing of the
kept bytes themselves: the sender must prove it has them. It feeds its own
first bytes of each kept file to proof() (an HMAC keyed by this session,
crypto.resume_proof) and sends the MACs (send_proofs(): PROVING, local,
then AWAIT_VERDICT); the receiver gets them (AWAIT_PROOF, then
ProofReceived and VERIFYING, local), compares them with its own and says
which match (verdict()); the sender gets VerdictReceived. Then, for each
kept file (the one file or stream is file None), start_file(index, kept
if it matched, else 0) before its first byte, and after the last byte of
a file that resumed, send_file_digest(): its whole SHA-256, which the
receiver checks before it may store the file. The receiver checks the
order (protocol/cursor.py).

Each side's PAKE record is its first flight: it travels behind the
rendezvous line and the relay delivers it right behind PAIRED. The sender's
OFFER travels with its CONFIRM; the receiver opens it only after checking
that CONFIRM, so nothing sealed is trusted before the peer proved it holds
the code. Either side may send ABORT (sealed) at any point after the key
exchange; the other side sees PeerAborted and the session is over.

Errors: anything the peer did wrong raises (RemoteProtocolError,
IntegrityError, WrongCode) out of next_event() and leaves the session
FAILED; misuse by the driver raises LocalProtocolError, and so does
reading or sending once the session is DONE or FAILED.

DATA records are paid for in bytes: every one but the last must carry at
least one byte, and a sender may send at most FREE_DATA_RECORDS records
plus one per BYTES_PER_DATA_RECORD bytes it delivered. Otherwise a peer
holding the code could keep the receiver busy, for ever and without
tripping the I/O timer, with records that carry nothing (200,000 empty
records took 1.5 s). Ferry's senders fill their records (4 KiB at least),
but for a stream whose input pauses: that sends what it has if
may_send_short() says the allowance has room.

The timer (deadline) is the session's: from PAIRED until both MACs are
checked, `handshake` seconds in total; then `io` seconds without progress
(bytes in, or a write completed: wrote()); `answer` seconds for the
sender waiting on the receiver's decision (a person, with --ask); `ack`
seconds for the acknowledgement after the last DATA record; none while
the decision or the storing is local.

The crypto libraries take ~100 ms to import: they are loaded when the
first session is made (_crypto()), not when this module is, so a client
can import its sessions at start-up and still print a code first.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Final

from ferry.errors import FerryError, LocalProtocolError, RemoteProtocolError, TimedOut, WrongCode
from ferry.protocol import messages
from ferry.protocol.events import (
    HANDSHAKE_STATES,
    LOCAL_STATES,
    NEED_DATA,
    OVER,
    Confirmed,
    Event,
    Keyed,
    NeedData,
    PeerAborted,
    State,
    Timeouts,
)
from ferry.protocol.records import (
    TAG_SIZE,
    Header,
    Record,
    RecordDecoder,
    RecordType,
    encode_record,
)
from ferry.protocol.transitions import Machine, Step

if TYPE_CHECKING:
    from types import ModuleType

    from ferry.crypto import Opener, Pake, Sealer, SessionKeys

FREE_DATA_RECORDS: Final = 1024
"""DATA records a sender may send regardless of the bytes they carry."""
BYTES_PER_DATA_RECORD: Final = 1024
"""Beyond FREE_DATA_RECORDS, one more DATA record is allowed per this many bytes delivered."""


def data_records_allowed(delivered: int) -> int:
    """DATA records a receiver takes once they carried `delivered` bytes in all."""
    return FREE_DATA_RECORDS + delivered // BYTES_PER_DATA_RECORD


def _crypto() -> ModuleType:
    """ferry.crypto, imported by the first session that needs it (module docstring)."""
    import ferry.crypto

    return ferry.crypto


def load_crypto() -> None:
    """Import the crypto libraries now, while nothing waits on them (the first session
    would otherwise, when a peer may be waiting)."""
    _crypto()


class Session:
    """What both sides share: the key exchange, sealing and opening, the timer, the table."""

    side: str
    """"sender" or "receiver"."""
    machine: Machine

    def __init__(self, password: bytes, timeouts: Timeouts, capacity: int) -> None:
        crypto = _crypto()
        self.state = State.KEY_EXCHANGE
        self.timeouts = timeouts
        self._pake: Pake = crypto.Pake(crypto.Role(self.side), password)
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
        return "receiver" if self.side == "sender" else "sender"

    def first_flight(self) -> bytes:
        """Our PAKE record: it goes out behind the rendezvous line, before PAIRED."""
        return self._first_flight

    def _move(self, step: Step) -> None:
        """Take `step` (protocol/transitions.py); raises if the state does not take it."""
        self.state = self.machine.advance(self.state, step)

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
        """The next thing the peer said, or NEED_DATA; LocalProtocolError once it is over."""
        if self.state in OVER:
            raise LocalProtocolError(f"the session is {self.state.value}: nothing more to read")
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
            if self.state not in OVER:
                self._move(Step.FAIL)
            raise

    # -- bytes out -----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Records produced since the last call, to be written in order."""
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def wrote(self, now: float, waited: bool = False) -> None:
        """A write to the peer completed: that is progress too. `waited`: it could not
        go out at once (the socket's send queue was full)."""
        self._progress_at = now

    def seal_record(self, record_type: RecordType, body: bytes, flags: int = 0) -> bytes:
        """One sealed record, the next in our sequence; no state checks (a building block)."""
        if self._sealer is None:
            raise LocalProtocolError("nothing can be sealed before the key exchange")
        header = Header(len(body) + TAG_SIZE, record_type, flags).encode()
        return header + self._sealer.seal(header, body)

    def _send(self, step: Step, record_type: RecordType, body: bytes, now: float) -> None:
        """Take `step`, then queue the sealed record it sends (data_to_send())."""
        self._move(step)
        self._outgoing += self.seal_record(record_type, body)
        self._progress_at = now

    def proof(self, index: int, kept: int) -> hmac.HMAC:
        """The resume proof of file `index` (-1: the one file or stream) of which `kept`
        bytes were kept: feed it those bytes (crypto.resume_proof)."""
        if self._sealer is None:
            raise LocalProtocolError("no proof before the key exchange")
        return _crypto().resume_proof(self._keys, index, kept)  # type: ignore[no-any-return]

    def abort(self, reason: str, message: str, now: float) -> None:
        """Give up; the peer is told why if keys exist (data_to_send()). Once the session
        is over, there is nothing to say: nothing happens."""
        if self.state in OVER:
            return
        if self._sealer is not None:
            body = messages.encode_abort(messages.Abort(reason, message))
            self._outgoing += self.seal_record(RecordType.ABORT, body)
        self._progress_at = now
        self._move(Step.GIVE_UP)

    # -- time ----------------------------------------------------------------------------

    def paired(self, now: float) -> None:
        """The relay paired us: the handshake timer starts."""
        self._paired_at = self._progress_at = now

    @property
    def deadline(self) -> float | None:
        """When the session gives up unless something happens first (None: no timer)."""
        if self._paired_at is None or self.state in LOCAL_STATES:
            return None
        if self.state in HANDSHAKE_STATES:
            return self._paired_at + self.timeouts.handshake
        if self.state is State.AWAIT_ACK:
            return self._progress_at + self.timeouts.ack
        if self.state is State.AWAIT_ANSWER:
            return self._progress_at + self.timeouts.answer
        return self._progress_at + self.timeouts.io

    def expire(self, now: float) -> TimedOut | None:
        """The error to raise if the deadline has passed (the session is then FAILED, unless
        it was over already)."""
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
        if self.state not in OVER:  # DONE: a write after it (the ACK) timed out
            self._move(Step.FAIL)
        return error

    # -- records -------------------------------------------------------------------------

    def _handle(self, record: Record) -> Event | None:
        """The event a record makes (None: it only fed the session, e.g. a MANIFEST part)."""
        header = record.header
        expected = self.machine.expected(self.state)
        if header.type not in expected:
            raise RemoteProtocolError(self._out_of_turn(header, expected))
        if self.state is State.KEY_EXCHANGE:
            return self._keys_from(record.body)
        if self.state is State.CONFIRMING:
            if not _crypto().peer_confirmed(self._keys, bytes(record.body)):
                raise WrongCode("wrong code")
            self._move(Step.CONFIRM)
            return Confirmed()
        plain = self._open(record)
        if header.type is RecordType.ABORT:
            self._move(Step.ABORT)
            return PeerAborted(messages.decode_abort(bytes(plain)))
        return self._sealed(header, plain)

    def _out_of_turn(self, header: Header, expected: frozenset[RecordType]) -> str:
        wanted = expected - {RecordType.ABORT}
        handshake_late = not header.sealed and self.state not in HANDSHAKE_STATES
        if len(wanted) == 1 and not handshake_late and self.state is not State.DECIDING:
            return f"expected {next(iter(wanted)).name}, got {header.type.name}"
        return f"unexpected {header.type.name} record"

    def _keys_from(self, body: bytes | memoryview) -> Keyed:
        crypto = _crypto()
        keys = self._pake.finish(bytes(body))
        self.peer_keyed = True
        self._sealer, self._opener = crypto.Sealer(keys.seal_key), crypto.Opener(keys.open_key)
        self._keys = keys
        self._outgoing += encode_record(RecordType.CONFIRM, crypto.confirmation(keys))
        self._keyed()
        self._move(Step.PAKE)
        return Keyed()

    def _open(self, record: Record) -> memoryview:
        assert self._opener is not None
        if self._plain is None or len(self._plain) < len(record.body):
            self._plain = memoryview(bytearray(max(len(record.body), 4096)))
        size = self._opener.open_into(record.header.encode(), record.body, self._plain)
        return self._plain[:size]

    # -- what differs by role --------------------------------------------------------------

    _keys: SessionKeys

    def _keyed(self) -> None:
        """Keys are fresh and our CONFIRM is queued: add what rides with it."""

    def _pending_event(self) -> Event | None:
        """An event still owed from a record already opened (a tree's next file piece)."""
        return None

    def _sealed(self, header: Header, plain: memoryview) -> Event | None:
        raise NotImplementedError
