"""One relay connection's rules: its role, its phase, its deadline, its outcome.

Theory of operation. A `Session` is pure: no sockets, no tasks, no clock of
its own. The server feeds it what happened (a line arrived, a deadline
passed, the peer closed, a pipe ended), always with `now` (seconds, on the
relay's clock), and does what it answers: send a line, refuse (a `Refusal`
or `BadRequest` is raised), or end with an `Ending`. So every rule below
is tested by driving a session with plain lines and a number for the time.

    HANDSHAKE --SEND--------------> WAITING <-> CLAIMED <-> PIPING   sender control
              --RECV--------------> CLAIMING ---> PIPING              receiver
              --JOIN (no receiver)> PARKED -----> JOINED              sender data
              --JOIN (receiver)---> JOINED

Rules this module owns:
- HANDSHAKE: one line, within handshake_timeout of the accept; it decides
  the role, and nothing else is read before it;
- sender control (WAITING, CLAIMED, PIPING): only PONG lines; a tick every
  ping_interval after the last line or tick sends a PING; while WAITING,
  a sender silent for pong_timeout is lost, and one whose nameplate is
  overdue (the table's max_sender_wait) is refused with timeout; while a
  receiver has claimed it (CLAIMED) or its transfer runs (PIPING) neither
  applies;
- receiver (CLAIMING): its PAKE record (which ./receive sends right behind
  the RECV line) must arrive whole within handshake_timeout of the line;
  only then does it claim the nameplate, and the sender's data connection
  must join within join_timeout of that;
- sender data: no deadline of its own; PARKED it may send at most
  MAX_PARKED_BYTES early (its PAKE flight is ~40), JOINED it belongs to its
  receiver, whose line covers the pipe;
- PIPING: no deadline here (the pump owns idle_timeout); the pipe's
  outcome follows `pipe_outcome` below. Until OPENING_BYTES have moved
  from the sender, the pipe is in its opening (key exchange and offer):
  either side leaving then ends the pipe at once (pump.py), and the
  nameplate waits again;
- a claim counts against the nameplate's budget only if the key exchange
  was reached: the sender spoke after PAIRED (its first flight travels
  before, so anything later answers a receiver's valid PAKE message). A
  receiver that leaves before, or sends garbage, was charged a look-up of
  its address's budget and nothing else;
- every session ends with one `Ending` (logs.py names the outcomes).

What a pipe's outcome can rest on. The relay cannot read what it carries,
but it sees which side's bytes moved last and whether both sides closed
cleanly. A delivered file ends with the receiver's ACK (docs/PROTOCOL.md,
part 4): the receiver speaks last, then both close. A sender that stops
mid-transfer (killed, or ABORT) speaks last, or its socket fails. So a
pipe is happy only when both sides closed cleanly and the receiver's bytes
were the last to move; docs/OPERATIONS.md lists what this cannot tell apart.
"""

from __future__ import annotations

import errno as errnos
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ferry.config import MAX_PARKED_BYTES, RelayConfig
from ferry.errors import BadRequest, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import logs, proxy

GONE: Final = (errnos.ECONNRESET, errnos.EPIPE, errnos.ECONNABORTED, errnos.ETIMEDOUT)
"""Socket errors that mean the peer went away (vanished), not that something broke."""


class Role(Enum):
    UNKNOWN = "unknown"
    SENDER = "sender"
    RECEIVER = "receiver"
    SENDER_DATA = "sender-data"


class Phase(Enum):
    HANDSHAKE = "handshake"
    WAITING = "waiting"
    """Sender control: holds a nameplate, no receiver."""
    CLAIMED = "claimed"
    """Sender control: a receiver claimed; the data connection is on its way."""
    CLAIMING = "claiming"
    """Receiver: waits for the sender's data connection."""
    PARKED = "parked"
    """Standby sender data: waits, with no task, for a receiver."""
    JOINED = "joined"
    """Sender data: handed to its receiver's pipe."""
    PIPING = "piping"
    """Receiver: runs the pump. Sender control: its transfer runs."""


@dataclass(frozen=True)
class Ending:
    """How a connection ended: the outcome (logs.py), a detail, the refusal reason."""

    outcome: str
    detail: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SendPing:
    """The sender control's tick: PING it."""


@dataclass(frozen=True)
class PipeReport:
    """What the relay saw of one pipe (the receiver is side a of the pump, the sender b)."""

    ended: str
    """The pump's outcome: "closed" (both sides finished), "error" or "idle"."""
    bytes_to_receiver: int
    bytes_to_sender: int
    last_from: Role | None
    """Whose bytes moved last (None: nothing moved)."""
    closed_first: Role | None
    """Whose end of stream the relay saw first (None: neither closed cleanly)."""
    sender_replied: bool = True
    """The sender spoke after PAIRED: the key exchange was reached (the claim counts)."""


def pipe_outcome(report: PipeReport) -> Ending:
    """The outcome of a pipe, from what the relay can observe (module docstring)."""
    if report.ended == "idle":
        return Ending(logs.IDLE)
    if report.ended == "early":
        # One side left during the opening. A tiny file, a declined offer or a
        # wrong code ends there too: the sender answered (the key exchange was
        # reached) and the receiver spoke last, as after a delivered file.
        if report.sender_replied and report.last_from is Role.RECEIVER:
            return Ending(logs.HAPPY)
        who = report.closed_first.value if report.closed_first else "a side"
        return Ending(logs.VANISHED, f"{who} left before the data phase")
    if report.ended != "closed":
        return Ending(logs.ERRORY, "socket failed")
    if report.last_from is Role.RECEIVER:
        return Ending(logs.HAPPY)
    if report.last_from is None:
        return Ending(logs.ERRORY, "nothing moved")
    return Ending(logs.ERRORY, "sender spoke last")


def error_ending(errno: int | None, name: str) -> Ending:
    """A socket error on this connection: vanished if the peer went away, else errory."""
    return Ending(logs.VANISHED if errno in GONE else logs.ERRORY, name)


class Session:
    """The rules of one connection, from accept to its Ending."""

    def __init__(self, config: RelayConfig, now: float) -> None:
        self.config = config
        self.role = Role.UNKNOWN
        self.phase = Phase.HANDSHAKE
        self.started = now
        self.last_heard = now
        self.nameplate: int | None = None
        self.claims: int | None = None
        """Receivers a sender's nameplate had, or which claim a receiver's is."""
        self.pipe: PipeReport | None = None
        """A receiver's pipe, once it ended."""
        self.record_due = False
        """Receiver: its claim's PAKE record has not arrived whole yet."""
        self.last_transfer: Ending | None = None
        """A sender's most recent transfer's outcome."""
        self._deadline: float | None = now + config.handshake_timeout

    # -- deadlines ---------------------------------------------------------

    def deadline(self) -> float | None:
        """When timer_expired() is due (None: no deadline in this phase)."""
        return self._deadline

    def timer_expired(self, now: float, overdue: bool = False) -> SendPing | Ending:
        """The deadline passed. `overdue`: the table says the sender waited too long.

        Raises Refusal when the answer is an ERROR line.
        """
        if self.phase is Phase.HANDSHAKE:
            raise Refusal(rv.REASON_TIMEOUT, "handshake timed out")
        if self.phase is Phase.CLAIMING and self.record_due:
            raise Refusal(rv.REASON_TIMEOUT, "no key exchange message followed the claim")
        if self.phase is Phase.CLAIMING:
            raise Refusal(rv.REASON_TIMEOUT, "the sender did not answer in time")
        assert self.role is Role.SENDER, self
        if self.phase is Phase.WAITING:
            if overdue:
                raise Refusal(rv.REASON_TIMEOUT, "waited too long for a receiver")
            if now - self.last_heard > self.config.pong_timeout:
                return Ending(logs.LOST, "no PONG")
        self._deadline = now + self.config.ping_interval
        return SendPing()

    # -- input -------------------------------------------------------------

    def request_received(self, line: bytes, now: float) -> rv.ClientMessage:
        """The first line: it picks the role. Raises BadRequest for anything else."""
        assert self.phase is Phase.HANDSHAKE, self.phase
        self.last_heard = now
        if proxy.looks_like_header(line):
            # Only a trusted proxy may say where a connection comes from.
            raise BadRequest(rv.REASON_BAD_REQUEST, "PROXY header from an untrusted address")
        request = rv.parse_client_line(line)
        match request:
            case rv.SendRequest():
                self.role, self.phase = Role.SENDER, Phase.WAITING
                self._deadline = now + self.config.ping_interval
            case rv.ReceiveRequest(nameplate):
                self.role, self.phase, self.nameplate = Role.RECEIVER, Phase.CLAIMING, nameplate
                self.record_due = True
                self._deadline = now + self.config.handshake_timeout
            case rv.JoinRequest(nameplate, _):
                self.role, self.phase, self.nameplate = Role.SENDER_DATA, Phase.JOINED, nameplate
                self._deadline = None
            case _:
                raise BadRequest(rv.REASON_BAD_REQUEST, "unexpected first line")
        return request

    def line_received(self, line: bytes, now: float) -> None:
        """A sender control's later line: only PONG. Raises BadRequest otherwise."""
        assert self.role is Role.SENDER, self.role
        if not isinstance(rv.parse_client_line(line), rv.Pong):
            raise BadRequest(rv.REASON_BAD_REQUEST, "only PONG is expected here")
        self.last_heard = now
        self._deadline = now + self.config.ping_interval

    def claim_record_arrived(self, now: float) -> None:
        """Receiver: its PAKE record is whole; now it may claim, and the join may take
        join_timeout."""
        assert self.phase is Phase.CLAIMING, self.phase
        self.record_due = False
        self._deadline = now + self.config.join_timeout

    def may_park(self, held: int, arriving: int) -> bool:
        """Whether a parked data connection may add `arriving` early bytes to `held`."""
        return arriving > 0 and held + arriving <= MAX_PARKED_BYTES

    # -- what the connection turns into ------------------------------------

    def registered(self, nameplate: int) -> None:
        self.nameplate = nameplate

    def parked(self) -> None:
        assert self.role is Role.SENDER_DATA, self.role
        self.phase = Phase.PARKED

    def claimed(self, claims: int) -> None:
        """Receiver: its claim is in (claims: which claim on the nameplate this is)."""
        self.claims = claims

    def receiver_came(self) -> None:
        """Sender control: a receiver claimed its nameplate."""
        self.phase = Phase.CLAIMED

    def pipe_started(self) -> None:
        """Receiver: the pump runs. Sender control: its transfer runs."""
        self.phase = Phase.PIPING
        self._deadline = None if self.role is Role.RECEIVER else self._deadline

    def pipe_ended(self, report: PipeReport) -> Ending:
        """Receiver: the pump stopped; its outcome."""
        self.pipe = report
        return pipe_outcome(report)

    def claim_ended(self, transfer: Ending | None, now: float) -> None:
        """Sender control: the claim (and its transfer, if one ran) is over; wait again."""
        self.phase = Phase.WAITING
        if transfer is not None:
            self.last_transfer = transfer
        # Waiting starts afresh: the sender was busy, not silent.
        self.last_heard = now
        self._deadline = now + self.config.ping_interval

    # -- endings -----------------------------------------------------------

    def log_fields(self, ending: Ending, peer: str, now: float) -> dict[str, logs.Field]:
        """The fields of this connection's outcome line (never a byte the client sent)."""
        fields: dict[str, logs.Field] = {
            "role": self.role.value,
            "nameplate": "-" if self.nameplate is None else self.nameplate,
            "peer": peer,
            "duration": now - self.started,
        }
        if ending.reason:
            fields["reason"] = ending.reason
        if self.pipe is not None:
            fields["bytes_to_receiver"] = self.pipe.bytes_to_receiver
            fields["bytes_to_sender"] = self.pipe.bytes_to_sender
            first = self.pipe.closed_first
            fields["closed_first"] = "-" if first is None else first.value
        if self.claims is not None:
            fields["claims"] = self.claims
        if ending.detail:
            fields["detail"] = ending.detail
        return fields

    def peer_closed(self) -> Ending:
        """The peer closed (or reset) while this session read from it.

        A sender control that leaves between transfers ends as its last
        transfer did (lonely if none ran); anything else vanished.
        """
        if self.role is Role.SENDER and self.phase is Phase.WAITING:
            return self.last_transfer or Ending(logs.LONELY)
        return Ending(logs.VANISHED)

    def cancelled(self) -> Ending:
        """The relay is shutting down: a running transfer is cut, the rest refused."""
        if self.phase is Phase.PIPING:
            return Ending(logs.CUT, "drain deadline")
        return Ending(logs.REFUSED, reason=rv.REASON_SHUTTING_DOWN)
