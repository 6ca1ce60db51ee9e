"""Counted capacity (relay/capacity.py): every path gives back, exactly once.

The relay-level check is in the harness: after every relay test, a closed
relay holds nothing (tests/relay/harness.py). Here: the Hold itself, with
returns, exceptions and cancellation, and the web front's sorting task and
a connection's own task, each cancelled before it ever ran.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from ferry.config import RelayConfig
from ferry.relay.capacity import AddressSlots, Capacity, Count, Shares
from ferry_testing.waiting import until
from tests.relay.harness import running_relay


class Boom(Exception):
    pass


def test_a_hold_gives_back_once_however_often_it_is_released() -> None:
    count = Count()
    hold = count.hold()
    assert count.value == 1 and hold.held
    hold.release()
    hold.release()
    assert count.value == 0 and not hold.held


def test_a_with_block_gives_back_on_return_and_on_an_exception() -> None:
    count = Count()

    def returns() -> int:
        with count.hold():
            return count.value

    assert returns() == 1 and count.value == 0
    with pytest.raises(Boom), count.hold():
        raise Boom
    assert count.value == 0


async def test_a_with_block_gives_back_when_its_task_is_cancelled() -> None:
    count = Count()
    shares = Shares(4, 1)
    inside = asyncio.Event()

    async def holder() -> None:
        with count.hold(), shares.hold("192.0.2.1"):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(holder())
    await inside.wait()
    assert (count.value, len(shares)) == (1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (count.value, len(shares)) == (0, 0)


def test_address_slots_refuse_past_the_limit_and_count_nothing_for_unlimited() -> None:
    slots = AddressSlots(2)
    first, second = slots.take("192.0.2.1"), slots.take("192.0.2.1")
    assert first is not None and second is not None
    assert slots.take("192.0.2.1") is None  # nothing taken by a refusal
    free = slots.take("")
    assert free is not None and free.key == "" and len(slots) == 1
    first.release()
    third = slots.take("192.0.2.1")
    assert third is not None
    for slot in (second, third, free):
        slot.release()
    assert len(slots) == 0


def test_a_handed_over_slot_is_given_back_by_its_new_owner_only() -> None:
    slots = AddressSlots(1)
    slot = slots.take("192.0.2.1")
    assert slot is not None
    theirs = slot.hand_over()
    slot.release()  # the old owner's release gives back nothing now
    assert len(slots) == 1 and theirs.key == "192.0.2.1"
    theirs.release()
    assert len(slots) == 0


def test_capacity_says_what_is_held_by_name() -> None:
    capacity = Capacity(RelayConfig())
    assert capacity.held() == {}
    with capacity.pipes.hold(), capacity.transfer_shares.hold("192.0.2.1"):
        assert capacity.held() == {"pipes": 1, "transfer_shares": 1}
    assert capacity.held() == {}


async def test_a_web_sorting_cancelled_before_its_first_step_gives_everything_back() -> None:
    async with running_relay() as r:
        relay = r.relay
        assert relay.web is not None
        admitted: list[object] = []
        sort_then_admit = relay.web.wrap(lambda *args: admitted.append(args))
        ours, theirs = socket.socketpair()
        try:
            slot = relay.gate.per_address.take("192.0.2.7")
            assert slot is not None
            sort_then_admit(ours, "192.0.2.7:4000", slot, False)
            assert (relay.handshaking, relay.open_connections) == (1, 1)
            relay.web.stop_sorting()  # before the sorting task ran at all
            await until(lambda: not relay.capacity.held(), "everything given back")
            assert ours.fileno() == -1  # and its socket closed
            assert not admitted
        finally:
            ours.close()
            theirs.close()


async def test_a_connection_cancelled_before_its_first_step_is_refused_and_closed() -> None:
    async with running_relay(web=False) as r:
        relay = r.relay
        ours, theirs = socket.socketpair()
        try:
            slot = relay.gate.per_address.take("192.0.2.8")
            assert slot is not None
            relay._admit(ours, "192.0.2.8:4000", slot, False)
            assert relay.open_connections == 1
            await relay.close()  # cancels the connection's task before it ever ran
            assert not relay.capacity.held()
            assert relay.metrics.outcomes[("unknown", "refused")] == 1
            theirs.settimeout(5)
            said = theirs.recv(4096)
            assert said.startswith(b"ERROR shutting-down"), said
            theirs.close()  # the relay's linger ends when the client closes
            await until(lambda: ours.fileno() == -1, "its socket closed")
        finally:
            ours.close()
            theirs.close()
