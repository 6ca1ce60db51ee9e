"""Stalled and vanishing peers against a real relay process.

A stalled receiver must back-pressure the sender with bounded relay memory
(its end at the idle timeout runs on a fake clock in process:
tests/relay/test_limits_enforced.py). A peer that vanishes (RST, half-close,
kill -9) at any phase must end only its own pairing: the other side learns
it promptly, the relay frees everything, and the next transfer works.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import time
from pathlib import Path

import pytest

from ferry.errors import EXIT_RELAY_REFUSED
from ferry_testing.files import assert_nothing_stored, part_size, sparse_file
from ferry_testing.waiting import until
from tests.faults.procs import (
    clients,
    figure,
    one_line_error,
    receive,
    relay_process,
    send,
)
from tests.relay.harness import PAKE_RECORD, RawClient, claim, pair, register_sender
from tests.sockmem import server_sockets

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20
PER_TRANSFER_BUDGET = 4 * MIB  # RelayConfig.transfer_budget: memory and buffers, kernel included
PUMP_BUFFER = 64 * 1024  # RelayConfig.pump_buffer's default: one pipe per direction


def _small_buffers(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)


async def _connect_small(port: int) -> RawClient:
    sock = socket.socket()
    _small_buffers(sock)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
    return RawClient(sock)


async def test_stalled_receiver_back_pressures_sender_within_the_budget(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        control, nameplate = await register_sender(relay.port)
        receiver = await _connect_small(relay.port)
        await receiver.send(claim(nameplate))
        ticket = (await control.line()).split()[1]
        data = await _connect_small(relay.port)
        await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
        assert await data.line() == "PAIRED"
        before = relay.rss_kib()
        # Push until the sender cannot write for a second: that is backpressure.
        # Meanwhile sample the kernel memory of the relay's sockets (ss), the
        # measure the budget is stated in.
        chunk = b"\0" * 65536
        pushed, last_progress, peak = 0, time.monotonic(), 0
        while time.monotonic() - last_progress < 1.0 and pushed < 64 * MIB:
            try:
                pushed += data.sock.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                select.select([], [data.sock], [], 0.1)
                peak = max(peak, sum(s.held for s in server_sockets(relay.port)))
        held = server_sockets(relay.port)
        peak = max(peak, sum(s.held for s in held))
        stalled_rss = relay.rss_kib()
        assert 0 < pushed < PER_TRANSFER_BUDGET, pushed
        # Kernel socket memory plus the pump's two pipes stays within the budget...
        assert peak + 2 * PUMP_BUFFER <= PER_TRANSFER_BUDGET, peak
        # ...and the budget is spent: megabytes in flight, not 128 KiB.
        assert peak > 3 * MIB, held
        assert stalled_rss - before < PER_TRANSFER_BUDGET // 1024
        receiver.close()  # it leaves: the relay ends the pipe and frees what it held
        rest = await data.read_until_closed(timeout=10)
        assert rest == PAKE_RECORD  # the receiver's claim carried it; nothing else
        await until(lambda: relay.metrics()["active_transfers"] == 0, "the pipe ended", 10)
        for client in (control, data):
            client.close()
        figure(
            "stalled receiver",
            f"sender could push {pushed // 1024} KiB before backpressure (budget "
            f"{PER_TRANSFER_BUDGET // MIB} MiB); relay sockets held at most {peak // 1024} KiB "
            f"(ss r+w+f+bl) plus {2 * PUMP_BUFFER // 1024} KiB of pipes; "
            f"relay RSS {before} -> {stalled_rss} KiB",
        )


PHASES = ["handshake", "waiting", "pairing", "key-exchange", "mid-transfer", "before-ack"]


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory):
    with relay_process(tmp_path_factory.mktemp("relay"), "--join-timeout", "3") as relay:
        yield relay


def _vanish(client: RawClient, how: str) -> None:
    if how == "rst":
        client.reset()
    else:
        client.half_close()


@pytest.mark.parametrize("how", ["rst", "half-close"])
@pytest.mark.parametrize("phase", PHASES)
async def test_peer_vanishing_ends_only_its_pairing(shared_relay, phase: str, how: str) -> None:
    relay = shared_relay
    port = relay.port
    survivors: list[RawClient] = []
    gone: list[RawClient] = []
    if phase == "handshake":
        client = await RawClient.connect(port)
        await client.send("FERRY 1 SE")
        _vanish(client, how)
        gone.append(client)
    elif phase == "waiting":
        control, nameplate = await register_sender(port)
        _vanish(control, how)
        gone.append(control)
        await until(lambda: relay.metrics()["connections_open"] == 0, "sender dropped", 10)
        late = await RawClient.connect(port)
        await late.send(claim(nameplate))
        answer = await late.line()
        assert answer.startswith("ERROR unknown-nameplate"), answer
        late.close()
    elif phase == "pairing":
        control, nameplate = await register_sender(port)
        receiver = await RawClient.connect(port)
        await receiver.send(claim(nameplate))
        ticket = (await control.line()).split()[1]
        _vanish(receiver, how)
        gone.append(receiver)
        await until(lambda: relay.metrics()["connections_open"] == 1, "receiver dropped", 10)
        data = await RawClient.connect(port)
        await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
        answer = await data.line()
        # The ticket died with its receiver: refused with a reason the sender knows
        # costs nothing (wait for the next ticket), never a silent close.
        assert answer.startswith("ERROR stale-ticket"), answer
        assert await data.read_until_closed() == b""
        survivors += [control, data]
    else:
        control, data, receiver, _ = await pair(port)
        survivors.append(control)
        if phase == "key-exchange":
            await receiver.send(b"\x01" * 40)  # a PAKE message, then gone
            assert len(await _read_exactly(data, 40)) == 40
            victim, other = receiver, data
        elif phase == "mid-transfer":
            sending = asyncio.create_task(data.send(os.urandom(2 * MIB)))
            await _read_exactly(receiver, 256 * 1024)
            victim, other = receiver, data
        else:  # before-ack: all data delivered, the receiver never acknowledges
            await data.send(os.urandom(300_000))
            await _read_exactly(receiver, 300_000)
            victim, other = receiver, data
        _vanish(victim, how)
        gone.append(victim)
        if how == "rst":  # the other side learns at once
            await other.read_until_closed(timeout=5)
        else:  # a half-close is passed on: the other side sees EOF, then closes too
            await other.read_until_closed(timeout=5)
            other.half_close()
            await victim.read_until_closed(timeout=5)
        if phase == "mid-transfer":
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        survivors.append(other)
    for client in survivors + gone:
        client.close()
    await until(lambda: relay.metrics()["connections_open"] == 0, "relay frees all", 10)
    control, data, receiver, _ = await pair(port)
    await data.send(b"next transfer")
    data.half_close()
    assert await receiver.read_until_closed() == b"next transfer"
    for client in (control, data, receiver):
        client.close()


async def _read_exactly(client: RawClient, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray(client.buffer)
    client.buffer.clear()
    async with asyncio.timeout(10):
        while len(got) < n:
            chunk = await loop.sock_recv(client.sock, min(65536, n - len(got)))
            assert chunk, f"closed after {len(got)} of {n} bytes"
            got += chunk
    return bytes(got)


BIG = 1 << 30  # sparse: costs no disk on the sending side


@pytest.mark.parametrize("victim", ["sender", "receiver"])
async def test_kill_9_of_a_peer_mid_transfer_fails_the_other_cleanly(
    tmp_path: Path, victim: str
) -> None:
    with relay_process(tmp_path) as relay:
        source = sparse_file(tmp_path / "big.bin", BIG)
        out = tmp_path / "out"
        with clients() as started:
            sender = send(started, tmp_path, relay.port, source, options=("--no-compress",))
            receiver = receive(started, tmp_path, relay.port, await sender.code(), out)
            # Bytes in the receiver's partial, not just the file: the receiver creates it
            # before it accepts the offer, and a receiver killed before accepting only ends
            # that attempt (the sender keeps its code for the next one).
            await until(lambda: part_size(out) > 0, "bytes in the receiver's partial", 20)
            killed, other = (sender, receiver) if victim == "sender" else (receiver, sender)
            killed.kill(signal.SIGKILL)
            assert await other.exit_code(timeout=20) != 0
            program = "receive" if victim == "sender" else "send"
            one_line_error(other.stderr(), program)
        assert not (out / "big.bin").exists()
        if victim == "sender":
            assert_nothing_stored(out, "big.bin")  # nothing but a resumable partial
        await until(lambda: relay.metrics()["connections_open"] == 0, "relay frees all", 10)


async def test_kill_9_of_a_waiting_sender_makes_its_code_unknown(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        (tmp_path / "a.txt").write_text("a")
        with clients() as started:
            sender = send(started, tmp_path, relay.port, tmp_path / "a.txt")
            code = await sender.code()
            sender.kill(signal.SIGKILL)
            await sender.exit_code()
            await until(lambda: relay.metrics()["waiting_senders"] == 0, "nameplate freed", 5)
            receiver = receive(started, tmp_path, relay.port, code, tmp_path / "out")
            assert await receiver.exit_code() == EXIT_RELAY_REFUSED
            one_line_error(receiver.stderr(), "receive")
            assert "unknown code" in receiver.stderr()
