"""A claim that does not get as far as the data phase cannot hold a nameplate.

A receiver that claims and then stays silent, or a sender
whose key exchange timed out, must not leave a half-closed pipe holding the
nameplate until the idle timeout; a receiver arriving meanwhile waits for
its turn (test_claim_queue.py), and is not told that the code is taken.
"""

from __future__ import annotations

import pytest

from ferry.config import EARLY_PAIRED_AFTER, OPENING_BYTES
from ferry.protocol import rendezvous as rv
from ferry.protocol.records import MAX_HANDSHAKE_LENGTH, Header, RecordType
from ferry.relay.table import State
from ferry_testing.waiting import until

from .clock import ClockLoop, run_on_clock, turns
from .harness import PAKE_RECORD, RawClient, claim, close_all, pair, register_sender, running_relay
from .test_limits_enforced import nothing_to_read

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


async def test_a_receiver_arriving_while_a_claim_is_opening_waits_its_turn() -> None:
    async with running_relay() as r:
        control, data, receiver, nameplate = await pair(r.port)
        second = await RawClient.connect(r.port, "127.0.0.2")
        await second.send(claim(nameplate))
        entry = r.relay.table.entries()[0]
        await until(lambda: len(entry.queue) == 1, "the claim to queue")
        data.close()  # the first claim's attempt ends (say, a wrong code)
        assert (await control.line()).startswith("INCOMING ")  # for the queued claim
        close_all(control, receiver, second)


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


# -- a claim is its line and its PAKE record ---------------------------------------------------


async def test_a_claim_without_its_pake_record_holds_nothing_and_an_honest_one_pairs_past_it(
) -> None:  # fmt: skip
    async with running_relay() as r:
        control, nameplate = await register_sender(r.port)
        silent = [await RawClient.connect(r.port) for _ in range(5)]
        for client in silent:
            await client.send(f"FERRY 1 RECV {nameplate}\n")
        honest = await RawClient.connect(r.port)
        await honest.send(claim(nameplate))
        incoming = await control.line()
        assert incoming.startswith("INCOMING "), incoming
        data = await RawClient.connect(r.port)
        await data.send(f"FERRY 1 JOIN {nameplate} {incoming.split()[1]}\n")
        assert await honest.line() == "PAIRED"
        assert await data.line() == "PAIRED"
        assert await data.exactly(len(PAKE_RECORD)) == PAKE_RECORD
        close_all(control, data, honest, *silent)


async def test_a_claim_whose_pake_record_never_comes_is_refused_timeout_unpaired() -> None:
    async with running_relay(handshake_timeout=0.5) as r:
        control, nameplate = await register_sender(r.port)
        silent = await RawClient.connect(r.port)
        await silent.send(f"FERRY 1 RECV {nameplate}\n")
        assert reason(await silent.line()) == rv.REASON_TIMEOUT
        assert r.relay.table.count(State.WAITING) == 1
        assert await _nothing_from(control)  # the sender never heard of it
        close_all(control, silent)


@pytest.mark.parametrize(
    "early",
    [
        Header(32, RecordType.CONFIRM, 0).encode() + bytes(32),
        Header(33, RecordType.PAKE, 1).encode() + bytes(33),
        Header(MAX_HANDSHAKE_LENGTH + 1, RecordType.PAKE, 0).encode(),
        b"GET / HTTP/1.1\r\n",
    ],
    ids=["confirm", "flagged", "oversize", "http"],
)
async def test_a_claim_followed_by_anything_but_a_pake_record_is_refused_unpaired(
    early: bytes,
) -> None:
    async with running_relay() as r:
        control, nameplate = await register_sender(r.port)
        claimer = await RawClient.connect(r.port)
        await claimer.send(f"FERRY 1 RECV {nameplate}\n".encode() + early)
        assert reason(await claimer.line()) == rv.REASON_BAD_REQUEST
        assert await _nothing_from(control)
        close_all(control, claimer)


async def test_guess_free_claims_never_use_up_max_claims_per_nameplate() -> None:
    # Each claim is paired and its receiver leaves (or sends a point the sender
    # rejects) before the sender says a word: no guess, so the claim is given back.
    async with running_relay(max_claims_per_nameplate=2) as r:
        control, nameplate = await register_sender(r.port)
        for _ in range(5):
            receiver = await RawClient.connect(r.port)
            await receiver.send(claim(nameplate))
            incoming = await control.line()
            assert incoming.startswith("INCOMING "), incoming
            data = await RawClient.connect(r.port)
            await data.send(f"FERRY 1 JOIN {nameplate} {incoming.split()[1]}\n")
            assert await receiver.line() == "PAIRED"
            close_all(receiver, data)
            await until(lambda: r.relay.table.count(State.WAITING) == 1, "the nameplate to wait")
        honest = await RawClient.connect(r.port)
        await honest.send(claim(nameplate))
        assert (await control.line()).startswith("INCOMING ")
        close_all(control, honest)


async def _nothing_from(client: RawClient, wait: float = 0.3) -> bool:
    try:
        await client.line(timeout=wait)
    except TimeoutError:
        return True
    return False


def test_a_receiver_from_before_the_pipelined_handshake_is_told_paired_and_then_paired(
) -> None:  # fmt: skip
    # Such a receiver sends its PAKE record only after PAIRED: the relay says
    # PAIRED to a claim with nothing behind its line after EARLY_PAIRED_AFTER
    # (3 s), holding nothing for it, and pairs it for real once the record is in.
    async def scenario(loop: ClockLoop) -> None:
        async with running_relay() as r:
            control, nameplate = await register_sender(r.port)
            old = await RawClient.connect(r.port)
            await old.send(f"FERRY 1 RECV {nameplate}\n")
            await until(lambda: r.relay.open_connections == 2, "the claim's connection")
            await turns(50)  # the claim line is read: its record's wait begins
            loop.advance(EARLY_PAIRED_AFTER - 1)
            await turns()
            assert nothing_to_read(old) and nothing_to_read(control)
            loop.advance(1.5)
            assert await old.line() == "PAIRED"
            assert nothing_to_read(control)
            assert r.relay.table.count(State.WAITING) == 1  # still nobody's
            await old.send(PAKE_RECORD)
            incoming = await control.line()
            assert incoming.startswith("INCOMING "), incoming
            data = await RawClient.connect(r.port)
            await data.send(f"FERRY 1 JOIN {nameplate} {incoming.split()[1]}\n")
            assert await data.line() == "PAIRED"
            assert await data.exactly(len(PAKE_RECORD)) == PAKE_RECORD
            await data.send(b"sender's PAKE\n")
            assert await old.line() == "sender's PAKE"  # one PAIRED only, then the pipe
            close_all(control, data, old)

    run_on_clock(scenario)
