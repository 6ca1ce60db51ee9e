"""Every relay limit, enforced: an in-process relay on port 0 with small settings.

Each test sets one limit low, pushes past it, and checks the refusal the
client reads (ERROR <reason> ...) and that the relay keeps serving others.
Deadline tests run on a ClockLoop and move its time instead of sleeping;
the others wait for what they can observe (a gauge, the table, a log line).
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from ferry.config import MAX_EARLY_BYTES
from ferry.protocol import rendezvous as rv
from ferry.relay.session import Session
from ferry.relay.table import State
from ferry_testing.waiting import until
from tests.relay.clock import ClockLoop, run_on_clock, turns
from tests.relay.conditions import logged
from tests.relay.harness import RawClient, claim, close_all, pair, register_sender, running_relay

pytestmark = pytest.mark.timeout(30)


def reason(line: str) -> str:
    assert line.startswith("ERROR "), line
    return line.split()[1]


async def read_exactly(client: RawClient, count: int) -> bytes:
    data, loop = bytes(client.buffer), asyncio.get_running_loop()
    client.buffer.clear()
    async with asyncio.timeout(5):
        while len(data) < count and (chunk := await loop.sock_recv(client.sock, count)):
            data += chunk
    return data


def nothing_to_read(client: RawClient) -> bool:
    """True when the relay has sent nothing (and not closed) yet."""
    try:
        client.sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    return False


@pytest.mark.parametrize("hello", [b"", b"FERRY 1 RE"], ids=["silent", "half-hello"])
def test_handshake_is_refused_with_timeout_at_the_deadline_not_before(hello: bytes) -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(handshake_timeout=10) as r:
            client = await RawClient.connect(r.port)
            await client.send(hello)
            await until(lambda: r.relay.handshaking == 1, "the handshake to start")
            loop.advance(9.9)
            await turns()
            assert nothing_to_read(client) and r.relay.handshaking == 1
            loop.advance(0.2)
            assert reason(await client.line(timeout=3)) == rv.REASON_TIMEOUT
            assert await client.read_until_closed() == b""
            client.close()

    run_on_clock(scenario)


@pytest.mark.parametrize("size", [33, 4096, 1 << 20])
async def test_hello_longer_than_max_hello_bytes_is_refused_as_bad_request(size: int) -> None:
    async with running_relay(max_hello_bytes=32) as r:
        client = await RawClient.connect(r.port)
        # The relay refuses after at most 32 bytes; the rest may not even be read.
        sending = asyncio.create_task(client.send(b"F" * size + b"\n"))
        line = await client.line()
        assert reason(line) == rv.REASON_BAD_REQUEST
        # With the web front the server first sees the socket once its first bytes
        # are in, so a client that keeps sending may pass the early-bytes cap first.
        assert "too long" in line or (size > MAX_EARLY_BYTES and "before pairing" in line)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        client.close()


async def test_valid_request_longer_than_max_hello_bytes_is_refused() -> None:
    hello = "FERRY 1 RECV 123456789\n"  # 23 bytes, well-formed
    async with running_relay(max_hello_bytes=20) as r:
        client = await RawClient.connect(r.port)
        await client.send(hello)
        line = await client.line()
        assert reason(line) == rv.REASON_BAD_REQUEST and "too long" in line
        client.close()
    async with running_relay(max_hello_bytes=23) as r:
        client = await RawClient.connect(r.port)
        await client.send(hello)
        assert reason(await client.line()) == rv.REASON_UNKNOWN_NAMEPLATE
        client.close()


async def test_hello_within_max_hello_bytes_is_served() -> None:
    async with running_relay(max_hello_bytes=16) as r:
        control, _ = await register_sender(r.port)  # "FERRY 1 SEND\n" is 13 bytes
        control.close()


async def test_connections_past_max_handshakes_are_refused_busy() -> None:
    async with running_relay(max_handshakes=3, handshake_timeout=10) as r:
        idle = [await RawClient.connect(r.port, f"127.0.0.{i}") for i in range(2, 5)]
        await until(lambda: r.relay.handshaking == 3, "3 handshakes")
        extra = await RawClient.connect(r.port, "127.0.0.5")
        assert reason(await extra.line()) == rv.REASON_BUSY
        close_all(*idle, extra)
        await until(lambda: r.relay.handshaking == 0, "the handshakes to end")
        control, _ = await register_sender(r.port)  # slots free again
        control.close()


async def test_senders_past_max_waiting_senders_are_refused_busy() -> None:
    async with running_relay(max_waiting_senders=2) as r:
        first, _ = await register_sender(r.port)
        second, _ = await register_sender(r.port)
        third = await RawClient.connect(r.port)
        await third.send("FERRY 1 SEND\n")
        assert reason(await third.line()) == rv.REASON_BUSY
        first.close()
        await until(lambda: len(r.relay.table) == 1, "the first sender to leave the table")
        fourth, _ = await register_sender(r.port)
        close_all(second, third, fourth)


async def pong(control: RawClient, session: Session, now: float) -> None:
    """Answer a PING, and wait until the relay has read the answer."""
    await control.send("PONG\n")
    await until(lambda: session.last_heard >= now, "the PONG read")


def test_sender_waiting_past_max_sender_wait_is_refused_with_timeout() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(max_sender_wait=100, ping_interval=30, pong_timeout=100) as r:
            control, _ = await register_sender(r.port)
            [entry] = r.relay.table.entries()
            for _ in range(3):  # pinged at 30, 60 and 90 s: answered, so not lost
                loop.advance(30)
                assert await control.line() == "PING"
                await pong(control, entry.sender.session, loop.time())
            assert len(r.relay.table) == 1
            loop.advance(30)  # the tick at 120 s finds it past max_sender_wait
            assert reason(await control.line()) == rv.REASON_TIMEOUT
            assert len(r.relay.table) == 0
            control.close()

    run_on_clock(scenario)


def test_waiting_sender_that_stops_answering_ping_is_dropped_after_pong_timeout() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(ping_interval=30, pong_timeout=100) as r:
            control, _ = await register_sender(r.port)
            for _ in range(3):  # silent, but not for longer than 100 s yet
                loop.advance(30)
                assert await control.line() == "PING"
            assert len(r.relay.table) == 1
            loop.advance(30)
            assert await control.read_until_closed() == b""
            assert len(r.relay.table) == 0
            control.close()

    run_on_clock(scenario)


def test_receiver_whose_sender_never_joins_is_refused_at_join_timeout() -> None:
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(join_timeout=15) as r:
            control, nameplate = await register_sender(r.port)
            receiver = await RawClient.connect(r.port)
            await receiver.send(claim(nameplate))
            assert (await control.line()).startswith("INCOMING ")
            loop.advance(14.9)
            await turns()
            assert nothing_to_read(receiver)
            loop.advance(0.2)
            line = await receiver.line()
            assert reason(line) == rv.REASON_TIMEOUT and "did not answer" in line
            close_all(control, receiver)

    run_on_clock(scenario)


async def test_receiver_past_max_active_transfers_is_refused_busy() -> None:
    async with running_relay(max_active_transfers=1) as r:
        first = await pair(r.port)
        control, nameplate = await register_sender(r.port)
        receiver = await RawClient.connect(r.port)
        await receiver.send(claim(nameplate))
        assert reason(await receiver.line()) == rv.REASON_BUSY
        close_all(*first[:3], control, receiver)


def test_pipe_without_traffic_ends_at_idle_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")

    async def scenario(loop: ClockLoop) -> None:
        async with running_relay(idle_timeout=600) as r:
            control, data, receiver, _ = await pair(r.port)
            await data.send(b"some bytes")
            assert await read_exactly(receiver, len(b"some bytes")) == b"some bytes"
            loop.advance(599)
            await turns()
            assert r.relay.active == 1 and nothing_to_read(receiver)
            loop.advance(2)
            assert await receiver.read_until_closed() == b""
            assert await data.read_until_closed() == b""
            [line] = await logged(caplog)
            assert (line["role"], line["outcome"]) == ("receiver", "idle")
            close_all(control, data, receiver)

    run_on_clock(scenario)


async def test_connections_past_max_per_address_are_refused_and_others_served() -> None:
    async with running_relay(max_connections_per_address=3) as r:
        held = [await RawClient.connect(r.port, "127.0.0.2") for _ in range(3)]
        extra = await RawClient.connect(r.port, "127.0.0.2")
        assert reason(await extra.line()) == rv.REASON_TOO_MANY_CONNECTIONS
        other, _ = await register_sender(r.port, "127.0.0.3")
        held[0].close()
        await until(lambda: r.relay.open_connections == 3, "the closed slot to be given back")
        again, _ = await register_sender(r.port, "127.0.0.2")
        close_all(*held, extra, other, again)


async def test_lookups_past_budget_are_rate_limited_per_address() -> None:
    async with running_relay(lookups_per_minute=3) as r:
        answers = []
        for _ in range(5):
            guesser = await RawClient.connect(r.port, "127.0.0.2")
            await guesser.send(claim(4242))
            answers.append(reason(await guesser.line()))
            guesser.close()
        assert answers == [rv.REASON_UNKNOWN_NAMEPLATE] * 3 + [rv.REASON_RATE_LIMITED] * 2
        honest = await RawClient.connect(r.port, "127.0.0.3")
        await honest.send(claim(4242))
        assert reason(await honest.line()) == rv.REASON_UNKNOWN_NAMEPLATE
        honest.close()


async def test_loopback_clients_by_default_are_exempt_from_per_address_limits() -> None:
    async with running_relay(
        lookups_per_minute=1, max_connections_per_address=2, limit_loopback=False
    ) as r:
        held = [await RawClient.connect(r.port) for _ in range(3)]
        answers = []
        for _ in range(3):
            receiver = await RawClient.connect(r.port)
            await receiver.send(claim(4242))
            answers.append(reason(await receiver.line()))
            receiver.close()
        assert answers == [rv.REASON_UNKNOWN_NAMEPLATE] * 3
        close_all(*held)


async def test_rate_limited_refusal_says_when_to_retry() -> None:
    async with running_relay(lookups_per_minute=1) as r:
        lines = []
        for _ in range(2):
            guesser = await RawClient.connect(r.port)
            await guesser.send(claim(1))
            lines.append(await guesser.line())
            guesser.close()
        assert [reason(line) for line in lines] == [
            rv.REASON_UNKNOWN_NAMEPLATE,
            rv.REASON_RATE_LIMITED,
        ]
        assert "retry in 60s" in lines[1]


async def test_claims_past_max_claims_per_nameplate_are_refused_too_many_attempts() -> None:
    async with running_relay(max_claims_per_nameplate=2) as r:
        control, nameplate = await register_sender(r.port)
        for _ in range(2):
            receiver = await RawClient.connect(r.port)
            await receiver.send(claim(nameplate))
            ticket = (await control.line()).split()[1]
            data = await RawClient.connect(r.port)
            await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
            assert await data.line() == "PAIRED"
            assert await receiver.line() == "PAIRED"
            await receiver.send(b"receiver's PAKE")
            await data.send(b"sender's CONFIRM\n")  # the key exchange was reached: a guess
            assert await receiver.line() == "sender's CONFIRM"
            close_all(receiver, data)
            await until(lambda: r.relay.table.count(State.WAITING) == 1, "the claim to end")
        late = await RawClient.connect(r.port)
        await late.send(claim(nameplate))
        assert reason(await late.line()) == rv.REASON_TOO_MANY_ATTEMPTS
        close_all(control, late)


async def test_claims_that_never_reach_the_key_exchange_do_not_use_up_the_nameplate() -> None:
    # Receivers that leave before the sender joins, before it answers, or
    # after sending garbage (an invalid PAKE point: the sender just closes)
    # made no guess; each costs its address a look-up and nothing else.
    async with running_relay(max_claims_per_nameplate=2) as r:
        control, nameplate = await register_sender(r.port)
        for i in range(6):
            receiver = await RawClient.connect(r.port)
            await receiver.send(claim(nameplate))
            ticket = (await control.line()).split()[1]
            if i % 3 == 0:
                receiver.close()  # before the sender joins
            else:
                data = await RawClient.connect(r.port)
                await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n" + "sender PAKE")
                assert await data.line() == "PAIRED"
                assert await receiver.line() == "PAIRED"
                if i % 3 == 1:
                    receiver.close()  # silent, then gone
                    await data.read_until_closed()
                else:
                    await receiver.send(b"an invalid point")
                    data.close()  # the sender's key exchange failed: it closes, says nothing
                    await receiver.read_until_closed()
                close_all(data)
            close_all(receiver)
            await until(lambda: r.relay.table.count(State.WAITING) == 1, "the claim to end")
        honest = await RawClient.connect(r.port)
        await honest.send(claim(nameplate))
        assert (await control.line()).startswith("INCOMING ")
        close_all(control, honest)


async def test_receiver_leaving_before_join_frees_the_nameplate_at_once() -> None:
    async with running_relay(join_timeout=30) as r:
        control, nameplate = await register_sender(r.port)
        first = await RawClient.connect(r.port)
        await first.send(claim(nameplate))
        assert (await control.line()).startswith("INCOMING ")
        first.reset()
        await until(lambda: r.relay.table.count(State.CLAIMED) == 0, "the claim to end")
        second = await RawClient.connect(r.port)
        await second.send(claim(nameplate))
        assert (await control.line()).startswith("INCOMING ")  # not "claimed"
        close_all(control, second)


async def test_no_descriptor_headroom_refuses_new_connections_busy() -> None:
    async with running_relay(fd_reserve=10**9) as r:
        client = await RawClient.connect(r.port)
        line = await client.line()
        assert reason(line) == rv.REASON_BUSY
        assert "file descriptors" in line
        client.close()


async def test_join_with_unknown_ticket_is_refused_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "ferry.relay")
    async with running_relay() as r:
        client = await RawClient.connect(r.port)
        await client.send(f"FERRY 1 JOIN 5 {'0' * 32}\n")
        assert reason(await client.line()) == rv.REASON_BAD_REQUEST
        client.close()
        fields = await logged(caplog)
    assert any(
        f.get("outcome") == "refused"
        and f.get("role") == "sender-data"
        and f.get("reason") == "bad-request"
        for f in fields
    ), fields
