"""One relay connection's rules: its role, its phase, its deadline, its outcome.

Theory of operation. A `Session` is pure: no sockets, no tasks, no clock of
its own. The server feeds it what happened (a line arrived, a deadline
passed, the peer closed, a pipe ended), always with `now` (seconds, on the
relay's clock), and does what it answers: send a line, refuse (a `Refusal`
or `BadRequest` is raised), or end with an `Ending`. So every rule below
is tested by driving a session with plain lines and a number for the time.

    HANDSHAKE --SEND--> WAITING --receiver came--> CLAIMED --pipe started--> PIPING
                           ^                            |                        |
                           +------- claim ended --------+------------------------+
    (sender control)

    HANDSHAKE --RECV--> CLAIMING --record arrived--> PAIRING --pipe started--> PIPING
                            |                         |    ^
                            |                   queued|    |turn came
                            |                         v    |
                            |                         QUEUED
                            +------------------- pipe started (forwarded) ------^
    (receiver)

    HANDSHAKE --JOIN--> JOINING --parked--> PARKED --handed--> JOINED
                            +---------------handed-------------^
                            +--- pipe started (forwarded) ---> PIPING
    (sender data)

Every move is a `Step`, and `TRANSITIONS` (role, phase, step -> phase) is the
whole lifecycle: `Session.step` is the one place a phase changes, and it
refuses (LocalProtocolError: a bug of the relay's) any step the table does
not list. What the server used to keep in flags beside it is read from the
phase: a sender data connection belongs to a pipe or the parking lot once
PARKED or JOINED (`handed_over`), a sender control is between transfers
while WAITING (`between_transfers`), a receiver waits for its data
connection while PAIRING. The nameplate's side (table.py) moves with the
sessions in lifecycle.py.

Rules this module owns:
- HANDSHAKE: one line, within handshake_timeout of the accept; it decides
  the role, and nothing else is read before it;
- sender control (WAITING, CLAIMED, PIPING): only PONG lines; a tick every
  ping_interval after the last line or tick sends a PING; while WAITING,
  a sender silent for pong_timeout is lost, and one whose nameplate is
  overdue (the table's max_sender_wait) is refused with timeout; while a
  receiver has claimed it (CLAIMED) or its transfer runs (PIPING) neither
  applies;
- receiver: its PAKE record (which ./receive sends right behind the RECV
  line) must arrive whole within handshake_timeout of the line (CLAIMING);
  only then does it claim the nameplate, and the sender's data connection
  must join within join_timeout of that (PAIRING); a claim queued behind
  another one still opening (QUEUED, table.py) waits at most
  CLAIM_QUEUE_WAIT for its turn, and join_timeout starts again at its turn;
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ferry.config import CLAIM_QUEUE_WAIT, MAX_PARKED_BYTES, RelayConfig
from ferry.errors import BadRequest, LocalProtocolError, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import logs, proxy
from ferry.relay.pipes import PumpEnd, PumpResult, Side

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
    """Receiver: its claim's PAKE record has not arrived whole yet; it holds nothing."""
    PAIRING = "pairing"
    """Receiver: claimed the nameplate; waits for the sender's data connection."""
    QUEUED = "queued"
    """Receiver: its claim waits for the claims ahead of it on the nameplate to end."""
    JOINING = "joining"
    """Sender data: presented its ticket; not yet parked or handed to a receiver."""
    PARKED = "parked"
    """Standby sender data: waits, with no task, for a receiver."""
    JOINED = "joined"
    """Sender data: handed to its receiver's pipe."""
    PIPING = "piping"
    """Receiver (or a forwarded connection): runs the pump. Sender control: its
    transfer runs."""


class Step(Enum):
    """What moves a session from one phase to the next (TRANSITIONS)."""

    SEND = "send"
    RECV = "recv"
    JOIN = "join"
    RECORD_ARRIVED = "record arrived"
    QUEUED = "queued"
    TURN_CAME = "turn came"
    RECEIVER_CAME = "receiver came"
    PARKED = "parked"
    HANDED = "handed"
    PIPE_STARTED = "pipe started"
    CLAIM_ENDED = "claim ended"


FIRST_STEPS: Final[Mapping[Step, Role]] = {
    Step.SEND: Role.SENDER,
    Step.RECV: Role.RECEIVER,
    Step.JOIN: Role.SENDER_DATA,
}
"""The first line's step, and the role it gives the connection."""

TRANSITIONS: Final[Mapping[tuple[Role, Phase, Step], Phase]] = {
    (Role.UNKNOWN, Phase.HANDSHAKE, Step.SEND): Phase.WAITING,
    (Role.UNKNOWN, Phase.HANDSHAKE, Step.RECV): Phase.CLAIMING,
    (Role.UNKNOWN, Phase.HANDSHAKE, Step.JOIN): Phase.JOINING,
    # sender control
    (Role.SENDER, Phase.WAITING, Step.RECEIVER_CAME): Phase.CLAIMED,
    (Role.SENDER, Phase.CLAIMED, Step.PIPE_STARTED): Phase.PIPING,
    (Role.SENDER, Phase.CLAIMED, Step.CLAIM_ENDED): Phase.WAITING,
    (Role.SENDER, Phase.PIPING, Step.CLAIM_ENDED): Phase.WAITING,
    # receiver
    (Role.RECEIVER, Phase.CLAIMING, Step.RECORD_ARRIVED): Phase.PAIRING,
    (Role.RECEIVER, Phase.CLAIMING, Step.PIPE_STARTED): Phase.PIPING,  # forwarded
    (Role.RECEIVER, Phase.PAIRING, Step.QUEUED): Phase.QUEUED,
    (Role.RECEIVER, Phase.QUEUED, Step.TURN_CAME): Phase.PAIRING,
    (Role.RECEIVER, Phase.PAIRING, Step.PIPE_STARTED): Phase.PIPING,
    # sender data
    (Role.SENDER_DATA, Phase.JOINING, Step.PARKED): Phase.PARKED,
    (Role.SENDER_DATA, Phase.JOINING, Step.HANDED): Phase.JOINED,
    (Role.SENDER_DATA, Phase.PARKED, Step.HANDED): Phase.JOINED,
    (Role.SENDER_DATA, Phase.JOINING, Step.PIPE_STARTED): Phase.PIPING,  # forwarded
}
"""Every move a connection may make: (role, phase, step) -> the next phase."""


def next_phase(role: Role, phase: Phase, step: Step) -> Phase:
    """The phase `step` leads to; LocalProtocolError if the lifecycle has no such move."""
    try:
        return TRANSITIONS[(role, phase, step)]
    except KeyError:
        raise LocalProtocolError(
            f"a {role.value} connection in {phase.value} cannot take step {step.value!r}"
        ) from None


@dataclass(frozen=True)
class Ending:
    """How a connection ended: the outcome (logs.py), a detail, the refusal reason."""

    outcome: logs.Outcome
    detail: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SendPing:
    """The sender control's tick: PING it."""


SIDE_ROLES: Final[Mapping[Side, Role]] = {Side.A: Role.RECEIVER, Side.B: Role.SENDER}
"""Who is on which side of the pump: the receiver on A, the sender on B."""


@dataclass(frozen=True)
class PipeReport:
    """What the relay saw of one pipe (the receiver is side A of the pump, the sender B)."""

    ended: PumpEnd
    """The pump's outcome."""
    bytes_to_receiver: int
    bytes_to_sender: int
    last_from: Role | None
    """Whose bytes moved last (None: nothing moved)."""
    closed_first: Role | None
    """Whose end of stream the relay saw first (None: neither closed cleanly)."""
    sender_replied: bool = True
    """The sender spoke after PAIRED: the key exchange was reached (the claim counts)."""

    @classmethod
    def of(cls, result: PumpResult, first_flight: int | None = None) -> PipeReport:
        """The report of a pump run. first_flight: bytes the sender sent before PAIRED
        (None: the relay cannot tell, as on a forwarding node; the claim counts)."""
        return cls(
            ended=result.outcome,
            bytes_to_receiver=result.bytes_b_to_a,
            bytes_to_sender=result.bytes_a_to_b,
            last_from=None if result.last_from is None else SIDE_ROLES[result.last_from],
            closed_first=None if result.first_eof is None else SIDE_ROLES[result.first_eof],
            sender_replied=first_flight is None or result.bytes_b_to_a > first_flight,
        )


def pipe_outcome(report: PipeReport) -> Ending:
    """The outcome of a pipe, from what the relay can observe (module docstring)."""
    if report.ended is PumpEnd.IDLE:
        return Ending(logs.IDLE)
    if report.ended is PumpEnd.EARLY:
        # One side left during the opening. A tiny file, a declined offer or a
        # wrong code ends there too: the sender answered (the key exchange was
        # reached) and the receiver spoke last, as after a delivered file.
        if report.sender_replied and report.last_from is Role.RECEIVER:
            return Ending(logs.HAPPY)
        who = report.closed_first.value if report.closed_first else "a side"
        return Ending(logs.VANISHED, f"{who} left before the data phase")
    if report.ended is not PumpEnd.CLOSED:
        return Ending(logs.ERRORY, "socket failed")
    if report.last_from is Role.RECEIVER:
        return Ending(logs.HAPPY)
    if report.last_from is None:
        return Ending(logs.ERRORY, "nothing moved")
    return Ending(logs.ERRORY, "sender spoke last")


def delay_until(deadline: float | None, now: float) -> float | None:
    """Seconds from now until deadline, never negative (None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - now)


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
        self.last_transfer: Ending | None = None
        """A sender's most recent transfer's outcome."""
        self._deadline: float | None = now + config.handshake_timeout
        self._watchers: list[Callable[[Phase], None]] = []

    # -- the lifecycle -----------------------------------------------------

    def step(self, step: Step) -> Phase:
        """Take one step of the lifecycle (TRANSITIONS); the phase it leads to.

        The one place a phase changes. Raises LocalProtocolError for a move
        the table does not list (a bug of the relay's, never the client's).
        """
        phase = next_phase(self.role, self.phase, step)
        self.role = FIRST_STEPS.get(step, self.role)
        self.phase = phase
        for watcher in self._watchers:
            watcher(phase)
        return phase

    def watch(self, watcher: Callable[[Phase], None]) -> None:
        """Call watcher(phase) after every step (the server's asyncio side listens)."""
        self._watchers.append(watcher)

    @property
    def handed_over(self) -> bool:
        """Sender data: its socket belongs to a receiver's pipe or the parking lot."""
        return self.phase is Phase.PARKED or self.phase is Phase.JOINED

    @property
    def between_transfers(self) -> bool:
        """Sender control: no transfer of its nameplate is claimed or running."""
        return self.phase is not Phase.CLAIMED and self.phase is not Phase.PIPING

    @property
    def awaits_join(self) -> bool:
        """Receiver: claimed, waiting for the sender's data connection."""
        return self.phase is Phase.PAIRING

    # -- deadlines ---------------------------------------------------------

    def deadline(self) -> float | None:
        """When timer_expired() is due (None: no deadline in this phase)."""
        return self._deadline

    def delay(self, now: float) -> float | None:
        """Seconds from now until the deadline (never negative; None: no deadline)."""
        return delay_until(self._deadline, now)

    def timer_expired(self, now: float, overdue: bool = False) -> SendPing | Ending:
        """The deadline passed. `overdue`: the table says the sender waited too long.

        Raises Refusal when the answer is an ERROR line.
        """
        if self.phase is Phase.HANDSHAKE:
            raise Refusal(rv.REASON_TIMEOUT, "handshake timed out")
        if self.phase is Phase.CLAIMING:
            raise Refusal(rv.REASON_TIMEOUT, "no key exchange message followed the claim")
        if self.phase is Phase.PAIRING:
            raise Refusal(rv.REASON_TIMEOUT, "the sender did not answer in time")
        if self.phase is Phase.QUEUED:
            raise Refusal(rv.REASON_TIMEOUT, "the claims ahead on this nameplate took too long")
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
                self.step(Step.SEND)
                self._deadline = now + self.config.ping_interval
            case rv.ReceiveRequest(nameplate):
                self.step(Step.RECV)
                self.nameplate = nameplate
                self._deadline = now + self.config.handshake_timeout
            case rv.JoinRequest(nameplate, _):
                self.step(Step.JOIN)
                self.nameplate = nameplate
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
        self.step(Step.RECORD_ARRIVED)
        self._deadline = now + self.config.join_timeout

    def may_park(self, held: int, arriving: int) -> bool:
        """Whether a parked data connection may add `arriving` early bytes to `held`."""
        return arriving > 0 and held + arriving <= MAX_PARKED_BYTES

    # -- what the connection turns into ------------------------------------

    def registered(self, nameplate: int) -> None:
        """Sender control: the nameplate it holds."""
        self.nameplate = nameplate

    def unregistered(self, claims: int) -> None:
        """Sender control: its nameplate is freed, after `claims` receivers."""
        self.claims = claims

    def parked(self) -> None:
        """Sender data: parked, with no task, until a receiver claims."""
        self.step(Step.PARKED)

    def handed(self) -> None:
        """Sender data: its socket is its receiver's now."""
        self.step(Step.HANDED)

    def queued(self, now: float) -> None:
        """Receiver: its claim waits behind the one opening on the nameplate."""
        self.step(Step.QUEUED)
        self._deadline = now + CLAIM_QUEUE_WAIT

    def turn_came(self, now: float) -> None:
        """Receiver: the claims ahead ended; its claim holds the nameplate now, and the
        sender's data connection may take join_timeout from here."""
        self.step(Step.TURN_CAME)
        self._deadline = now + self.config.join_timeout

    def claimed(self, claims: int) -> None:
        """Receiver: its claim is in (claims: which claim on the nameplate this is)."""
        assert self.phase is Phase.PAIRING, self.phase
        self.claims = claims

    def receiver_came(self) -> None:
        """Sender control: a receiver claimed its nameplate."""
        self.step(Step.RECEIVER_CAME)

    def pipe_started(self) -> None:
        """Receiver (or a forwarded connection): the pump runs. Sender control: its
        transfer runs."""
        self.step(Step.PIPE_STARTED)
        self._deadline = None if self.role is not Role.SENDER else self._deadline

    def pipe_ended(self, report: PipeReport) -> Ending:
        """Receiver: the pump stopped; its outcome."""
        self.pipe = report
        return pipe_outcome(report)

    def claim_ended(self, transfer: Ending | None, now: float) -> None:
        """Sender control: the claim (and its transfer, if one ran) is over; wait again."""
        self.step(Step.CLAIM_ENDED)
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
