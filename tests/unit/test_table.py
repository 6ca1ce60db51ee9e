"""Unit tests for ferry.relay.table (the pairing table)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from ferry.config import MAX_QUEUED_CLAIMS, RelayConfig
from ferry.errors import Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay.table import Entry, PairingTable, State


def ticket_counter() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"{next(numbers):032x}"


def make_table(**limits: Any) -> PairingTable[str]:
    return PairingTable(RelayConfig(**limits), ticket_counter())


def smallest_free(used: set[int]) -> int:
    return next(n for n in itertools.count(1) if n not in used)


# --- register --------------------------------------------------------------------------------


def test_register_empty_table_gives_nameplate_one_in_waiting_state() -> None:
    table = make_table()
    entry = table.register("sender", now=5.0)
    assert entry.nameplate == 1
    assert entry.state is State.WAITING
    assert entry.sender == "sender"
    assert entry.registered_at == 5.0
    assert entry.receiver is None
    assert entry.ticket == ""
    assert entry.claims == 0
    assert entry.live
    assert len(table) == 1
    assert table.entries() == [entry]


def test_register_three_senders_gives_one_two_three() -> None:
    table = make_table()
    assert [table.register(f"s{i}", 0.0).nameplate for i in range(3)] == [1, 2, 3]


def test_register_after_unregister_reuses_smallest_free_nameplate() -> None:
    table = make_table()
    entries = [table.register(f"s{i}", 0.0) for i in range(5)]
    table.unregister(entries[3])
    table.unregister(entries[1])
    assert table.register("new", 0.0).nameplate == 2
    assert table.register("new", 0.0).nameplate == 4
    assert table.register("new", 0.0).nameplate == 6


def test_register_at_max_waiting_senders_raises_refusal_busy() -> None:
    table = make_table(max_waiting_senders=2)
    table.register("a", 0.0)
    second = table.register("b", 0.0)
    with pytest.raises(Refusal) as caught:
        table.register("c", 0.0)
    assert caught.value.reason == rv.REASON_BUSY
    assert caught.value.text == str(caught.value)
    assert len(table) == 2
    table.unregister(second)
    assert table.register("c", 0.0).nameplate == 2


def test_register_busy_counts_only_waiting_entries() -> None:
    table = make_table(max_waiting_senders=1)
    entry = table.register("a", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    table.join(entry.nameplate, entry.ticket, "data")
    waiting = table.register("b", 0.0)  # "a" is transferring: it no longer counts
    assert waiting.nameplate == 2
    with pytest.raises(Refusal) as caught:
        table.register("c", 0.0)
    assert caught.value.reason == rv.REASON_BUSY
    table.release(entry)  # back to waiting: now two wait, over the limit until one leaves
    assert table.count(State.WAITING) == 2


def test_count_by_state_follows_every_transition() -> None:
    table = make_table()
    a, b = table.register("a", 0.0), table.register("b", 0.0)
    table.claim(a.nameplate, "r", 0.0)
    assert [table.count(s) for s in State] == [1, 1, 0]
    table.join(a.nameplate, a.ticket, "data")
    assert [table.count(s) for s in State] == [1, 0, 1]
    table.unregister(a)  # sender gone mid-transfer: no longer in the table
    assert [table.count(s) for s in State] == [1, 0, 0]
    table.release(a)  # the pipe ends later: counts stay right
    table.unregister(b)
    assert [table.count(s) for s in State] == [0, 0, 0]


def test_register_refused_does_not_consume_a_nameplate() -> None:
    table = make_table(max_waiting_senders=1)
    first = table.register("a", 0.0)
    with pytest.raises(Refusal):
        table.register("b", 0.0)
    table.unregister(first)
    assert table.register("c", 0.0).nameplate == 1


# --- claim -----------------------------------------------------------------------------------


def test_claim_waiting_nameplate_gives_claimed_entry_with_fresh_ticket() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    claimed = table.claim(entry.nameplate, "r", now=3.0)
    assert claimed is entry
    assert entry.state is State.CLAIMED
    assert entry.receiver == "r"
    assert entry.ticket == f"{0:032x}"
    assert entry.claimed_at == 3.0
    assert entry.claims == 1


@pytest.mark.parametrize("nameplate", [0, 2, 999_999_999])
def test_claim_unknown_nameplate_raises_refusal_unknown_nameplate(nameplate: int) -> None:
    table = make_table()
    table.register("s", 0.0)
    with pytest.raises(Refusal) as caught:
        table.claim(nameplate, "r", 0.0)
    assert caught.value.reason == rv.REASON_UNKNOWN_NAMEPLATE
    assert str(nameplate) in caught.value.text


def test_claim_unregistered_nameplate_raises_refusal_unknown_nameplate() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.unregister(entry)
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r", 0.0)
    assert caught.value.reason == rv.REASON_UNKNOWN_NAMEPLATE


def test_claim_second_receiver_while_claimed_raises_refusal_retry() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r1", 0.0)
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r2", 0.0)
    assert caught.value.reason == rv.REASON_RETRY
    assert entry.receiver == "r1"
    assert entry.claims == 1


def test_claim_second_receiver_while_active_and_opening_raises_refusal_retry() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r1", 0.0)
    table.join(entry.nameplate, entry.ticket, "data")
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r2", 0.0)
    assert caught.value.reason == rv.REASON_RETRY


def test_claim_second_receiver_once_the_data_phase_began_raises_refusal_claimed() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r1", 0.0)
    table.join(entry.nameplate, entry.ticket, "data")
    table.opened(entry)
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r2", 0.0)
    assert caught.value.reason == rv.REASON_CLAIMED
    assert entry.state is State.ACTIVE


def test_claim_beyond_max_claims_per_nameplate_raises_refusal_too_many_attempts() -> None:
    table = make_table(max_claims_per_nameplate=2)
    entry = table.register("s", 0.0)
    for receiver in ("r1", "r2"):
        table.claim(entry.nameplate, receiver, 0.0)
        table.release(entry)
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r3", 0.0)
    assert caught.value.reason == rv.REASON_TOO_MANY_ATTEMPTS
    assert entry.state is State.WAITING
    assert entry.claims == 2


def test_claims_released_as_refunds_do_not_count_against_the_nameplate() -> None:
    table = make_table(max_claims_per_nameplate=2)
    entry = table.register("s", 0.0)
    for _ in range(10):
        table.claim(entry.nameplate, "r", 0.0)
        table.release(entry, refund=True)
    assert entry.claims == 0
    table.release(entry, refund=True)  # no claim to refund: nothing changes
    assert entry.claims == 0


def test_claim_limit_is_per_nameplate_lifetime_not_per_number() -> None:
    table = make_table(max_claims_per_nameplate=1)
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    table.release(entry)
    table.unregister(entry)
    fresh = table.register("s2", 0.0)
    assert fresh.nameplate == entry.nameplate
    assert table.claim(fresh.nameplate, "r", 0.0) is fresh


def test_claim_each_claim_gets_a_new_ticket() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r1", 0.0)
    first = entry.ticket
    table.release(entry)
    table.claim(entry.nameplate, "r2", 0.0)
    assert entry.ticket != first


# --- join ------------------------------------------------------------------------------------


def test_join_with_claims_ticket_gives_active_entry_and_consumes_ticket() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    ticket = entry.ticket
    assert table.join(entry.nameplate, ticket, "data") is entry
    assert entry.state is State.ACTIVE
    assert entry.ticket == ""
    assert entry.receiver == "r"


def test_join_same_ticket_twice_raises_refusal_stale_ticket() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    ticket = entry.ticket
    table.join(entry.nameplate, ticket, "data")
    with pytest.raises(Refusal) as caught:
        table.join(entry.nameplate, ticket, "data")
    assert caught.value.reason == rv.REASON_STALE_TICKET


@pytest.mark.parametrize("ticket", ["", "f" * 32, f"{1:032x}"])
def test_join_with_wrong_ticket_raises_refusal_and_keeps_claim(ticket: str) -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    good = entry.ticket
    with pytest.raises(Refusal) as caught:
        table.join(entry.nameplate, ticket, "data")
    assert caught.value.reason == rv.REASON_BAD_REQUEST
    assert entry.state is State.CLAIMED
    assert table.join(entry.nameplate, good, "data") is entry


def test_join_right_ticket_on_another_nameplate_raises_refusal() -> None:
    table = make_table()
    first, second = table.register("s1", 0.0), table.register("s2", 0.0)
    table.claim(first.nameplate, "r1", 0.0)
    table.claim(second.nameplate, "r2", 0.0)
    with pytest.raises(Refusal):
        table.join(second.nameplate, first.ticket, "data")


def test_join_waiting_nameplate_raises_refusal() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    with pytest.raises(Refusal):
        table.join(entry.nameplate, "", "data")


def test_join_unknown_nameplate_raises_refusal() -> None:
    with pytest.raises(Refusal) as caught:
        make_table().join(1, "0" * 32, "data")
    assert caught.value.reason == rv.REASON_BAD_REQUEST


def test_join_with_ticket_of_released_claim_raises_refusal() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    stale = entry.ticket
    table.release(entry)
    with pytest.raises(Refusal):
        table.join(entry.nameplate, stale, "data")
    table.claim(entry.nameplate, "r2", 0.0)
    with pytest.raises(Refusal):
        table.join(entry.nameplate, stale, "data")


# --- release / unregister --------------------------------------------------------------------


@pytest.mark.parametrize("join", [False, True], ids=["claimed", "active"])
def test_release_returns_entry_to_waiting_and_allows_next_claim(join: bool) -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r1", 0.0)
    if join:
        table.join(entry.nameplate, entry.ticket, "data")
    table.release(entry)
    assert entry.state is State.WAITING
    assert entry.receiver is None
    assert entry.ticket == ""
    assert table.claim(entry.nameplate, "r2", 0.0).receiver == "r2"


def test_unregister_removes_entry_and_marks_it_dead() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.unregister(entry)
    assert len(table) == 0
    assert table.entries() == []
    assert not entry.live


def test_unregister_twice_does_not_free_the_number_twice() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.unregister(entry)
    table.unregister(entry)
    assert [table.register(f"s{i}", 0.0).nameplate for i in range(3)] == [1, 2, 3]


def test_unregister_during_active_then_release_leaves_new_entry_with_same_number_alone() -> None:
    table = make_table()
    old = table.register("old-sender", 0.0)
    table.claim(old.nameplate, "old-receiver", 0.0)
    table.join(old.nameplate, old.ticket, "data")
    table.unregister(old)  # the sender's control connection closed mid-transfer

    new = table.register("new-sender", 1.0)
    assert new.nameplate == old.nameplate
    table.claim(new.nameplate, "new-receiver", 1.0)
    new_ticket = new.ticket

    table.release(old)  # the old pipe finishes afterwards
    table.unregister(old)  # and its cleanup runs again

    assert table.entries() == [new]
    assert new.live
    assert new.state is State.CLAIMED
    assert new.receiver == "new-receiver"
    assert table.join(new.nameplate, new_ticket, "data") is new
    # The number is still in use, so it must not be handed out again.
    assert table.register("third", 2.0).nameplate == new.nameplate + 1


def test_unregister_during_claim_then_release_does_not_resurrect_entry() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "r", 0.0)
    table.unregister(entry)
    table.release(entry)
    assert len(table) == 0
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "r2", 0.0)
    assert caught.value.reason == rv.REASON_UNKNOWN_NAMEPLATE


# --- count / overdue -------------------------------------------------------------------------


def test_count_by_state_tracks_transitions() -> None:
    table = make_table()
    a, b, _ = (table.register(name, 0.0) for name in "abc")
    table.claim(a.nameplate, "ra", 0.0)
    table.claim(b.nameplate, "rb", 0.0)
    table.join(b.nameplate, b.ticket, "data")
    assert table.count(State.WAITING) == 1
    assert table.count(State.CLAIMED) == 1
    assert table.count(State.ACTIVE) == 1


def test_overdue_waiting_sender_is_false_up_to_max_wait_and_true_after() -> None:
    table = make_table(max_sender_wait=60.0)
    entry = table.register("s", now=1000.0)
    assert not table.overdue(entry, 1000.0)
    assert not table.overdue(entry, 1060.0)
    assert table.overdue(entry, 1060.5)
    assert table.overdue(entry, 10_000.0)


@pytest.mark.parametrize("join", [False, True], ids=["claimed", "active"])
def test_overdue_sender_busy_with_receiver_is_not_overdue(join: bool) -> None:
    table = make_table(max_sender_wait=60.0)
    entry = table.register("s", now=0.0)
    table.claim(entry.nameplate, "r", 0.0)
    if join:
        table.join(entry.nameplate, entry.ticket, "data")
    assert not table.overdue(entry, 1_000_000.0)
    table.release(entry)
    assert table.overdue(entry, 1_000_000.0)


def test_overdue_is_measured_from_registration_not_last_claim() -> None:
    table = make_table(max_sender_wait=60.0)
    entry = table.register("s", now=0.0)
    table.claim(entry.nameplate, "r", now=59.0)
    table.release(entry)
    assert table.overdue(entry, 61.0)


# --- nameplate allocation properties ---------------------------------------------------------


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=80))
def test_register_any_register_unregister_sequence_gives_smallest_free_nameplate(
    ops: list[tuple[bool, int]],
) -> None:
    table = make_table()
    live: dict[int, Entry[str]] = {}
    for is_register, pick in ops:
        if is_register or not live:
            entry = table.register("s", 0.0)
            assert entry.nameplate == smallest_free(set(live))
            assert entry.nameplate not in live
            live[entry.nameplate] = entry
        else:
            victim = sorted(live)[pick % len(live)]
            table.unregister(live.pop(victim))
        assert {e.nameplate for e in table.entries()} == set(live)


class PairingTableMachine(RuleBasedStateMachine):
    """Random register/claim/join/release/unregister sequences, stale entries included."""

    entries = Bundle("entries")

    def __init__(self) -> None:
        super().__init__()
        self.table = make_table(max_waiting_senders=8, max_claims_per_nameplate=3)
        self.live: dict[int, Entry[str]] = {}
        self.dead: list[Entry[str]] = []
        self.now = 0.0

    @rule(target=entries)
    def register(self) -> Entry[str]:
        self.now += 1.0
        waiting = sum(1 for e in self.live.values() if e.state is State.WAITING)
        if waiting >= 8:
            with pytest.raises(Refusal) as caught:
                self.table.register("s", self.now)
            assert caught.value.reason == rv.REASON_BUSY
            return next(iter(self.live.values()))
        entry = self.table.register("s", self.now)
        assert entry.nameplate == smallest_free(set(self.live))
        self.live[entry.nameplate] = entry
        return entry

    @rule(nameplate=st.integers(1, 10))
    def claim(self, nameplate: int) -> None:
        entry = self.live.get(nameplate)
        claims_before = entry.claims if entry else 0
        try:
            claimed = self.table.claim(nameplate, "r", self.now)
        except Refusal as refusal:
            if entry is None:
                assert refusal.reason == rv.REASON_UNKNOWN_NAMEPLATE
            elif entry.state is not State.WAITING:
                expected = rv.REASON_RETRY if entry.opening else rv.REASON_CLAIMED
                assert refusal.reason == expected
            else:
                assert refusal.reason == rv.REASON_TOO_MANY_ATTEMPTS
                assert entry.claims == 3
            if entry is not None:
                assert entry.claims == claims_before
        else:
            assert claimed is entry
            assert claimed.state is State.CLAIMED
            assert claimed.claims == claims_before + 1 <= 3

    @rule(entry=entries, right_ticket=st.booleans())
    def join(self, entry: Entry[str], right_ticket: bool) -> None:
        ticket = entry.ticket if right_ticket else "e" * 32
        should_work = (
            right_ticket
            and entry.live
            and self.live.get(entry.nameplate) is entry
            and entry.state is State.CLAIMED
        )
        if should_work:
            assert self.table.join(entry.nameplate, ticket, "data") is entry
            assert entry.state is State.ACTIVE
            assert entry.ticket == ""
        else:
            current = self.live.get(entry.nameplate)
            before = (current.state, current.ticket) if current else None
            with pytest.raises(Refusal):
                self.table.join(entry.nameplate, ticket, "data")
            if current is not None:
                assert (current.state, current.ticket) == before

    @rule(entry=entries, refund=st.booleans())
    def release(self, entry: Entry[str], refund: bool) -> None:
        claims = entry.claims
        refunded = refund and entry.state is not State.WAITING
        self.table.release(entry, refund)
        assert entry.state is State.WAITING
        assert entry.claims == claims - refunded >= 0

    @rule(entry=entries)
    def opened(self, entry: Entry[str]) -> None:
        self.table.opened(entry)
        assert not entry.opening

    @rule(entry=consumes(entries))
    def unregister(self, entry: Entry[str]) -> None:
        if self.live.get(entry.nameplate) is entry:
            del self.live[entry.nameplate]
            self.dead.append(entry)
        self.table.unregister(entry)
        assert not entry.live

    @precondition(lambda self: bool(self.dead))
    @rule(pick=st.integers(0, 100))
    def release_stale(self, pick: int) -> None:
        stale = self.dead[pick % len(self.dead)]
        before = {n: (e.state, e.receiver, e.ticket) for n, e in self.live.items()}
        self.table.release(stale)
        self.table.unregister(stale)
        assert {n: (e.state, e.receiver, e.ticket) for n, e in self.live.items()} == before

    @invariant()
    def table_matches_model(self) -> None:
        entries = self.table.entries()
        assert len(entries) == len(self.table) == len(self.live)
        assert {e.nameplate: e for e in entries} == self.live
        assert all(e.live for e in entries)
        assert not any(e.live for e in self.dead)
        for state in State:
            expected = sum(1 for e in self.live.values() if e.state is state)
            assert self.table.count(state) == expected

    @invariant()
    def nameplates_in_use_are_unique(self) -> None:
        numbers = [e.nameplate for e in self.table.entries()]
        assert len(numbers) == len(set(numbers))
        assert all(n >= 1 for n in numbers)


PairingTableMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestPairingTableStateMachine = PairingTableMachine.TestCase


# --- standby senders: data connections parked ahead of the receiver ----------------------


def test_standby_register_issues_a_ticket_at_once() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    assert entry.standby and entry.ticket
    assert table.register("plain", 0.0).ticket == ""


def test_standby_join_before_any_claim_parks_the_connection_still_waiting() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    assert table.join(entry.nameplate, entry.ticket, "data") is entry
    assert entry.parked == "data" and entry.state is State.WAITING
    assert table.count(State.WAITING) == 1


def test_standby_claim_with_a_parked_connection_goes_straight_to_active() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    table.join(entry.nameplate, entry.ticket, "data")
    assert table.claim(entry.nameplate, "r", 1.0) is entry
    assert entry.state is State.ACTIVE and entry.ticket == ""
    assert table.take_parked(entry) == "data"
    assert table.take_parked(entry) is None
    assert [table.count(s) for s in State] == [0, 0, 1]


def test_standby_claim_without_parked_connection_keeps_the_issued_ticket_for_the_join() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    issued = entry.ticket
    table.claim(entry.nameplate, "r", 1.0)
    assert (entry.state, entry.ticket) == (State.CLAIMED, issued)
    assert table.join(entry.nameplate, issued, "data") is entry
    assert (entry.state, entry.parked) == (State.ACTIVE, None)


def test_standby_same_ticket_again_replaces_the_parked_connection() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    table.join(entry.nameplate, entry.ticket, "data")
    assert entry.displaced is None
    table.join(entry.nameplate, entry.ticket, "data2")  # the sender reconnected
    assert entry.parked == "data2" and entry.displaced == "data"


def test_standby_other_ticket_cannot_displace_the_parked_connection() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    table.join(entry.nameplate, entry.ticket, "data")
    with pytest.raises(Refusal) as caught:
        table.join(entry.nameplate, "f" * 32, "intruder")
    assert caught.value.reason == rv.REASON_BAD_REQUEST
    assert entry.parked == "data" and entry.displaced is None


def test_standby_unpark_keeps_the_ticket_for_a_reconnect() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    ticket = entry.ticket
    table.join(entry.nameplate, ticket, "data")
    table.unpark(entry, "other")  # not the parked one: no effect
    assert entry.parked == "data"
    table.unpark(entry, "data")
    assert entry.parked is None
    assert table.join(entry.nameplate, ticket, "again") is entry and entry.parked == "again"


def test_standby_release_issues_a_fresh_ticket_and_the_old_one_is_dead() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    old = entry.ticket
    table.join(entry.nameplate, old, "data")
    table.claim(entry.nameplate, "r", 1.0)
    new = table.release(entry)
    assert new and new != old and entry.ticket == new and entry.state is State.WAITING
    with pytest.raises(Refusal):
        table.join(entry.nameplate, old, "data")


def test_release_of_a_plain_sender_or_a_gone_standby_sender_issues_no_ticket() -> None:
    table = make_table()
    plain = table.register("p", 0.0)
    table.claim(plain.nameplate, "r", 0.0)
    assert table.release(plain) == ""
    standby = table.register("s", 0.0, standby=True)
    table.claim(standby.nameplate, "r", 0.0)
    table.unregister(standby)
    assert table.release(standby) == ""


def test_plain_sender_join_while_waiting_is_refused() -> None:
    table = make_table()
    entry = table.register("p", 0.0)
    with pytest.raises(Refusal):
        table.join(entry.nameplate, "0" * 32, "data")
    assert entry.parked is None


# --- the claim queue: first come, first served -----------------------------------------------


def test_claims_on_an_opening_nameplate_queue_and_take_their_turns_in_order() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    table.claim(entry.nameplate, "r1", 0.0, source="a1")
    for who in ("r2", "r3", "r4"):
        assert table.claim(entry.nameplate, who, 1.0, source=who) is entry
    assert entry.receiver == "r1" and [r for r, _ in entry.queue] == ["r2", "r3", "r4"]
    turns = []
    for _ in range(3):
        table.release(entry, refund=True)
        turns.append(table.take_turn(entry, 2.0))
        assert entry.state is State.CLAIMED and entry.receiver == turns[-1]
        with pytest.raises(Refusal) as caught:  # a newcomer without a source cannot cut in
            table.claim(entry.nameplate, "late", 2.0)
        assert caught.value.reason == rv.REASON_RETRY
    assert turns == ["r2", "r3", "r4"]
    table.release(entry, refund=True)
    assert table.take_turn(entry, 3.0) is None and entry.state is State.WAITING


def test_one_queued_claim_per_source_address_and_at_most_max_queued_claims() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "holder", 0.0, source="h")
    table.claim(entry.nameplate, "first", 0.0, source="x")
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "second", 0.0, source="x")
    assert caught.value.reason == rv.REASON_RETRY
    table.claim(entry.nameplate, "unlimited-1", 0.0, source="")  # "": not limited
    table.claim(entry.nameplate, "unlimited-2", 0.0, source="")
    for n in range(MAX_QUEUED_CLAIMS - 3):
        table.claim(entry.nameplate, f"r{n}", 0.0, source=f"s{n}")
    assert len(entry.queue) == MAX_QUEUED_CLAIMS
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "one-too-many", 0.0, source="new")
    assert caught.value.reason == rv.REASON_RETRY


def test_a_queued_claim_that_leaves_gives_up_its_place() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "holder", 0.0, source="h")
    table.claim(entry.nameplate, "leaver", 0.0, source="l")
    table.claim(entry.nameplate, "stayer", 0.0, source="s")
    table.leave_queue(entry, "leaver")
    table.release(entry)
    assert table.take_turn(entry, 1.0) == "stayer"


def test_opened_hands_back_the_queue_to_be_told_claimed() -> None:
    table = make_table()
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "holder", 0.0, source="h")
    table.claim(entry.nameplate, "q1", 0.0, source="1")
    table.claim(entry.nameplate, "q2", 0.0, source="2")
    assert table.opened(entry) == ["q1", "q2"] and not entry.queue
    with pytest.raises(Refusal) as caught:
        table.claim(entry.nameplate, "q3", 0.0, source="3")
    assert caught.value.reason == rv.REASON_CLAIMED


def test_no_turn_once_the_claim_budget_is_spent() -> None:
    table = make_table(max_claims_per_nameplate=1)
    entry = table.register("s", 0.0)
    table.claim(entry.nameplate, "guess", 0.0, source="g")
    table.claim(entry.nameplate, "next", 0.0, source="n")
    table.release(entry)  # the guess counted
    assert table.take_turn(entry, 1.0) is None
    assert table.drain_queue(entry) == ["next"]


def test_a_standby_ticket_no_join_used_stays_valid_when_its_claim_ends() -> None:
    table = make_table()
    entry = table.register("s", 0.0, standby=True)
    ticket = entry.ticket
    table.claim(entry.nameplate, "left-early", 0.0)  # nothing parked: waits for the join
    assert table.release(entry, refund=True) == ""  # no new TICKET to send
    assert entry.ticket == ticket
    assert table.join(entry.nameplate, ticket, "data") is entry  # the late join parks
    assert entry.parked == "data"


def test_a_used_or_replaced_ticket_is_refused_stale_not_bad_request() -> None:
    table = make_table()
    plain = table.register("plain", 0.0)
    table.claim(plain.nameplate, "r", 0.0)
    replaced = plain.ticket
    table.release(plain)  # the receiver left before the join: its ticket is gone
    standby = table.register("standby", 0.0, standby=True)
    used = standby.ticket
    table.join(standby.nameplate, used, "parked")
    table.claim(standby.nameplate, "r", 0.0)  # takes the parked connection
    for nameplate, ticket in ((plain.nameplate, replaced), (standby.nameplate, used)):
        with pytest.raises(Refusal) as caught:
            table.join(nameplate, ticket, "late")
        assert caught.value.reason == rv.REASON_STALE_TICKET
    with pytest.raises(Refusal) as caught:  # never a ticket of this nameplate's
        table.join(standby.nameplate, replaced, "forged")
    assert caught.value.reason == rv.REASON_BAD_REQUEST
