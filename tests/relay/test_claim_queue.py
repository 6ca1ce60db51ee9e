"""Claims on a nameplate are served first come, first served.

A claim whose PAKE record is whole, arriving while another claim on the
nameplate is still in its opening, waits in the nameplate's queue instead of
being told `retry`; the moment the claim ahead ends, the oldest queued claim
takes the nameplate, so an honest receiver waits behind the claims that were
there before it and no newcomer can outrace it. Each source address has at
most one claim queued; a queued claim's wait is bounded (CLAIM_QUEUE_WAIT).

The sender here is raw: it opens a data connection for each ticket it is
given (once per ticket, as ./send does) and drops it as soon as the claim's
PAKE record arrives, as ./send drops a claim carrying an invalid point.
"""

from __future__ import annotations

import pytest

from ferry.config import CLAIM_QUEUE_WAIT
from ferry.protocol import rendezvous as rv
from ferry.protocol.records import Header, RecordType
from ferry.relay.connection import Connection
from ferry.relay.server import Relay
from ferry.relay.table import Entry
from ferry_testing.waiting import until

from .clock import ClockLoop, run_on_clock, turns
from .harness import RawClient, close_all, running_relay, standby_sender

pytestmark = pytest.mark.timeout(60)

FLIGHT = b"sender-flight"
HONEST = 0


def record(who: int) -> bytes:
    """A well-framed PAKE record that says which claimer sent it (who: 0 to 255)."""
    return Header(33, RecordType.PAKE, 0).encode() + b"B" + bytes([who]) * 32


async def claimer(port: int, nameplate: int, who: int, source: str) -> RawClient:
    client = await RawClient.connect(port, source)
    await client.send(f"FERRY 1 RECV {nameplate}\n".encode() + record(who))
    return client


async def join(port: int, nameplate: int, ticket: str) -> RawClient:
    data = await RawClient.connect(port)
    await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n".encode() + FLIGHT)
    return data


def entry_of(relay: Relay, nameplate: int) -> Entry[Connection]:
    return next(e for e in relay.table.entries() if e.nameplate == nameplate)


def queued(relay: Relay, nameplate: int) -> int:
    return len(getattr(entry_of(relay, nameplate), "queue", ()))


async def serve_until_honest(
    port: int, control: RawClient, nameplate: int, first: RawClient
) -> tuple[list[int], list[str]]:
    """Serve claims as ./send serves invalid points, until the honest one is paired.

    Returns who was paired, in order, and every line a data connection got
    that was not PAIRED (a refused ticket)."""
    served: list[int] = []
    refused: list[str] = []
    data = first
    tickets: set[str] = set()
    while True:
        paired = await data.line()
        if paired != "PAIRED":
            refused.append(paired)
        else:
            pake = await data.exactly(len(record(0)))
            served.append(pake[-1])
            if pake[-1] == HONEST:
                data.close()
                return served, refused
        data.close()  # an invalid point: the sender drops that claim at once
        # The next ticket: a TICKET after the attempt, and maybe an INCOMING for
        # the same ticket (the next claim came first); one connection per ticket.
        while True:
            kind, ticket = (await control.line()).split()
            assert kind in ("TICKET", "INCOMING"), kind
            if ticket not in tickets:
                break
        tickets.add(ticket)
        data = await join(port, nameplate, ticket)


async def test_an_honest_claim_is_paired_after_the_claims_ahead_and_before_later_ones() -> None:
    async with running_relay() as r:
        control, nameplate, ticket = await standby_sender(r.port)
        data = await join(r.port, nameplate, ticket)
        await until(lambda: entry_of(r.relay, nameplate).parked is not None, "a parked join")
        ahead = [await claimer(r.port, nameplate, who, f"127.0.0.{who + 1}") for who in range(1, 6)]
        await until(lambda: queued(r.relay, nameplate) == 4, "four claims to queue")
        honest = await claimer(r.port, nameplate, HONEST, "127.0.0.1")
        await until(lambda: queued(r.relay, nameplate) == 5, "the honest claim to queue")
        later = [
            await claimer(r.port, nameplate, who, f"127.0.0.{who + 1}") for who in range(6, 11)
        ]
        await until(lambda: queued(r.relay, nameplate) == 10, "the later claims to queue")

        served, refused = await serve_until_honest(r.port, control, nameplate, data)

        assert served == [1, 2, 3, 4, 5, HONEST]
        assert refused == []  # no data connection came with a spent ticket
        assert await honest.line() == "PAIRED"
        for client in ahead:  # each was paired, and dropped by the sender
            assert await client.line() == "PAIRED"
            await client.read_until_closed()
        assert queued(r.relay, nameplate) == 5  # the later ones still wait, none was refused
        close_all(control, honest, *ahead, *later)


async def test_a_second_claim_from_an_address_with_one_queued_is_told_retry() -> None:
    async with running_relay() as r:
        control, nameplate, ticket = await standby_sender(r.port)
        data = await join(r.port, nameplate, ticket)
        await until(lambda: entry_of(r.relay, nameplate).parked is not None, "a parked join")
        holder = await claimer(r.port, nameplate, 1, "127.0.0.2")
        waiting = await claimer(r.port, nameplate, 2, "127.0.0.3")
        await until(lambda: queued(r.relay, nameplate) == 1, "a claim to queue")
        again = await claimer(r.port, nameplate, 3, "127.0.0.3")
        assert (await again.line()).startswith(f"ERROR {rv.REASON_RETRY} ")
        assert queued(r.relay, nameplate) == 1
        close_all(control, data, holder, waiting, again)


async def test_queued_claims_are_told_sender_gone_when_the_sender_leaves() -> None:
    async with running_relay() as r:
        control, nameplate, ticket = await standby_sender(r.port)
        data = await join(r.port, nameplate, ticket)
        await until(lambda: entry_of(r.relay, nameplate).parked is not None, "a parked join")
        holder = await claimer(r.port, nameplate, 1, "127.0.0.2")
        waiting = await claimer(r.port, nameplate, 2, "127.0.0.3")
        await until(lambda: queued(r.relay, nameplate) == 1, "a claim to queue")
        control.close()  # and its data connection: the sender is gone
        data.close()
        assert (await waiting.line()).startswith(f"ERROR {rv.REASON_SENDER_GONE} ")
        close_all(holder, waiting)


async def test_a_claim_ending_without_a_join_keeps_the_standby_ticket_valid() -> None:
    async with running_relay(join_timeout=30) as r:
        control, nameplate, ticket = await standby_sender(r.port)
        leaving = await claimer(r.port, nameplate, 1, "127.0.0.2")
        assert (await control.line()) == f"INCOMING {ticket}"  # nothing parked yet
        leaving.close()  # the claim ends before the sender's connection came
        await until(lambda: entry_of(r.relay, nameplate).receiver is None, "the claim to end")
        # The sender's connection for that ticket arrives now: it parks, and pairs
        # the next claim. No new ticket was issued meanwhile.
        data = await join(r.port, nameplate, ticket)
        await until(lambda: entry_of(r.relay, nameplate).parked is not None, "a parked join")
        honest = await claimer(r.port, nameplate, HONEST, "127.0.0.1")
        assert await honest.line() == "PAIRED"
        assert await data.line() == "PAIRED"
        close_all(control, data, honest)


def test_a_queued_claim_whose_turn_does_not_come_is_refused_timeout() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay() as r:
            control, nameplate, ticket = await standby_sender(r.port)
            data = await join(r.port, nameplate, ticket)
            await until(lambda: entry_of(r.relay, nameplate).parked is not None, "parked")
            holder = await claimer(r.port, nameplate, 1, "127.0.0.2")
            assert await holder.line() == "PAIRED"  # its pipe stays in its opening
            waiting = await claimer(r.port, nameplate, 2, "127.0.0.3")
            await until(lambda: queued(r.relay, nameplate) == 1, "a claim to queue")
            loop.advance(CLAIM_QUEUE_WAIT - 1)
            await turns()
            assert queued(r.relay, nameplate) == 1
            loop.advance(2)
            await turns()
            assert (await waiting.line()).startswith(f"ERROR {rv.REASON_TIMEOUT} ")
            assert queued(r.relay, nameplate) == 0
            close_all(control, data, holder, waiting)

    run_on_clock(scenario)
