"""The sessions' transition tables (protocol/transitions.py), tested as tables, as h11's
_state.py is: every state x step either leads where the table says or raises, and
the error says whose fault it is."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ferry.protocol.session
from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol import messages
from ferry.protocol.events import OVER, State
from ferry.protocol.records import RecordType
from ferry.protocol.transitions import RECEIVER, SENDER, Machine, Step
from tests.memory import whole
from tests.unit.test_session import accepted, converse, handshake, make

MACHINES = {"sender": SENDER, "receiver": RECEIVER}


def states_of(machine: Machine) -> set[State]:
    """The states a side can be in: KEY_EXCHANGE and every state a step leads to."""
    return {State.KEY_EXCHANGE} | {
        after for moves in machine.table.values() for after in moves.values()
    }


@pytest.mark.parametrize("side", MACHINES)
def test_every_state_and_step_leads_where_the_table_says_or_raises_by_whose_step_it_is(
    side: str,
) -> None:
    machine = MACHINES[side]
    for state in State:
        for step in Step:
            after = machine.table.get(state, {}).get(step)
            if after is not None:
                assert machine.advance(state, step) is after
                continue
            error = RemoteProtocolError if step in machine.records else LocalProtocolError
            with pytest.raises(error, match="out of turn"):
                machine.advance(state, step)


@pytest.mark.parametrize("side", MACHINES)
def test_every_state_of_a_side_is_reachable_and_can_end(side: str) -> None:
    machine = MACHINES[side]
    states = states_of(machine)
    reach, frontier = {State.KEY_EXCHANGE}, [State.KEY_EXCHANGE]
    while frontier:
        for after in machine.table[frontier.pop()].values():
            if after not in reach:
                reach.add(after)
                frontier.append(after)
    assert reach == states
    for state in states - OVER:  # every live state has a way to DONE, not only to FAILED
        seen, frontier = {state}, [state]
        while frontier and State.DONE not in seen:
            for after in machine.table[frontier.pop()].values():
                if after not in seen:
                    seen.add(after)
                    frontier.append(after)
        assert State.DONE in seen, state


@pytest.mark.parametrize("side", MACHINES)
def test_done_and_failed_take_no_step_and_every_live_state_can_fail(side: str) -> None:
    machine = MACHINES[side]
    for state in states_of(machine):
        moves = machine.table[state]
        if state in OVER:
            assert moves == {}
        else:
            assert moves[Step.FAIL] is moves[Step.GIVE_UP] is State.FAILED


@pytest.mark.parametrize("side", MACHINES)
def test_an_abort_is_opened_only_once_the_peer_proved_the_code(side: str) -> None:
    machine = MACHINES[side]
    for state in (State.KEY_EXCHANGE, State.CONFIRMING):
        assert RecordType.ABORT not in machine.expected(state)
    for state in states_of(machine) - OVER - {State.KEY_EXCHANGE, State.CONFIRMING}:
        assert RecordType.ABORT in machine.expected(state)


def test_the_diagram_shows_every_state() -> None:
    doc = ferry.protocol.session.__doc__
    assert doc is not None
    diagram = doc[doc.index("    sender ") : doc.index("The transitions are")]
    for state in State:
        assert state.name in diagram, state


def test_the_sides_share_no_state_they_do_not_both_reach() -> None:
    shared = states_of(SENDER) & states_of(RECEIVER)
    assert shared == {State.KEY_EXCHANGE, State.CONFIRMING, State.DONE, State.FAILED}


# --- over is over: reading or sending raises -----------------------------------------------


def test_a_done_session_raises_when_read_or_asked_to_send() -> None:
    link = make(b"abc")
    handshake(link)
    link.receiver.refuse(messages.REASON_DECLINED, "no", link.clock.now)
    assert link.receiver.state is State.DONE
    with pytest.raises(LocalProtocolError, match="nothing more to read"):
        link.receiver.next_event()
    with pytest.raises(LocalProtocolError, match="out of turn"):
        link.receiver.accept(link.clock.now)
    with pytest.raises(LocalProtocolError, match="out of turn"):
        link.receiver.acknowledge(link.clock.now)


def test_a_failed_session_raises_when_read_or_asked_to_send() -> None:
    link = accepted(b"abc")
    link.sender.abort(messages.REASON_LOCAL_ERROR, "gone", link.clock.now)
    assert link.sender.state is State.FAILED
    with pytest.raises(LocalProtocolError, match="nothing more to read"):
        link.sender.next_event()
    with pytest.raises(LocalProtocolError, match="out of turn"):
        link.sender.send_data(memoryview(b"abc"), link.clock.now)
    assert link.sender.data_to_send()  # the ABORT
    link.sender.abort(messages.REASON_LOCAL_ERROR, "again", link.clock.now)
    assert link.sender.data_to_send() == b""  # over: nothing more to say


def test_a_session_that_failed_on_a_peers_record_stays_failed() -> None:
    link = accepted(b"abc")
    link.send(link.sender, link.sender.seal_record(RecordType.OFFER, b"{}"))
    with pytest.raises(RemoteProtocolError, match="expected DATA, got OFFER"):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED
    with pytest.raises(LocalProtocolError):
        link.receiver.next_event()


def test_a_whole_conversation_still_ends_done_on_both_sides() -> None:
    assert converse(b"payload", whole) == b"payload"


# --- crypto loads with the first session, not with the modules --------------------------------


def test_the_client_and_its_sessions_import_without_the_crypto_libraries() -> None:
    code = (
        "import sys\n"
        "import ferry.client.sender, ferry.client.receiver, ferry.client.wire\n"
        "import ferry.protocol.sender_session, ferry.protocol.receiver_session\n"
        "loaded = sorted(m for m in ('cryptography', 'spake2', 'ferry.crypto') "
        "if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_done_session_keeps_its_io_timer_for_the_last_write_and_expires_without_raising() -> None:
    link = make(b"abc")
    handshake(link)
    link.receiver.refuse(messages.REASON_DECLINED, "no", link.clock.now)
    deadline = link.receiver.deadline  # the refusal's write is bounded like any other
    assert deadline is not None
    error = link.receiver.expire(deadline)
    assert error is not None and "stopped responding" in error.message
    assert link.receiver.state is State.DONE
