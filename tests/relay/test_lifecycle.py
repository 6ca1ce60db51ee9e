"""The relay's lifecycle as tables (session.TRANSITIONS, table.MOVES) and its one owner
(lifecycle.py): every move either lands where the table says or is refused, and a
pairing moves the nameplate and every session it concerns together.

Pure: no sockets, no event loop; time is a number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from ferry.config import CLAIM_QUEUE_WAIT, RelayConfig
from ferry.errors import LocalProtocolError, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import logs
from ferry.relay.lifecycle import Lifecycle
from ferry.relay.session import (
    FIRST_STEPS,
    TRANSITIONS,
    Ending,
    Phase,
    Role,
    Session,
    Step,
    next_phase,
)
from ferry.relay.table import MOVES, PairingTable, State

CONFIG = RelayConfig()
T0 = 100.0


@dataclass(eq=False)
class Conn:
    """A connection as lifecycle.py sees one: a session, nothing else."""

    session: Session = field(default_factory=lambda: Session(CONFIG, T0))


def connection(first_line: bytes) -> Conn:
    conn = Conn()
    conn.session.request_received(first_line, T0)
    return conn


def lifecycle() -> Lifecycle[Conn]:
    numbers = itertools.count()
    return Lifecycle(CONFIG, lambda: f"{next(numbers):032x}")


# -- the session's table -------------------------------------------------------------------

EVERY_MOVE = list(itertools.product(Role, Phase, Step))


@pytest.mark.parametrize(
    ("role", "phase", "step"), EVERY_MOVE, ids=lambda v: getattr(v, "value", str(v))
)
def test_every_session_move_lands_where_the_table_says_or_is_refused(
    role: Role, phase: Phase, step: Step
) -> None:
    session = Session(CONFIG, T0)
    session.role, session.phase = role, phase
    expected = TRANSITIONS.get((role, phase, step))
    if expected is None:
        with pytest.raises(LocalProtocolError):
            session.step(step)
        assert (session.role, session.phase) == (role, phase)  # a refused move moves nothing
        return
    assert session.step(step) is expected
    assert session.phase is expected
    assert session.role is FIRST_STEPS.get(step, role)


def test_the_table_knows_each_role_only_in_its_own_phases() -> None:
    phases = {
        Role.UNKNOWN: {Phase.HANDSHAKE},
        Role.SENDER: {Phase.WAITING, Phase.CLAIMED, Phase.PIPING},
        Role.RECEIVER: {Phase.CLAIMING, Phase.PAIRING, Phase.QUEUED, Phase.PIPING},
        Role.SENDER_DATA: {Phase.JOINING, Phase.PARKED, Phase.JOINED, Phase.PIPING},
    }
    for (role, phase, step), after in TRANSITIONS.items():
        assert phase in phases[role], (role, phase, step)
        assert after in phases[FIRST_STEPS.get(step, role)], (role, phase, step)
    # Every phase is reached, and only a handshake ends in a role's first step.
    reached = {after for after in TRANSITIONS.values()} | {Phase.HANDSHAKE}
    assert reached == set(Phase)
    assert {step for (role, _, step) in TRANSITIONS if role is Role.UNKNOWN} == set(FIRST_STEPS)


def test_a_refused_move_names_the_role_phase_and_step() -> None:
    with pytest.raises(LocalProtocolError, match=r"receiver connection in piping .*claim ended"):
        next_phase(Role.RECEIVER, Phase.PIPING, Step.CLAIM_ENDED)


@pytest.mark.parametrize(
    ("phase", "handed_over", "between_transfers", "awaits_join"),
    [
        (Phase.HANDSHAKE, False, True, False),
        (Phase.WAITING, False, True, False),
        (Phase.CLAIMED, False, False, False),
        (Phase.PIPING, False, False, False),
        (Phase.CLAIMING, False, True, False),
        (Phase.PAIRING, False, True, True),
        (Phase.JOINING, False, True, False),
        (Phase.PARKED, True, True, False),
        (Phase.JOINED, True, True, False),
    ],
)
def test_what_the_server_asks_is_read_from_the_phase(
    phase: Phase, handed_over: bool, between_transfers: bool, awaits_join: bool
) -> None:
    session = Session(CONFIG, T0)
    session.phase = phase
    assert session.handed_over is handed_over
    assert session.between_transfers is between_transfers
    assert session.awaits_join is awaits_join


def test_watchers_hear_every_step_in_order() -> None:
    session = Session(CONFIG, T0)
    heard: list[Phase] = []
    session.watch(heard.append)
    session.request_received(b"FERRY 1 SEND\n", T0)
    session.receiver_came()
    session.pipe_started()
    session.claim_ended(Ending(logs.HAPPY), T0 + 1)
    assert heard == [Phase.WAITING, Phase.CLAIMED, Phase.PIPING, Phase.WAITING]


# -- the table's moves ---------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), list(itertools.product(State, State)))
def test_every_nameplate_move_is_listed_or_refused(before: State, after: State) -> None:
    table: PairingTable[str] = PairingTable(CONFIG, lambda: "t" * 32)
    entry = table.register("sender", T0)
    entry.state = before
    if (before, after) in MOVES:
        table._move(entry, after)
        assert entry.state is after
    else:
        with pytest.raises(LocalProtocolError):
            table._move(entry, after)
        assert entry.state is before


# -- one owner: a pairing moves everything it concerns -------------------------------------


def test_a_claim_moves_the_nameplate_the_receiver_and_the_sender_together() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND\n")
    entry = life.register(sender, T0)
    assert sender.session.nameplate == entry.nameplate
    receiver = connection(f"FERRY 1 RECV {entry.nameplate}\n".encode())
    receiver.session.claim_record_arrived(T0)
    assert life.claim(entry.nameplate, receiver, T0) is entry
    assert life.table.count(State.CLAIMED) == 1
    assert (sender.session.phase, receiver.session.phase) == (Phase.CLAIMED, Phase.PAIRING)
    assert receiver.session.claims == 1

    data = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    joined = life.join(entry.nameplate, entry.ticket, data)
    assert joined.entry.receiver is receiver and joined.entry.parked is None
    assert life.table.count(State.ACTIVE) == 1 and data.session.phase is Phase.JOINED

    life.start_pipe(entry, receiver)
    assert (sender.session.phase, receiver.session.phase) == (Phase.PIPING, Phase.PIPING)
    assert life.end_claim(entry, Ending(logs.HAPPY), T0 + 9).ticket == ""
    assert entry.state is State.WAITING and sender.session.phase is Phase.WAITING
    assert sender.session.last_transfer == Ending(logs.HAPPY)

    assert life.unregister(entry) is None
    assert not entry.live and sender.session.claims == 1


def test_unregistering_hands_back_the_parked_data_connection_to_close() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND STANDBY\n")
    entry = life.register(sender, T0, standby=True)
    data = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    life.join(entry.nameplate, entry.ticket, data)
    assert life.unregister(entry) is data
    assert entry.parked is None and len(life.table) == 0


def test_a_standby_data_connection_parks_then_goes_to_the_claim() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND STANDBY\n")
    entry = life.register(sender, T0, standby=True)
    first = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    assert life.join(entry.nameplate, entry.ticket, first).displaced is None
    assert first.session.phase is Phase.PARKED and first.session.handed_over
    again = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    assert life.join(entry.nameplate, entry.ticket, again).displaced is first

    receiver = connection(f"FERRY 1 RECV {entry.nameplate}\n".encode())
    receiver.session.claim_record_arrived(T0)
    life.claim(entry.nameplate, receiver, T0)
    assert entry.state is State.ACTIVE
    assert life.take_parked(entry) is again and again.session.phase is Phase.JOINED
    assert life.take_parked(entry) is None
    ticket = life.end_claim(entry, None, T0 + 1, refund=True).ticket
    assert ticket and ticket == entry.ticket and entry.claims == 0


def test_a_ticket_is_refused_when_no_receiver_waits_for_a_join() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND\n")
    entry = life.register(sender, T0)
    receiver = connection(f"FERRY 1 RECV {entry.nameplate}\n".encode())
    receiver.session.claim_record_arrived(T0)
    life.claim(entry.nameplate, receiver, T0)
    receiver.session.pipe_started()  # it no longer waits (a forwarded pipe, say)
    data = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    with pytest.raises(Refusal) as refused:
        life.join(entry.nameplate, entry.ticket, data)
    assert refused.value.reason == rv.REASON_BAD_REQUEST
    assert data.session.phase is Phase.JOINING  # not handed to anyone


def test_a_claim_that_ends_after_its_sender_left_frees_nothing_twice() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND STANDBY\n")
    entry = life.register(sender, T0, standby=True)
    receiver = connection(f"FERRY 1 RECV {entry.nameplate}\n".encode())
    receiver.session.claim_record_arrived(T0)
    life.claim(entry.nameplate, receiver, T0)
    life.unregister(entry)
    assert life.end_claim(entry, None, T0 + 1).ticket == ""  # no ticket for a sender that left
    assert len(life.table) == 0 and sender.session.phase is Phase.WAITING


def test_ending_a_claim_hands_the_nameplate_to_the_oldest_queued_claim_in_one_step() -> None:
    life = lifecycle()
    sender = connection(b"FERRY 1 SEND STANDBY\n")
    entry = life.register(sender, T0, standby=True)
    ticket = entry.ticket
    first, second, third = (connection(f"FERRY 1 RECV {entry.nameplate}\n".encode()) for _ in "123")
    for n, receiver in enumerate((first, second, third)):
        receiver.session.claim_record_arrived(T0)
        assert life.claim(entry.nameplate, receiver, T0, source=f"10.0.0.{n}") is entry
    assert entry.receiver is first and first.session.phase is Phase.PAIRING
    assert (second.session.phase, third.session.phase) == (Phase.QUEUED, Phase.QUEUED)
    assert second.session.claims is None  # a queued claim is no claim yet

    ended = life.end_claim(entry, None, T0 + 1, refund=True)
    assert ended.turn is second and ended.refused == []
    assert entry.state is State.CLAIMED and entry.receiver is second
    assert second.session.phase is Phase.PAIRING and second.session.awaits_join
    assert second.session.deadline() == T0 + 1 + CONFIG.join_timeout
    assert sender.session.phase is Phase.CLAIMED
    assert ended.ticket == "" and entry.ticket == ticket  # never used: kept, not re-sent

    # Its turn came before its task ran again: the data connection still finds it.
    data = connection(f"FERRY 1 JOIN {entry.nameplate} {entry.ticket}\n".encode())
    assert life.join(entry.nameplate, entry.ticket, data).entry.receiver is second
    assert life.opened(entry) == [third]  # the data phase: the queue is told "claimed"


def test_a_queued_claim_past_its_wait_is_refused_timeout() -> None:
    life = lifecycle()
    entry = life.register(connection(b"FERRY 1 SEND\n"), T0)
    holder, queued = (connection(f"FERRY 1 RECV {entry.nameplate}\n".encode()) for _ in "12")
    for n, receiver in enumerate((holder, queued)):
        receiver.session.claim_record_arrived(T0)
        life.claim(entry.nameplate, receiver, T0, source=f"10.0.0.{n}")
    assert queued.session.deadline() == T0 + CLAIM_QUEUE_WAIT
    with pytest.raises(Refusal) as refused:
        queued.session.timer_expired(T0 + CLAIM_QUEUE_WAIT)
    assert refused.value.reason == rv.REASON_TIMEOUT
