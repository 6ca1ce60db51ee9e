"""Relay shutdown (SIGTERM drain, SIGKILL), garbage on the port, and running out of fds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

from ferry_testing.files import assert_nothing_stored, part_size, sparse_file
from ferry_testing.waiting import until
from tests.faults.procs import (
    clients,
    fd_limit,
    figure,
    one_line_error,
    receive,
    relay_process,
    send,
)
from tests.relay.harness import RawClient, pair, register_sender

pytestmark = pytest.mark.timeout(90)

REASONS = ("bad-request", "version", "timeout")


def _drain_time(log: str) -> float:
    match = re.search(r"stopped after draining for ([0-9.]+)s", log)
    assert match, log
    return float(match.group(1))


async def _paced(data: RawClient, total: int, chunk: int, pause: float) -> None:
    for _ in range(total // chunk):
        await data.send(b"\x5a" * chunk)
        await asyncio.sleep(pause)
    data.half_close()


async def test_sigterm_refuses_newcomers_and_drains_running_pipes_then_exits_0(
    tmp_path: Path,
) -> None:
    with relay_process(tmp_path, "--drain-timeout", "20") as relay:
        control, data, receiver, _ = await pair(relay.port)
        waiting, _ = await register_sender(relay.port)
        total = 40 * 32 * 1024  # 1.25 MiB over about 2 s
        pacing = asyncio.create_task(_paced(data, total, 32 * 1024, 0.05))
        receiving = asyncio.create_task(receiver.read_until_closed(timeout=30))
        await asyncio.sleep(0.4)
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert (await waiting.line()).startswith("ERROR shutting-down")
        await until(lambda: "shutting down" in relay.log(), "shutdown begins", 5)
        with pytest.raises(OSError):
            await RawClient.connect(relay.port)  # no longer accepting
        await pacing
        assert len(await receiving) == total
        receiver.half_close()  # as a real receiver would after its ACK: the pipe ends
        rc = await asyncio.to_thread(relay.wait, 20)
        exited = time.monotonic() - signalled
        assert rc == 0
        assert exited < 10  # ended with the pipe, not at the 20 s deadline
        for client in (control, data, receiver, waiting):
            client.close()
        figure(
            "SIGTERM drain",
            f"1 running pipe finished {total // 1024} KiB; relay drained for "
            f"{_drain_time(relay.log()):.2f}s and exited 0 {exited:.2f}s after SIGTERM",
        )


async def test_sigterm_cuts_pipes_still_running_at_the_drain_deadline(tmp_path: Path) -> None:
    with relay_process(tmp_path, "--drain-timeout", "1") as relay:
        control, data, receiver, _ = await pair(relay.port)  # never finishes
        signalled = time.monotonic()
        relay.signal(signal.SIGTERM)
        assert await asyncio.to_thread(relay.wait, 15) == 0
        took = time.monotonic() - signalled
        assert 0.8 < took < 10
        assert await receiver.read_until_closed() == b""
        assert "outcome=cut" in relay.log()
        for client in (control, data, receiver):
            client.close()


async def test_sigterm_lets_a_real_transfer_finish(tmp_path: Path) -> None:
    # The transfer is a stream from a pipe: half of it is delivered before SIGTERM and
    # the other half written only after, so it is surely running through the drain.
    half = os.urandom(1 << 20)
    rest = os.urandom(1 << 20)
    with relay_process(tmp_path, "--drain-timeout", "60") as relay:
        out = tmp_path / "out"
        read_end, write_end = os.pipe()
        with clients() as started:
            try:
                sender = send(started, tmp_path, relay.port, "-", stdin=read_end)
                os.close(read_end)
                receiver = receive(started, tmp_path, relay.port, await sender.code(), out)
                await asyncio.to_thread(os.write, write_end, half)
                await until(lambda: part_size(out) > 0, "transfer under way", 20)
                signalled = time.monotonic()
                relay.signal(signal.SIGTERM)
                await until(lambda: "shutting down" in relay.log(), "the drain begins", 10)
                await asyncio.to_thread(os.write, write_end, rest)
            finally:
                os.close(write_end)
            assert await receiver.exit_code(60) == 0, receiver.stderr()
            assert await sender.exit_code(60) == 0, sender.stderr()
            assert await asyncio.to_thread(relay.wait, 20) == 0
            took = time.monotonic() - signalled
        assert (out / "stdin").read_bytes() == half + rest
        # Outcomes say what happened: the sender whose transfer finished during
        # the drain was served, not refused.
        sender_lines = [line for line in relay.log().splitlines() if "role=sender " in line]
        assert sender_lines and all("outcome=happy" in line for line in sender_lines), sender_lines
        figure(
            "SIGTERM real transfer",
            f"a 2 MiB stream, its second half written after SIGTERM, finished; "
            f"exit 0 after {took:.2f}s",
        )


async def test_sigkill_of_the_relay_fails_both_clients_cleanly(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        source = sparse_file(tmp_path / "big.bin", 1 << 30)
        out = tmp_path / "out"
        with clients() as started:
            # Uncompressed, so a gigabyte of zeros is still moving when the relay dies.
            sender = send(started, tmp_path, relay.port, source, options=("--no-compress",))
            receiver = receive(started, tmp_path, relay.port, await sender.code(), out)
            await until(lambda: out.exists() and any(out.iterdir()), "transfer under way", 20)
            relay.signal(signal.SIGKILL)
            assert await receiver.exit_code(20) not in (0, None)
            assert await sender.exit_code(20) not in (0, None)
            one_line_error(receiver.stderr(), "receive")
            one_line_error(sender.stderr(), "send")
        assert not (out / "big.bin").exists()
        assert_nothing_stored(out, "big.bin")  # nothing but a resumable partial


def _tls_client_hello() -> bytes:
    body = b"\x03\x03" + secrets.token_bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: relay\r\nUser-Agent: curl/8\r\n\r\n",
    "tls": _tls_client_hello(),
    "ssh": b"SSH-2.0-OpenSSH_9.6\r\n",
    "length-prefix": b"\xff\xff\xff\xff" + b"A" * 64,
    "huge-length-line": b"FERRY 1 RECV " + b"9" * 100 + b"\n",
    "nul": b"\0" * 200,
    "lf": b"\n",
    "crlf-only": b"\r\n\r\n",
    "future-version": b"FERRY 99 SEND\n",
    "pong-first": b"PONG\n",
    "utf8": "FERRY 1 RECV ٣\n".encode(),
    **{f"random-{i}": os.urandom(n) for i, n in enumerate([1, 7, 127, 128, 129, 4096, 65536])},
}


async def test_garbage_of_every_shape_is_refused_without_harm(tmp_path: Path) -> None:
    with relay_process(tmp_path, "--handshake-timeout", "2") as relay:
        control, data, receiver, _ = await pair(relay.port)  # a transfer that must not notice
        before = relay.rss_kib()

        async def throw(name: str, payload: bytes) -> tuple[str, str]:
            client = await RawClient.connect(relay.port, "127.0.0.2")
            try:
                await client.send(payload)
            except OSError:
                pass  # refused and reset before we finished: fine
            answer = await client.line(timeout=10)
            await client.read_until_closed(timeout=5)
            client.close()
            return name, answer

        async def firehose() -> None:  # 64 MiB with no line end: read 128 bytes, then gone
            sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
            sent = 0
            try:
                while sent < 64 << 20:
                    sent += await asyncio.to_thread(sock.send, b"A" * (1 << 20))
            except OSError:
                pass
            finally:
                sock.close()
            assert sent < 16 << 20, sent

        results = await asyncio.gather(
            firehose(), *(throw(name, payload) for name, payload in GARBAGE.items())
        )
        answers = dict(results[1:])  # type: ignore[arg-type]
        for name, answer in answers.items():
            if name == "http":  # the web front answers it as HTTP (relay/web.py)
                assert answer.startswith("HTTP/1.1 200 "), answer  # the shipped app
                continue
            assert answer == "" or answer.split(" ")[1] in REASONS, (name, answer)
            assert answer.startswith("ERROR "), (name, answer)
        after = relay.rss_kib()
        await data.send(b"unharmed")
        data.half_close()
        assert await receiver.read_until_closed() == b"unharmed"
        for client in (control, data, receiver):
            client.close()
        assert after - before < 8 * 1024, (before, after)
        await until(lambda: relay.metrics()["connections_open"] == 0, "all closed", 10)
        figure("garbage", f"{len(GARBAGE) + 1} shapes refused; relay RSS {before} -> {after} KiB")


@pytest.mark.parametrize("reserve", [16, 0], ids=["reserve", "no-reserve"])
async def test_out_of_descriptors_refuses_newcomers_cleanly_and_transfers_go_on(
    tmp_path: Path, reserve: int
) -> None:
    limit = 96
    flags = ("--fd-reserve", str(reserve), "--handshake-timeout", "30")
    with relay_process(tmp_path, *flags, preexec=fd_limit(limit)) as relay:
        control, data, receiver, _ = await pair(relay.port)
        hogs = []
        for i in range(limit + 30):
            hogs.append(await RawClient.connect(relay.port, f"127.0.0.{2 + i % 8}"))
        answers = await asyncio.gather(*(_first_line_or_held(h) for h in hogs))
        held = answers.count("held")
        refused = [a for a in answers if a != "held"]
        assert len(refused) >= 30
        assert all(a.startswith("ERROR busy") and "file descriptors" in a for a in refused), set(
            refused
        )
        # The pipe that was already running still moves bytes both ways.
        payload = os.urandom(512 * 1024)
        await data.send(payload)
        assert await _exactly(receiver, len(payload)) == payload
        await receiver.send(b"ack")
        assert await _exactly(data, 3) == b"ack"
        for hog in hogs:
            hog.close()
        for client in (control, data, receiver):
            client.close()
        await asyncio.sleep(0.3)
        control, data, receiver, _ = await pair(relay.port)  # serving again
        for client in (control, data, receiver):
            client.close()
        figure(
            f"fd exhaustion ({'reserve' if reserve else 'no reserve'})",
            f"RLIMIT_NOFILE {limit}: {held} connections held, {len(refused)} refused "
            "'ERROR busy', running pipe unaffected",
        )


async def _first_line_or_held(client: RawClient) -> str:
    try:
        return await client.line(timeout=2) or "closed without a word"
    except TimeoutError:
        return "held"


async def _exactly(client: RawClient, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    async with asyncio.timeout(10):
        while len(got) < n:
            chunk = await loop.sock_recv(client.sock, n - len(got))
            assert chunk
            got += chunk
    return bytes(got)


async def test_json_logs_have_one_object_per_outcome_and_no_secrets(tmp_path: Path) -> None:
    with relay_process(tmp_path, "--log-format", "json") as relay:
        source = tmp_path / "private-name-4711.txt"
        source.write_bytes(b"contents")
        with clients() as started:
            sender = send(started, tmp_path, relay.port, source)
            code = await sender.code()
            receiver = receive(started, tmp_path, relay.port, code, tmp_path / "out")
            assert await receiver.exit_code() == 0, receiver.stderr()
            assert await sender.exit_code() == 0, sender.stderr()
        await until(lambda: relay.log().count('"outcome"') >= 2, "outcome lines", 5)
        log = relay.log()
        lines = [json.loads(line) for line in log.splitlines()]
        outcomes = {(line["role"], line["outcome"]) for line in lines if "outcome" in line}
        assert outcomes == {("receiver", "happy"), ("sender", "happy")}
        receiver_line = next(line for line in lines if line.get("role") == "receiver")
        assert receiver_line["bytes_to_receiver"] > len(b"contents")
        assert {"peer", "duration", "nameplate", "ts"} <= receiver_line.keys()
        for word in code.split("-")[1:]:
            # As a word: a code word may be part of a field name ("plate" in "nameplate").
            assert not re.search(rf"\b{re.escape(word)}\b", log), word
        assert "private-name" not in log
