"""The per-connection rules (relay/session.py), driven with plain lines and a number for now.

No sockets, no event loop, no sleeping: time is whatever the test says.
"""

from __future__ import annotations

import pytest

from ferry.config import MAX_PARKED_BYTES, RelayConfig
from ferry.errors import BadRequest, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import logs
from ferry.relay.pipes import PumpEnd
from ferry.relay.session import (
    Ending,
    Phase,
    PipeReport,
    Role,
    SendPing,
    Session,
    error_ending,
    pipe_outcome,
)

CONFIG = RelayConfig(
    handshake_timeout=10.0, ping_interval=30.0, pong_timeout=90.0, join_timeout=15.0
)
T0 = 1000.0
TICKET = "ab" * 16


def new_session() -> Session:
    return Session(CONFIG, T0)


def sender(now: float = T0) -> Session:
    session = new_session()
    assert session.request_received(b"FERRY 1 SEND STANDBY\n", now) == rv.SendRequest(True)
    session.registered(7)
    return session


def refusal_of(call: object) -> tuple[str, str]:
    """(reason, text) of the Refusal or BadRequest a zero-argument call raises."""
    assert callable(call)
    with pytest.raises((Refusal, BadRequest)) as caught:
        call()
    exc = caught.value
    assert isinstance(exc, Refusal | BadRequest)
    return exc.reason, str(exc)


# -- handshake -----------------------------------------------------------------------------


def test_new_session_is_an_unknown_handshake_due_at_the_handshake_timeout() -> None:
    session = new_session()
    assert (session.role, session.phase) == (Role.UNKNOWN, Phase.HANDSHAKE)
    assert session.deadline() == T0 + 10.0


def test_handshake_deadline_passing_refuses_with_timeout() -> None:
    session = new_session()
    reason, text = refusal_of(lambda: session.timer_expired(T0 + 10.0))
    assert (reason, text) == (rv.REASON_TIMEOUT, "handshake timed out")


@pytest.mark.parametrize(
    ("line", "role", "phase", "nameplate"),
    [
        (b"FERRY 1 SEND\n", Role.SENDER, Phase.WAITING, None),
        (b"FERRY 1 RECV 42\n", Role.RECEIVER, Phase.CLAIMING, 42),
        (f"FERRY 1 JOIN 42 {TICKET}\n".encode(), Role.SENDER_DATA, Phase.JOINING, 42),
    ],
    ids=["send", "recv", "join"],
)
def test_first_line_picks_role_and_phase(
    line: bytes, role: Role, phase: Phase, nameplate: int | None
) -> None:
    session = new_session()
    session.request_received(line, T0 + 1)
    assert (session.role, session.phase, session.nameplate) == (role, phase, nameplate)


@pytest.mark.parametrize(
    "line", [b"PONG\n", b"GET / HTTP/1.1\n", b"FERRY 2 SEND\n", b"FERRY 1 RECV 0\n", b"\n"]
)
def test_first_line_that_is_no_request_is_refused(line: bytes) -> None:
    session = new_session()
    reason, _ = refusal_of(lambda: session.request_received(line, T0))
    assert reason in (rv.REASON_BAD_REQUEST, rv.REASON_VERSION)


def test_deadline_of_each_role_after_its_first_line() -> None:
    assert sender(T0 + 2).deadline() == T0 + 2 + 30.0  # the first ping
    receiver = new_session()
    receiver.request_received(b"FERRY 1 RECV 3\n", T0 + 2)
    assert receiver.deadline() == T0 + 2 + 10.0  # its PAKE record, by the handshake timeout
    receiver.claim_record_arrived(T0 + 3)
    assert receiver.deadline() == T0 + 3 + 15.0  # the join
    data = new_session()
    data.request_received(f"FERRY 1 JOIN 3 {TICKET}\n".encode(), T0 + 2)
    assert data.deadline() is None


# -- sender control ------------------------------------------------------------------------


def test_waiting_sender_is_pinged_every_interval_while_it_answers() -> None:
    session = sender()
    now = T0
    for _ in range(10):
        now = session.deadline() or 0.0
        assert session.timer_expired(now) == SendPing()
        session.line_received(b"PONG\n", now + 0.1)
    assert session.deadline() == now + 0.1 + 30.0


def test_waiting_sender_silent_past_pong_timeout_is_lost_at_the_next_tick() -> None:
    session = sender()
    ticks = []
    while True:
        now = session.deadline() or 0.0
        tick = session.timer_expired(now)
        ticks.append((now - T0, tick))
        if isinstance(tick, Ending):
            break
    assert ticks == [
        (30.0, SendPing()),
        (60.0, SendPing()),
        (90.0, SendPing()),  # exactly pong_timeout: not yet
        (120.0, Ending(logs.LOST, "no PONG")),
    ]


def test_waiting_sender_overdue_is_refused_with_timeout() -> None:
    session = sender()
    reason, text = refusal_of(lambda: session.timer_expired(T0 + 30, overdue=True))
    assert (reason, text) == (rv.REASON_TIMEOUT, "waited too long for a receiver")


@pytest.mark.parametrize("phase", ["claimed", "piping"])
def test_busy_sender_is_never_lost_nor_overdue_only_pinged(phase: str) -> None:
    session = sender()
    session.receiver_came()
    if phase == "piping":
        session.pipe_started()
    assert session.timer_expired(T0 + 10_000, overdue=True) == SendPing()
    assert session.deadline() == T0 + 10_000 + 30.0


def test_sender_back_to_waiting_after_a_claim_counts_silence_from_then() -> None:
    session = sender()
    session.receiver_came()
    session.pipe_started()
    session.claim_ended(Ending(logs.HAPPY), T0 + 500)
    assert session.phase is Phase.WAITING
    assert session.timer_expired(T0 + 530) == SendPing()
    assert session.timer_expired(T0 + 590) == SendPing()
    assert session.timer_expired(T0 + 591) == Ending(logs.LOST, "no PONG")


@pytest.mark.parametrize("line", [b"FERRY 1 SEND\n", b"PING\n", b"hello\n"])
def test_sender_control_line_other_than_pong_is_refused(line: bytes) -> None:
    session = sender()
    reason, _ = refusal_of(lambda: session.line_received(line, T0 + 1))
    assert reason == rv.REASON_BAD_REQUEST


def test_sender_leaving_with_no_transfer_is_lonely() -> None:
    session = sender()
    session.receiver_came()
    session.claim_ended(None, T0 + 5)  # the receiver left before the sender joined
    assert session.peer_closed() == Ending(logs.LONELY)


@pytest.mark.parametrize(
    "transfer", [Ending(logs.HAPPY), Ending(logs.ERRORY, "sender spoke last"), Ending(logs.IDLE)]
)
def test_sender_leaving_after_transfers_ends_as_its_last_transfer(transfer: Ending) -> None:
    session = sender()
    for last in (Ending(logs.ERRORY, "socket failed"), transfer):
        session.receiver_came()
        session.pipe_started()
        session.claim_ended(last, T0 + 5)
    assert session.peer_closed() == transfer


def test_drain_cuts_a_running_transfer_and_refuses_the_rest() -> None:
    session = sender()
    assert session.cancelled() == Ending(logs.REFUSED, reason=rv.REASON_SHUTTING_DOWN)
    session.receiver_came()
    assert session.cancelled().outcome == logs.REFUSED
    session.pipe_started()
    assert session.cancelled() == Ending(logs.CUT, "drain deadline")


# -- receiver and sender data --------------------------------------------------------------


def test_receiver_whose_sender_never_joins_is_refused_at_join_timeout() -> None:
    session = new_session()
    session.request_received(b"FERRY 1 RECV 3\n", T0)
    session.claim_record_arrived(T0)
    session.claimed(1)
    assert session.deadline() == T0 + 15.0
    reason, text = refusal_of(lambda: session.timer_expired(T0 + 15.0))
    assert (reason, text) == (rv.REASON_TIMEOUT, "the sender did not answer in time")


def test_a_claim_whose_pake_record_does_not_come_is_refused_at_the_handshake_timeout() -> None:
    session = new_session()
    session.request_received(b"FERRY 1 RECV 3\n", T0)
    assert session.deadline() == T0 + 10.0
    reason, text = refusal_of(lambda: session.timer_expired(T0 + 10.0))
    assert (reason, text) == (rv.REASON_TIMEOUT, "no key exchange message followed the claim")


def test_piping_receiver_has_no_deadline_and_ends_as_its_pipe() -> None:
    session = new_session()
    session.request_received(b"FERRY 1 RECV 3\n", T0)
    session.pipe_started()
    assert session.deadline() is None
    report = PipeReport(PumpEnd.CLOSED, 5000, 60, Role.RECEIVER, Role.SENDER)
    assert session.pipe_ended(report) == Ending(logs.HAPPY)
    assert session.pipe is report


def test_receiver_or_handshake_closing_early_vanished() -> None:
    receiver = new_session()
    receiver.request_received(b"FERRY 1 RECV 3\n", T0)
    assert receiver.peer_closed() == Ending(logs.VANISHED)
    assert new_session().peer_closed() == Ending(logs.VANISHED)


def test_parked_data_connection_may_send_a_few_early_bytes_not_more() -> None:
    session = new_session()
    session.request_received(f"FERRY 1 JOIN 3 {TICKET}\n".encode(), T0)
    session.parked()
    assert session.phase is Phase.PARKED
    assert session.may_park(0, 40)
    assert session.may_park(MAX_PARKED_BYTES - 40, 40)
    assert not session.may_park(MAX_PARKED_BYTES - 39, 40)
    assert not session.may_park(0, 0)  # end of stream: the sender left


def test_socket_errors_map_to_vanished_when_the_peer_left() -> None:
    assert error_ending(104, "ECONNRESET") == Ending(logs.VANISHED, "ECONNRESET")
    assert error_ending(24, "EMFILE") == Ending(logs.ERRORY, "EMFILE")


# -- the pipe outcome rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ended", "last_from", "expected"),
    [
        (PumpEnd.CLOSED, Role.RECEIVER, Ending(logs.HAPPY)),
        (PumpEnd.CLOSED, Role.SENDER, Ending(logs.ERRORY, "sender spoke last")),
        (PumpEnd.CLOSED, None, Ending(logs.ERRORY, "nothing moved")),
        (PumpEnd.ERROR, Role.RECEIVER, Ending(logs.ERRORY, "socket failed")),
        (PumpEnd.IDLE, Role.RECEIVER, Ending(logs.IDLE)),
    ],
    ids=["acked", "sender-last", "silent", "socket-error", "idle"],
)
def test_pipe_outcome_is_happy_only_for_a_clean_close_with_the_receiver_last(
    ended: PumpEnd, last_from: Role | None, expected: Ending
) -> None:
    for closed_first in (Role.SENDER, Role.RECEIVER, None):
        report = PipeReport(ended, 10_000, 100, last_from, closed_first)
        assert pipe_outcome(report) == expected


@pytest.mark.parametrize(
    ("replied", "last_from", "closed_first", "expected"),
    [
        (True, Role.RECEIVER, Role.SENDER, Ending(logs.HAPPY)),  # a tiny file, acked
        (True, Role.RECEIVER, Role.RECEIVER, Ending(logs.HAPPY)),  # a declined offer
        (
            False,
            Role.RECEIVER,
            Role.SENDER,
            Ending(logs.VANISHED, "sender left before the data phase"),
        ),
        (
            False,
            Role.SENDER,
            Role.RECEIVER,
            Ending(logs.VANISHED, "receiver left before the data phase"),
        ),
        (
            True,
            Role.SENDER,
            Role.SENDER,
            Ending(logs.VANISHED, "sender left before the data phase"),
        ),
    ],
    ids=["tiny-file", "declined", "silent-claimer", "claimer-left", "sender-left"],
)
def test_a_pipe_ended_in_its_opening_is_happy_only_if_answered_and_the_receiver_spoke_last(
    replied: bool, last_from: Role, closed_first: Role, expected: Ending
) -> None:
    report = PipeReport(PumpEnd.EARLY, 400, 150, last_from, closed_first, sender_replied=replied)
    assert pipe_outcome(report) == expected
