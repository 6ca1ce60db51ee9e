"""The sender's ticket gate (client/tickets.py): data connections at once, and their pace."""

from __future__ import annotations

from ferry.client.tickets import TicketGate


def test_past_max_open_a_ticket_is_ignored_until_an_attempt_ends() -> None:
    gate = TicketGate(max_open=2, burst=10, interval=1.0)
    assert gate.admit(0.0) == 0.0
    assert gate.admit(0.0) == 0.0
    assert gate.admit(0.0) is None
    gate.done()
    assert gate.admit(0.0) == 0.0


def test_after_the_burst_tickets_wait_their_turn() -> None:
    gate = TicketGate(max_open=100, burst=2, interval=0.5)
    assert [gate.admit(0.0) for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]
    # Two seconds later the queue has drained and two tokens are back (0 + 4 - 2).
    assert gate.admit(3.0) == 0.0
    assert gate.admit(3.0) == 0.0
    assert gate.admit(3.0) == 0.5


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    gate = TicketGate(max_open=100, burst=1, interval=1.0)
    assert gate.admit(0.0) == 0.0
    assert gate.admit(1000.0) == 0.0
    assert gate.admit(1000.0) == 1.0
