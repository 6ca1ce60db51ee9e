"""Floods against a real relay process: slowloris, waiting senders, code guessers.

Attackers bind 127.0.0.2 and up so they look like other hosts; the honest
sender and receiver are real ./send and ./receive processes on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ferry.errors import EXIT_RELAY_REFUSED, EXIT_WRONG_CODE
from tests.faults.procs import clients, figure, one_line_error, receive, relay_process, send
from tests.relay.harness import RawClient, claim

pytestmark = pytest.mark.timeout(90)

SLOWLORIS = 300
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 8)]  # 6 hosts x 50 connections


async def _honest_transfer(tmp_path: Path, port: int, size: int = 200_000) -> None:
    source = tmp_path / "honest.bin"
    source.write_bytes(os.urandom(size))
    out = tmp_path / "out"
    with clients() as started:
        sender = send(started, tmp_path, port, source)
        code = await sender.code()
        receiver = receive(started, tmp_path, port, code, out)
        assert await receiver.exit_code() == 0, receiver.stderr()
        assert await sender.exit_code() == 0, sender.stderr()
    assert (out / "honest.bin").read_bytes() == source.read_bytes()


async def test_slowloris_connections_are_held_until_the_deadline_while_a_transfer_succeeds(
    tmp_path: Path,
) -> None:
    deadline = 5.0
    with relay_process(tmp_path, "--handshake-timeout", str(deadline)) as relay:
        source = tmp_path / "honest.bin"
        source.write_bytes(os.urandom(300_000))
        with clients() as started:
            sender = send(started, tmp_path, relay.port, source)
            code = await sender.code()
            opened = time.monotonic()
            attackers = []
            for i in range(SLOWLORIS):
                client = await RawClient.connect(relay.port, ATTACKERS[i % len(ATTACKERS)])
                if i % 2:
                    await client.send("FERRY 1 RE")  # half a hello, never finished
                attackers.append(client)
            await asyncio.sleep(0.3)
            held = relay.metrics()["handshakes"]
            receiver = receive(started, tmp_path, relay.port, code, tmp_path / "out")
            assert await receiver.exit_code() == 0, receiver.stderr()
            assert await sender.exit_code() == 0, sender.stderr()
            transfer_done = time.monotonic() - opened
        assert (tmp_path / "out" / "honest.bin").read_bytes() == source.read_bytes()
        assert held >= SLOWLORIS * 0.95
        answers = await asyncio.gather(*(c.line(timeout=deadline + 20) for c in attackers))
        closed_after = time.monotonic() - opened
        assert all(a.startswith("ERROR timeout") for a in answers), set(answers)
        rest = await asyncio.gather(*(c.read_until_closed(timeout=5) for c in attackers))
        assert set(rest) == {b""}
        for client in attackers:
            client.close()
        assert closed_after >= deadline * 0.8  # held, not refused on sight
        assert relay.metrics()["connections_open"] == 0
        figure(
            "slowloris",
            f"{int(held)} connections held in handshake; honest transfer done "
            f"{transfer_done:.1f}s after they opened; all closed with ERROR timeout "
            f"{closed_after:.1f}s after opening (deadline {deadline:.0f}s); "
            f"relay RSS {relay.rss_kib()} KiB",
        )


async def test_waiting_sender_flood_is_refused_past_the_limit_within_memory_budget(
    tmp_path: Path,
) -> None:
    limit, flood = 300, 400
    budget_kib = 32  # per waiting sender: socket, task, Connection, table entry
    with relay_process(tmp_path, "--max-waiting-senders", str(limit)) as relay:
        await _warm_up(relay.port)
        before = relay.rss_kib()
        senders: list[tuple[RawClient, str]] = []
        for i in range(flood):
            client = await RawClient.connect(relay.port, ATTACKERS[i % len(ATTACKERS)])
            await client.send("FERRY 1 SEND\n")
            senders.append((client, await client.line()))
        during = relay.rss_kib()
        assigned = [(c, a) for c, a in senders if a.startswith("NAMEPLATE ")]
        refused = [a for _, a in senders if a.startswith("ERROR busy")]
        assert (len(assigned), len(refused)) == (limit, flood - limit)
        assert relay.metrics()["waiting_senders"] == limit
        per_waiter = (during - before) / limit
        assert per_waiter < budget_kib, f"{per_waiter:.1f} KiB per waiting sender"

        with clients() as started:  # a real sender is told the relay is busy
            sender = send(started, tmp_path, relay.port, tmp_path / "honest.bin", "busy-send")
            (tmp_path / "honest.bin").write_bytes(b"x")
            assert await sender.exit_code() == EXIT_RELAY_REFUSED
            one_line_error(sender.stderr(), "send")
            assert "relay busy" in sender.stderr()

        # ...and the relay keeps serving the senders it holds
        control, answer = assigned[-1]
        receiver = await RawClient.connect(relay.port)
        await receiver.send(claim(answer.split()[1]))
        assert (await control.line()).startswith("INCOMING ")
        receiver.close()
        for client, _ in senders[:20]:
            client.close()
        await asyncio.sleep(0.3)
        await _honest_transfer(tmp_path, relay.port)
        for client, _ in senders:
            client.close()
        figure(
            "waiting-sender flood",
            f"{flood} SEND, {limit} held, {flood - limit} refused busy; relay RSS "
            f"{before} KiB -> {during} KiB ({per_waiter:.1f} KiB per waiting sender, "
            f"budget {budget_kib} KiB)",
        )


async def _warm_up(port: int) -> None:
    """One full pairing so code paths and buffers exist before measuring memory."""
    from tests.relay.harness import pair

    control, data, receiver, _ = await pair(port)
    await data.send(b"warm")
    data.half_close()
    assert await receiver.read_until_closed() == b"warm"
    for client in (control, data, receiver):
        client.close()


async def test_guessing_storm_is_throttled_and_the_honest_receiver_succeeds(
    tmp_path: Path,
) -> None:
    per_minute, guessers, attempts = 4, ATTACKERS[:4], 12
    with relay_process(tmp_path, "--lookups-per-minute", str(per_minute)) as relay:
        source = tmp_path / "honest.bin"
        source.write_bytes(os.urandom(100_000))
        with clients() as started:
            sender = send(started, tmp_path, relay.port, source)
            code = await sender.code()
            nameplate = int(code.split("-")[0])

            async def guess(address: str, rounds: int) -> list[str]:
                answers = []
                for i in range(rounds):
                    target = nameplate if i % 2 == 0 else 1000 + i
                    client = await RawClient.connect(relay.port, address)
                    await client.send(claim(target))
                    answers.append(await client.line(timeout=10))
                    client.close()  # a paired guesser leaves: it cannot know the words
                return answers

            first = await asyncio.gather(*(guess(a, attempts) for a in guessers))
            for answers in first:
                served = [a for a in answers if not a.startswith("ERROR rate-limited")]
                assert len(served) <= per_minute + 1, answers
                assert len(answers) - len(served) >= attempts - per_minute - 1
            # Real receivers with wrong words, then the honest one, during a second wave.
            wave = asyncio.gather(*(guess(a, attempts) for a in guessers))
            wrong = code.split("-")[0] + "-" + "-".join(["zebra"] * (len(code.split("-")) - 1))
            for n in range(2):
                guesser = receive(started, tmp_path, relay.port, wrong, tmp_path / "g", f"g{n}")
                assert await guesser.exit_code() == EXIT_WRONG_CODE, guesser.stderr()
                one_line_error(guesser.stderr(), "receive")
            receiver = receive(started, tmp_path, relay.port, code, tmp_path / "out")
            assert await receiver.exit_code() == 0, receiver.stderr()
            assert await sender.exit_code() == 0, sender.stderr()
            second = await wave
        assert all(a.startswith("ERROR rate-limited") for answers in second for a in answers)
        assert (tmp_path / "out" / "honest.bin").read_bytes() == source.read_bytes()
        refusals = relay.metrics()['refusals_total{reason="rate-limited"}']
        figure(
            "guessing storm",
            f"{len(guessers)} guessing hosts x {2 * attempts} look-ups: "
            f"{int(refusals)} rate-limited, at most {per_minute} served per host; "
            f"2 wrong-code receivers failed, honest receiver succeeded",
        )
