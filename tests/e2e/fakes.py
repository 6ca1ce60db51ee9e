"""A scriptable, possibly hostile sender that talks to the real relay and the real ./receive.

It speaks the rendezvous lines itself (FERRY 1 SEND -> NAMEPLATE n -> INCOMING ticket,
then a second connection FERRY 1 JOIN n ticket -> PAIRED) and holds a genuine
SenderSession (ferry.protocol.session: SPAKE2, key confirmation, the sealed OFFER), so
the receiver believes it talks to a real sender. After the receiver accepts the offer,
it follows a script of records sealed in the session's sequence (seal_record) that may
lie about the size, tamper with ciphertext, or stop without the final flag; then it
listens through the session for the receiver's ACK or ABORT.

Runs in a thread; every socket has a timeout and every exception is caught and kept in
`.error`, so a failing fake never hangs or crashes the test process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ferry.codes import generate_code
from ferry.protocol import messages
from ferry.protocol import rendezvous as rv
from ferry.protocol.events import (
    Acknowledged,
    Answered,
    Confirmed,
    Event,
    Keyed,
    NeedData,
    PeerAborted,
    State,
    Timeouts,
    VerdictReceived,
)
from ferry.protocol.records import FLAG_FINAL, HEADER_SIZE, RecordType
from ferry.protocol.sender_session import SenderSession

# The fake's own waits are its sockets' timeouts; the session's timer is not used.
_TIMEOUTS = Timeouts(handshake=3600.0, io=3600.0, ack=3600.0)


@dataclass(frozen=True)
class Data:
    """Send `payload` as one sealed DATA record."""

    payload: bytes
    final: bool = False
    tamper: bool = False
    """Flip one bit of the ciphertext after sealing (authentication must fail)."""


@dataclass(frozen=True)
class Close:
    """Close the data connection now (no final flag, no goodbye)."""


@dataclass(frozen=True)
class RawRecord:
    """Send a sealed record of any type (e.g. an ABORT or a second OFFER)."""

    record_type: RecordType
    body: bytes
    flags: int = 0


@dataclass(frozen=True)
class Call:
    """Run `action` (in the fake's thread) before the next step, e.g. to change the disk."""

    action: Callable[[], object]


@dataclass(frozen=True)
class Prove:
    """Answer a resuming ANSWER: the session's resume proof of `contents` (by entry index,
    -1 for a single file or stream) over the bytes the receiver said it kept; then wait
    for its verdict (kept in `.verdict`)."""

    contents: dict[int, bytes]


Step = Data | Close | RawRecord | Call | Prove


class _Stream:
    """A blocking socket with a small read buffer (lines, exact byte counts)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed")
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > rv.MAX_LINE:
                raise ConnectionError(f"line too long: {self.buffer[:60]!r}")
            self._more()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def event(self, session: SenderSession) -> Event:
        """The session's next event, reading as much as it takes."""
        while True:
            if self.buffer:
                session.receive_data(self.buffer, time.monotonic())
                self.buffer = b""
            event = session.next_event()
            if not isinstance(event, NeedData):
                return event
            self._more()


@dataclass
class FakeSender:
    host: str
    port: int
    name: str
    size: int
    steps: list[Step] = field(default_factory=list)
    kind: str = messages.KIND_FILE
    timeout: float = 30.0
    raw_offer: bytes | None = None
    """If set, the OFFER body sent verbatim instead of a well-formed one."""
    offer: messages.Offer | None = None
    """If set, this offer (e.g. a tree) instead of one built from kind, name and size."""
    manifest: list[bytes] = field(default_factory=list)
    """MANIFEST record bodies sent right behind the OFFER (a tree's, possibly hostile)."""
    file_sizes: dict[int, int] = field(default_factory=dict)
    """A tree's file sizes by entry index (what a resume list is checked against)."""
    before_answer: list[Step] = field(default_factory=list)
    """Steps taken once the keys are confirmed, while the receiver decides (e.g. an ABORT)."""

    code: str = ""
    answer: messages.Answer | None = None
    kept: dict[int, messages.Kept] = field(default_factory=dict)
    """A tree's RESUME list: what the receiver said it kept."""
    verdict: tuple[bool, ...] | None = None
    ack: messages.Ack | None = None
    abort: messages.Abort | None = None
    outcome: str = ""
    """How the conversation ended, seen from the fake: acked, aborted, refused, closed, eof."""
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.code_ready = threading.Event()
        self.finished = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._main, name="fake-sender", daemon=True)

    # -- public ------------------------------------------------------------------------

    def start(self) -> FakeSender:
        self._thread.start()
        return self

    def wait_code(self, timeout: float = 30.0) -> str:
        if not self.code_ready.wait(timeout):
            raise AssertionError(f"fake sender got no nameplate: {self.error!r}")
        if not self.code:
            raise AssertionError(f"fake sender failed before its code: {self.error!r}")
        return self.code

    def join(self, timeout: float = 60.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.close()
            self._thread.join(10)
            raise AssertionError("fake sender did not finish")

    def close(self) -> None:
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    # -- the conversation ----------------------------------------------------------------

    def _connect(self) -> _Stream:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._sockets.append(sock)
        return _Stream(sock)

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # kept for the test to inspect, never raised in the thread
            self.error = exc
        finally:
            self.code_ready.set()
            self.close()
            self.finished.set()

    def _run(self) -> None:
        control = self._connect()
        control.send(rv.encode(rv.SendRequest()))
        assigned = rv.parse_relay_line(control.line())
        assert isinstance(assigned, rv.NameplateAssigned), assigned
        code = generate_code(assigned.nameplate)
        self.code = code.text
        self.code_ready.set()

        while True:
            message = rv.parse_relay_line(control.line())
            if isinstance(message, rv.Ping):
                control.send(rv.encode(rv.Pong()))
            elif isinstance(message, rv.Incoming):
                break
            else:
                raise AssertionError(f"unexpected relay line {message!r}")

        offer = self.offer or messages.Offer(self.kind, self.name, self.size)
        session = SenderSession(
            code.password, offer, _TIMEOUTS, raw_offer=self.raw_offer,
            manifest_records=self.manifest, file_sizes=self.file_sizes,
        )  # fmt: skip
        data = self._connect()
        data.send(rv.encode(rv.JoinRequest(assigned.nameplate, message.ticket)))
        paired = rv.parse_relay_line(data.line())
        assert isinstance(paired, rv.Paired), paired
        session.paired(time.monotonic())

        # The genuine handshake, as the sender side (SPAKE2 A); the OFFER rides
        # with our CONFIRM.
        data.send(session.first_flight())
        assert isinstance(data.event(session), Keyed)
        data.send(session.data_to_send())
        assert isinstance(data.event(session), Confirmed)  # WrongCode raises here
        for step in self.before_answer:
            if isinstance(step, Call):
                step.action()
            elif isinstance(step, RawRecord):
                data.send(session.seal_record(step.record_type, step.body, step.flags))
            else:
                raise AssertionError(f"{step!r} cannot come before the answer")

        event = data.event(session)
        if isinstance(event, PeerAborted):
            self.abort = event.abort
            self.outcome = "aborted"
            return
        assert isinstance(event, Answered), event
        self.answer = event.answer
        self.kept = dict(session.kept)
        if not self.answer.accept:
            self.outcome = "refused"
            return

        for step in self.steps:
            if isinstance(step, Close):
                self.outcome = "closed"
                return
            if isinstance(step, Call):
                step.action()
                continue
            if isinstance(step, Prove):
                self._prove(data, session, step)
                continue
            try:
                if isinstance(step, Data):
                    flags = FLAG_FINAL if step.final else 0
                    record = bytearray(session.seal_record(RecordType.DATA, step.payload, flags))
                    if step.tamper:
                        record[HEADER_SIZE + len(step.payload) // 2] ^= 0x01
                    data.send(bytes(record))
                else:
                    data.send(session.seal_record(step.record_type, step.body, step.flags))
            except OSError:
                break  # the receiver gave up early: that is what some tests expect

        # See how the receiver reacts: an ACK, an ABORT, or it just goes away. The
        # script may have lied about its data, so the session is told it is done.
        session.sent = sum(len(step.payload) for step in self.steps if isinstance(step, Data))
        session.state = State.AWAIT_ACK
        try:
            event = data.event(session)
        except (OSError, ConnectionError):
            self.outcome = "eof"
            return
        if isinstance(event, Acknowledged):
            self.ack = event.ack
            self.outcome = "acked"
        elif isinstance(event, PeerAborted):
            self.abort = event.abort
            self.outcome = "aborted"
        else:
            self.outcome = f"unexpected {type(event).__name__}"

    def _prove(self, data: _Stream, session: SenderSession, step: Prove) -> None:
        kept = {-1: session.resume_from} if not session.kept else {
            index: k.size for index, k in session.kept.items()
        }  # fmt: skip
        macs = []
        for index, size in kept.items():
            proof = session.proof(index, size)
            proof.update(step.contents[index][:size])
            macs.append(proof.hexdigest())
        session.send_proofs(macs, 0.0)
        data.send(session.data_to_send())
        event = data.event(session)
        assert isinstance(event, VerdictReceived), event
        self.verdict = event.matched
