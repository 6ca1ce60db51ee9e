"""Standby senders: the data connection waits at the relay before the receiver comes.

In-process relay, raw clients speaking the rendezvous lines by hand.
"""

from __future__ import annotations

import socket

import pytest

from ferry.relay.server import Relay
from ferry_testing.waiting import until
from tests.relay.harness import (
    PAKE_RECORD,
    RawClient,
    claim,
    close_all,
    running_relay,
    standby_sender,
)

pytestmark = pytest.mark.timeout(30)

FLIGHT = b"\x00\x00\x00\x21\x01\x00" + b"P" * 33  # stands in for a PAKE record


async def _park(port: int, nameplate: int, ticket: str, early: bytes = FLIGHT) -> RawClient:
    data = await RawClient.connect(port)
    await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n".encode() + early)
    return data


async def _parked(relay: Relay, nameplate: int, parked: bool = True) -> None:
    """Wait until the nameplate has (or no longer has) a parked data connection."""
    entry = next(e for e in relay.table.entries() if e.nameplate == nameplate)
    await until(lambda: (entry.parked is not None) is parked, f"parked={parked}")


async def _nothing_to_read(client: RawClient, wait: float = 0.2) -> bool:
    try:
        await client.line(timeout=wait)
    except TimeoutError:
        return True
    return False


async def test_parked_data_connection_is_paired_the_moment_a_receiver_claims() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        data = await _park(relay.port, nameplate, ticket)
        assert await _nothing_to_read(data)  # parked: no answer until a receiver comes
        receiver = await RawClient.connect(relay.port)
        await receiver.send(claim(nameplate) + b"from-receiver")
        assert await receiver.line() == "PAIRED"
        assert await data.line() == "PAIRED"
        # The sender's early flight reaches the receiver first, and the pipe works.
        await data.send(b"|more")
        data.half_close()
        receiver.half_close()
        assert await receiver.read_until_closed() == FLIGHT + b"|more"
        assert await data.read_until_closed() == PAKE_RECORD + b"from-receiver"
        # No INCOMING (the ticket came ahead); the attempt over, the next ticket.
        assert (await control.line()).startswith("TICKET ")
        close_all(control, data, receiver)


async def test_finished_attempt_gives_a_fresh_ticket_and_the_old_one_is_refused_stale() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        data = await _park(relay.port, nameplate, ticket)
        receiver = await RawClient.connect(relay.port)
        await receiver.send(claim(nameplate))
        assert await receiver.line() == "PAIRED"
        receiver.close()  # say, a wrong code: that attempt ends
        await data.read_until_closed()
        fresh = await control.line()
        assert fresh.startswith("TICKET ") and fresh.split()[1] != ticket
        stale = await _park(relay.port, nameplate, ticket)
        assert (await stale.line()).startswith("ERROR stale-ticket")
        again = await _park(relay.port, nameplate, fresh.split()[1])
        second = await RawClient.connect(relay.port)
        await second.send(claim(nameplate))
        assert await second.line() == "PAIRED"
        assert await again.line() == "PAIRED"
        close_all(control, data, stale, again, second)


async def test_lost_parked_connection_is_unparked_and_its_ticket_still_joins() -> None:
    async with running_relay(join_timeout=5.0) as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        lost = await _park(relay.port, nameplate, ticket)
        await _parked(relay.relay, nameplate)
        lost.reset()
        await _parked(relay.relay, nameplate, parked=False)
        receiver = await RawClient.connect(relay.port)
        await receiver.send(claim(nameplate))
        assert await _nothing_to_read(receiver)  # waits for the sender's data connection
        # ...which the relay asks for, as from any sender, with the standby ticket.
        assert await control.line() == f"INCOMING {ticket}"
        data = await _park(relay.port, nameplate, ticket)
        assert await receiver.line() == "PAIRED"
        assert await data.line() == "PAIRED"
        close_all(control, receiver, data)


async def test_parked_connection_that_floods_is_dropped() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        data = await _park(relay.port, nameplate, ticket)
        await _parked(relay.relay, nameplate)  # sent with the JOIN, it is refused sooner
        await data.send(b"x" * 20_000)
        assert await data.read_until_closed() == b""
        close_all(control, data)


async def test_sender_leaving_closes_its_parked_connection() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        data = await _park(relay.port, nameplate, ticket)
        await _parked(relay.relay, nameplate)
        control.close()
        assert await data.read_until_closed() == b""
        await until(lambda: relay.relay.open_connections == 0, "every connection released")
        data.close()


async def test_same_ticket_again_replaces_the_parked_connection_and_closes_the_old() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        stale = await _park(relay.port, nameplate, ticket)
        fresh = await _park(relay.port, nameplate, ticket)  # the sender reconnected
        assert await stale.read_until_closed() == b""
        receiver = await RawClient.connect(relay.port)
        await receiver.send(claim(nameplate))
        assert await receiver.line() == "PAIRED"
        assert await fresh.line() == "PAIRED"
        close_all(control, stale, fresh, receiver)


async def test_parked_connection_has_keepalive_probes_under_nat_timeouts() -> None:
    async with running_relay() as relay:
        control, nameplate, ticket = await standby_sender(relay.port)
        data = await _park(relay.port, nameplate, ticket)
        await _parked(relay.relay, nameplate)
        entry = next(e for e in relay.relay.table.entries() if e.nameplate == nameplate)
        assert entry.parked is not None
        sock = entry.parked.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) <= 30
        close_all(control, data)
