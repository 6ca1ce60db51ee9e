"""Wire.while_deciding (client/wire.py): a local decision raced against the peer, over a
real socket pair, with a receiver session in DECIDING."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from ferry.client.wire import Wire
from ferry.errors import ConnectionLost, RefusedByPeer, RemoteProtocolError
from ferry.protocol.events import State
from ferry.protocol.records import RecordType
from tests.memory import MemoryTransport
from tests.unit.test_session import handshake, make

WITHIN = 5.0


@pytest.fixture
async def deciding() -> AsyncIterator[tuple[Wire, socket.socket, MemoryTransport]]:
    """A receiver's wire holding an offer (DECIDING); the other end is the sender's socket."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    link = make()
    handshake(link)
    wire = Wire(ours, link.receiver)
    wire.lost_message = "the sender went away"
    try:
        yield wire, theirs, link
    finally:
        ours.close()
        theirs.close()


async def forever() -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_while_deciding_returns_the_decision_while_the_peer_is_silent(deciding) -> None:
    wire, _, link = deciding
    assert await asyncio.wait_for(wire.while_deciding(asyncio.sleep(0.05, "y")), WITHIN) == "y"
    assert link.receiver.state is State.DECIDING  # still free to accept or refuse


async def test_while_deciding_peer_closing_raises_connection_lost_and_cancels_the_decision(
    deciding,
) -> None:
    wire, theirs, _ = deciding
    decision = asyncio.ensure_future(forever())
    theirs.close()
    with pytest.raises(ConnectionLost, match="the sender went away"):
        await asyncio.wait_for(wire.while_deciding(decision), WITHIN)
    assert decision.cancelled()


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
async def test_while_deciding_peer_abort_raises_refused_by_peer_with_its_reason(
    deciding, bytewise: bool
) -> None:
    wire, theirs, link = deciding
    link.sender.abort("error", "no answer in time", link.clock.now)
    abort = link.sender.data_to_send()
    pieces = [abort[i : i + 1] for i in range(len(abort))] if bytewise else [abort]

    async def trickle() -> None:
        for piece in pieces:
            theirs.sendall(piece)
            await asyncio.sleep(0.001)

    feeding = asyncio.create_task(trickle())
    with pytest.raises(RefusedByPeer, match="the sender gave up: no answer in time"):
        await asyncio.wait_for(wire.while_deciding(forever()), WITHIN)
    await feeding


async def test_while_deciding_any_other_record_is_a_protocol_error(deciding) -> None:
    wire, theirs, link = deciding
    theirs.sendall(link.sender.seal_record(RecordType.DATA, b"too early"))
    with pytest.raises(RemoteProtocolError):
        await asyncio.wait_for(wire.while_deciding(forever()), WITHIN)
