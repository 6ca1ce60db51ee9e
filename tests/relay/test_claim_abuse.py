"""A claim that does not get as far as the data phase cannot hold a nameplate.

Issue 10, item 1: a receiver that claims and then stays silent, or a sender
whose key exchange timed out, must not leave a half-closed pipe holding the
nameplate until the idle timeout; a receiver arriving meanwhile is told to
retry, not that the code is taken.
"""

from __future__ import annotations

import pytest

from ferry.config import OPENING_BYTES
from ferry.protocol import rendezvous as rv
from ferry.relay.table import State

from .conditions import until
from .harness import RawClient, claim, close_all, pair, running_relay

pytestmark = pytest.mark.timeout(30)


def reason(line: str) -> str:
    assert line.startswith("ERROR "), line
    return line.split()[1]


async def test_sender_leaving_during_the_opening_ends_the_pipe_and_the_nameplate_waits() -> None:
    async with running_relay(idle_timeout=600) as r:
        control, data, receiver, nameplate = await pair(r.port)
        await data.send(b"sender's PAKE\n")
        assert await receiver.line() == "sender's PAKE"
        data.close()  # its handshake timed out: the silent receiver is not worth waiting for
        assert await receiver.read_until_closed() == b""  # the relay hung up on it too
        await until(lambda: r.relay.table.count(State.WAITING) == 1, "the nameplate to wait")
        honest = await RawClient.connect(r.port)
        await honest.send(claim(nameplate))
        assert (await control.line()).startswith("INCOMING ")
        close_all(control, receiver, honest)


async def test_receiver_leaving_during_the_opening_ends_the_pipe_at_once() -> None:
    async with running_relay(idle_timeout=600) as r:
        control, data, receiver, _ = await pair(r.port)
        await receiver.send(b"receiver's PAKE\n")
        assert await data.line() == "receiver's PAKE"
        receiver.close()
        assert await data.read_until_closed() == b""
        await until(lambda: r.relay.table.count(State.WAITING) == 1, "the nameplate to wait")
        close_all(control, data)


async def test_a_receiver_arriving_while_a_claim_is_opening_is_told_to_retry() -> None:
    async with running_relay() as r:
        control, data, receiver, nameplate = await pair(r.port)
        second = await RawClient.connect(r.port)
        await second.send(claim(nameplate))
        assert reason(await second.line()) == rv.REASON_RETRY
        close_all(control, data, receiver, second)


async def test_a_receiver_arriving_during_the_data_phase_is_told_the_code_is_in_use() -> None:
    async with running_relay() as r:
        control, data, receiver, nameplate = await pair(r.port)
        await data.send(b"x" * OPENING_BYTES + b"\n")
        assert len(await receiver.line()) == OPENING_BYTES
        second = await RawClient.connect(r.port)
        await second.send(claim(nameplate))
        assert reason(await second.line()) == rv.REASON_CLAIMED
        close_all(control, data, receiver, second)


async def test_in_the_data_phase_a_half_close_still_lets_the_other_side_finish() -> None:
    # The receiver's ACK must still reach a sender that has sent everything and
    # shut down its side: ending early is for the opening only.
    async with running_relay() as r:
        control, data, receiver, _ = await pair(r.port)
        await data.send(b"x" * OPENING_BYTES + b"\n")
        assert len(await receiver.line()) == OPENING_BYTES
        data.half_close()
        assert await receiver.read_until_closed() == b""
        await receiver.send(b"ACK\n")
        assert await data.line() == "ACK"
        receiver.close()
        assert await data.read_until_closed() == b""
        close_all(control, data)
