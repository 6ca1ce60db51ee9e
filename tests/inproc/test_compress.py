"""Compression in process: the "queue full" signal Wire.write gives the sender's policy
over a real socket pair, and whole transfers through a real relay on port 0 that
compress while the receiver's side is slow."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry.client.wire import Wire
from ferry.config import ClientConfig
from ferry.protocol import messages
from ferry.protocol.sender_session import SenderSession
from tests.inproc.test_transfer import FAST, SendingTask, receiver
from tests.unit.test_session import PASSWORD, TIMEOUTS

WITHIN = 10.0


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Wire, SenderSession, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    offer = messages.Offer(messages.KIND_FILE, "a", 1)
    session = SenderSession(PASSWORD, offer, TIMEOUTS, compress=True)
    try:
        yield Wire(ours, session), session, theirs
    finally:
        ours.close()
        theirs.close()


async def test_a_write_that_fits_tells_the_session_it_did_not_wait(wire) -> None:
    ours, session, _ = wire
    await asyncio.wait_for(ours.write(b"x" * 1024), WITHIN)
    assert session.policy.waited_at is None


async def test_a_write_into_a_full_queue_tells_the_session_it_waited(wire) -> None:
    ours, session, theirs = wire
    loop = asyncio.get_running_loop()
    total = 8 << 20  # far more than both socket buffers hold

    async def drain() -> int:
        got = 0
        while got < total:
            await asyncio.sleep(0.001)
            try:
                got += len(theirs.recv(1 << 16))
            except BlockingIOError:
                pass
        return got

    reading = loop.create_task(drain())
    await asyncio.wait_for(ours.write(b"y" * total), WITHIN)
    assert session.policy.congested(loop.time())
    assert await asyncio.wait_for(reading, WITHIN) == total


def compressible(size: int) -> bytes:
    line = b"%08d 2026-12-08T01:00:00Z ferry relay: paired nameplate 7 (sender, receiver)\n"
    return b"".join(line % i for i in range(size // 80 + 1))[:size]


@pytest.mark.parametrize("compress", [True, False], ids=["default", "no-compress"])
async def test_a_compressible_file_arrives_whole_with_or_without_compression(
    relay_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture, compress: bool
) -> None:
    relay = await relay_factory()
    data = compressible(6 << 20)
    source = tmp_path / "app.log"
    source.write_bytes(data)
    config = ClientConfig(
        connect_timeout=5, handshake_timeout=5, io_timeout=10, ack_timeout=10, compress=compress
    )
    caplog.set_level(logging.INFO, "ferry.send")
    sending = SendingTask(relay, source, config)
    code = await sending.code()
    out = tmp_path / "out"
    await asyncio.wait_for(receiver(relay, code, out).run(), 30)
    await sending.result()
    got = (out / "app.log").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    (line,) = [r.getMessage() for r in caplog.records if "records:" in r.getMessage()]
    if not compress:
        assert line.startswith("compressed 0 of"), line
    assert FAST.compress  # compression is on unless asked otherwise
