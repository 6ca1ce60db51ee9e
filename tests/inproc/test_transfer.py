"""Sender and receiver sessions against a real in-process relay on port 0."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.client.progress import NoProgress
from ferry.client.receiver import Receiver, prepare_directory
from ferry.client.sender import Sender
from ferry.client.sources import Outgoing
from ferry.codes import Code, parse_code
from ferry.config import ClientConfig, RelayConfig
from ferry.errors import (
    BadRequest,
    FileExists,
    RefusedByPeer,
    RelayRefused,
    TooManyAttempts,
    WrongCode,
)
from ferry.protocol import rendezvous as rv
from ferry.relay.table import Entry, State
from tests.inproc.conftest import RunningRelay
from tests.relay.harness import claim

StartRelay = Callable[..., Awaitable[RunningRelay]]
FAST = ClientConfig(connect_timeout=5, handshake_timeout=5, io_timeout=10, ack_timeout=10)


class SendingTask:
    """A Sender running in the background, with its code once shown."""

    def __init__(self, relay: RunningRelay, path: Path, config: ClientConfig = FAST) -> None:
        self.code_shown: asyncio.Future[Code] = asyncio.get_running_loop().create_future()
        self.outgoing = Outgoing.open(str(path))
        sender = Sender(
            relay.address, self.outgoing, config, NoProgress(), self.code_shown.set_result
        )
        self.task = asyncio.create_task(sender.run())

    async def code(self) -> Code:
        return await asyncio.wait_for(asyncio.shield(self.code_shown), 5)

    async def result(self) -> None:
        try:
            await asyncio.wait_for(self.task, 20)
        finally:
            self.outgoing.file.close()


async def send_hello(
    relay: RunningRelay, tmp_path: Path, config: ClientConfig = FAST
) -> tuple[SendingTask, Code]:
    """A sender offering a.txt ("hello"), and its code once shown."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    sending = SendingTask(relay, source, config)
    return sending, await sending.code()


def receiver(relay: RunningRelay, code: Code, directory: Path, overwrite: bool = False) -> Receiver:
    prepare_directory(str(directory))
    return Receiver(relay.address, code, directory, FAST, NoProgress(), overwrite)


def wrong_words(code: Code) -> Code:
    other = "apple" if code.words[0] != "apple" else "zebra"
    return parse_code(f"{code.nameplate}-{other}-{'-'.join(code.words[1:])}")


@pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])
async def test_transfer_with_matching_code_stores_identical_file(
    relay_factory: StartRelay, tmp_path: Path, use_splice: bool
) -> None:
    relay = await relay_factory(RelayConfig(use_splice=use_splice))
    source = tmp_path / "in" / "photo.jpg"
    source.parent.mkdir()
    source.write_bytes(os.urandom(1_000_003))
    sending = SendingTask(relay, source)
    code = await sending.code()
    saved = await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()
    assert saved == tmp_path / "out" / "photo.jpg"
    assert saved.read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo.jpg"]


async def test_transfer_after_a_wrong_code_still_succeeds(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    out = tmp_path / "out"
    out.mkdir()
    sending, code = await send_hello(relay, tmp_path)
    with pytest.raises(WrongCode):
        await asyncio.wait_for(receiver(relay, wrong_words(code), out).run(), 20)
    assert list(out.iterdir()) == []
    await asyncio.wait_for(receiver(relay, code, out).run(), 20)
    await sending.result()
    assert (out / "a.txt").read_bytes() == b"hello"


async def test_sender_after_max_wrong_codes_gives_up(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    config = ClientConfig(connect_timeout=5, handshake_timeout=5, max_wrong_codes=2)
    sending, code = await send_hello(relay, tmp_path, config)
    for _ in range(2):
        with pytest.raises(WrongCode):
            await asyncio.wait_for(receiver(relay, wrong_words(code), tmp_path).run(), 20)
    with pytest.raises(TooManyAttempts):
        await sending.result()


async def _send_onto_existing_file(
    relay_factory: StartRelay, tmp_path: Path, config: ClientConfig = FAST
) -> tuple[RunningRelay, SendingTask, Code, Path]:
    """A sender offering in.txt ("new") to a directory that already has in.txt ("old")."""
    relay = await relay_factory()
    source = tmp_path / "in.txt"
    source.write_bytes(b"new")
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.txt").write_bytes(b"old")
    sending = SendingTask(relay, source, config)
    return relay, sending, await sending.code(), out


async def test_refusal_keeps_the_code_alive_and_a_second_receiver_with_overwrite_succeeds(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay, sending, code, out = await _send_onto_existing_file(relay_factory, tmp_path)
    with pytest.raises(FileExists, match="already exists"):
        await asyncio.wait_for(receiver(relay, code, out).run(), 20)
    assert (out / "in.txt").read_bytes() == b"old"
    await asyncio.wait_for(receiver(relay, code, out, overwrite=True).run(), 20)
    await sending.result()
    assert (out / "in.txt").read_bytes() == b"new"


async def test_sender_gives_up_with_the_reason_after_as_many_refusals_as_attempts(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    config = ClientConfig(
        connect_timeout=5, handshake_timeout=5, io_timeout=10, ack_timeout=10,
        max_failed_attempts=2,
    )  # fmt: skip
    relay, sending, code, out = await _send_onto_existing_file(relay_factory, tmp_path, config)
    for _ in range(2):
        with pytest.raises(FileExists, match="already exists"):
            await asyncio.wait_for(receiver(relay, code, out).run(), 20)
    with pytest.raises(RefusedByPeer, match="already exists"):
        await sending.result()
    assert (out / "in.txt").read_bytes() == b"old"


async def test_receiver_with_overwrite_replaces_existing_file(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay, sending, code, out = await _send_onto_existing_file(relay_factory, tmp_path)
    await asyncio.wait_for(receiver(relay, code, out, overwrite=True).run(), 20)
    await sending.result()
    assert (out / "in.txt").read_bytes() == b"new"


async def test_receiver_with_unknown_nameplate_is_refused_by_relay(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    with pytest.raises(RelayRefused, match="unknown code") as refused:
        await asyncio.wait_for(
            receiver(relay, parse_code("42-apple-zebra-orbit"), tmp_path).run(), 10
        )
    assert refused.value.reason == "unknown-nameplate"


async def test_sender_outlives_a_receiver_that_claims_and_leaves(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    """A claim abandoned at once makes the sender's JOIN arrive late (refused) or pair with
    nobody; either way the sender must go on waiting, not exit."""
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    for _ in range(3):
        _, writer = await asyncio.open_connection(relay.address.host, relay.address.port)
        writer.write(f"FERRY 1 RECV {code.nameplate}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        # The relay returns the nameplate to waiting, with a parked connection again.
        assert await _until(lambda: _entry_waiting_with_parked(relay, code.nameplate))
        assert not sending.task.done()
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


class SlowProgress(NoProgress):
    """Blocks the event loop a little per record: a slow transfer, deterministically."""

    def update(self, done: int) -> None:
        time.sleep(0.05)


async def test_sender_wait_limit_does_not_cut_a_transfer_that_started_in_time(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(16 * ClientConfig.record_size))
    config = ClientConfig(wait_timeout=1.0, connect_timeout=5, handshake_timeout=5)
    sending = SendingTask(relay, source, config)
    code = await sending.code()
    await asyncio.sleep(0.5)  # arrive in time; the transfer then takes ~0.8 s
    prepare_directory(str(tmp_path / "out"))
    slow = Receiver(relay.address, code, tmp_path / "out", FAST, SlowProgress())
    await asyncio.wait_for(slow.run(), 20)
    await sending.result()
    assert (tmp_path / "out" / "a.bin").read_bytes() == source.read_bytes()


async def test_receiver_told_claimed_retries_until_the_previous_pipe_ends(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    # Another receiver holds the nameplate (paired, silent) for a moment.
    reader, writer = await asyncio.open_connection(relay.address.host, relay.address.port)
    writer.write(claim(code.nameplate))
    assert await asyncio.wait_for(reader.readline(), 5) == b"PAIRED\n"

    async def let_go() -> None:
        await asyncio.sleep(0.3)
        writer.close()
        await writer.wait_closed()

    release = asyncio.create_task(let_go())
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await release
    await sending.result()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll an observable condition until it holds, or give up at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _entry(relay: RunningRelay, nameplate: int) -> Entry[Any] | None:
    return next((e for e in relay.relay.table.entries() if e.nameplate == nameplate), None)


def _entry_waiting_with_parked(relay: RunningRelay, nameplate: int) -> bool:
    entry = _entry(relay, nameplate)
    return entry is not None and entry.state is State.WAITING and entry.parked is not None


async def _parked(relay: RunningRelay, nameplate: int, timeout: float = 2) -> bool:
    return await _until(
        lambda: getattr(_entry(relay, nameplate), "parked", None) is not None, timeout
    )


async def test_sender_parks_its_data_connection_before_any_receiver_comes(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    assert await _parked(relay, code.nameplate)
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


async def test_sender_parks_a_new_data_connection_after_a_wrong_code(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    with pytest.raises(WrongCode):
        await asyncio.wait_for(receiver(relay, wrong_words(code), tmp_path / "x").run(), 20)
    assert await _parked(relay, code.nameplate)
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()


async def _lose_parked(relay: RunningRelay, nameplate: int, new_ticket: str = "") -> Entry[Any]:
    """Cut the relay's side of a sender's parked data connection, as a dead path would;
    optionally make the sender's ticket stale first."""
    assert await _parked(relay, nameplate)
    entry = next(e for e in relay.relay.table.entries() if e.nameplate == nameplate)
    assert entry.parked is not None
    if new_ticket:
        entry.ticket = new_ticket
    entry.parked.sock.shutdown(socket.SHUT_RDWR)
    return entry


async def test_sender_reconnects_a_parked_data_connection_the_relay_lost(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    entry = await _lose_parked(relay, code.nameplate)
    lost = entry.parked
    # A new parked connection replaces the lost one (the sender reconnected).
    assert await _until(lambda: entry.parked is not None and entry.parked is not lost)
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()


async def test_sender_survives_its_standby_join_being_refused_and_answers_incoming(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    # The relay loses the parked connection and the sender's ticket no longer
    # matches (as when a receiver used it meanwhile): its reconnect, a second
    # later, is refused. The sender must keep waiting, not give up.
    entry = await _lose_parked(relay, code.nameplate, new_ticket="ab" * 16)
    refused_before = _refusals(relay)
    assert await _until(lambda: _refusals(relay) > refused_before)  # the stale reconnect
    assert not sending.task.done()
    assert entry.parked is None
    # A receiver now finds no parked connection: the relay sends INCOMING.
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


def _refusals(relay: RunningRelay) -> int:
    return sum(
        n for (_, outcome), n in relay.relay.metrics.outcomes.items() if outcome == "refused"
    )


async def test_sender_falls_back_to_plain_send_with_a_relay_without_standby(
    relay_factory: StartRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = rv.parse_client_line
    refused: list[bytes] = []

    def before_standby(line: bytes) -> rv.ClientMessage:
        # What a relay from before standby connections answers to SEND STANDBY.
        if line.startswith(b"FERRY 1 SEND STANDBY"):
            refused.append(line)
            raise BadRequest(rv.REASON_BAD_REQUEST, "unknown request")
        return original(line)

    monkeypatch.setattr(rv, "parse_client_line", before_standby)
    relay = await relay_factory()
    sending, code = await send_hello(relay, tmp_path)
    assert refused  # it asked for standby first, was refused, and registered plainly
    # Plain SEND: no ticket to park a data connection with (0.3 s to show one would).
    assert not await _parked(relay, code.nameplate, 0.3)
    await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
    await sending.result()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"
