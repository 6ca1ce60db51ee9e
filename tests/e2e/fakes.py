"""A scriptable, possibly hostile sender that talks to the real relay and the real ./receive.

It speaks the rendezvous lines itself (FERRY 1 SEND -> NAMEPLATE n -> INCOMING ticket,
then a second connection FERRY 1 JOIN n ticket -> PAIRED) and runs the genuine
handshake with the project's own modules (SPAKE2, key confirmation, AES-GCM sealing),
so the receiver believes it talks to a real sender. After the receiver accepts the offer,
it follows a script of DATA records that may lie about the size, tamper with ciphertext,
or stop without the final flag.

Runs in a thread; every socket has a timeout and every exception is caught and kept in
`.error`, so a failing fake never hangs or crashes the test process.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from ferry.codes import generate_code
from ferry.crypto import Opener, Pake, Role, Sealer, confirmation, peer_confirmed
from ferry.protocol import messages
from ferry.protocol import rendezvous as rv
from ferry.protocol.records import (
    FLAG_FINAL,
    HEADER_SIZE,
    TAG_SIZE,
    Header,
    RecordType,
    encode_record,
    parse_header,
)


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


Step = Data | Close | RawRecord


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

    def exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._more()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def record(self) -> tuple[Header, bytes]:
        header = parse_header(self.exact(HEADER_SIZE))
        return header, self.exact(header.length)


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

    code: str = ""
    answer: messages.Answer | None = None
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

        data = self._connect()
        data.send(rv.encode(rv.JoinRequest(assigned.nameplate, message.ticket)))
        paired = rv.parse_relay_line(data.line())
        assert isinstance(paired, rv.Paired), paired

        # The genuine handshake, as the sender side (SPAKE2 A).
        pake = Pake(Role.SENDER, code.password)
        data.send(encode_record(RecordType.PAKE, pake.start()))
        header, body = data.record()
        assert header.type is RecordType.PAKE, header
        keys = pake.finish(body)
        data.send(encode_record(RecordType.CONFIRM, confirmation(keys)))
        header, body = data.record()
        assert header.type is RecordType.CONFIRM, header
        assert peer_confirmed(keys, body), "receiver used another code"
        sealer = Sealer(keys.seal_key)
        opener = Opener(keys.open_key)

        def send_sealed(
            record_type: RecordType, plain: bytes, flags: int = 0, tamper: bool = False
        ) -> None:
            head = Header(len(plain) + TAG_SIZE, record_type, flags).encode()
            sealed = bytearray(sealer.seal(head, plain))
            if tamper:
                sealed[len(sealed) // 2] ^= 0x01
            data.send(head + bytes(sealed))

        def read_sealed() -> tuple[RecordType, bytes]:
            head, sealed = data.record()
            return head.type, opener.open(head.encode(), sealed)

        offer = messages.Offer(self.kind, self.name, self.size)
        body = messages.encode_offer(offer) if self.raw_offer is None else self.raw_offer
        send_sealed(RecordType.OFFER, body)
        record_type, plain = read_sealed()
        if record_type is RecordType.ABORT:
            self.abort = messages.decode_abort(plain)
            self.outcome = "aborted"
            return
        assert record_type is RecordType.ANSWER, record_type
        self.answer = messages.decode_answer(plain)
        if not self.answer.accept:
            self.outcome = "refused"
            return

        for step in self.steps:
            if isinstance(step, Close):
                self.outcome = "closed"
                return
            try:
                if isinstance(step, Data):
                    flags = FLAG_FINAL if step.final else 0
                    send_sealed(RecordType.DATA, step.payload, flags, step.tamper)
                else:
                    send_sealed(step.record_type, step.body, step.flags)
            except OSError:
                break  # the receiver gave up early: that is what some tests expect

        # See how the receiver reacts: an ACK, an ABORT, or it just goes away.
        try:
            record_type, plain = read_sealed()
        except (OSError, ConnectionError):
            self.outcome = "eof"
            return
        if record_type is RecordType.ACK:
            self.ack = messages.decode_ack(plain)
            self.outcome = "acked"
        elif record_type is RecordType.ABORT:
            self.abort = messages.decode_abort(plain)
            self.outcome = "aborted"
        else:
            self.outcome = f"unexpected {record_type.name}"
