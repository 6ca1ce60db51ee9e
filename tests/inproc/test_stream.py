"""A stream (stdin) whose producer is slow: its bytes keep moving, the transfer completes."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ferry.client.progress import NoProgress
from ferry.client.receiver import Receiver, prepare_directory
from ferry.client.sender import Sender
from ferry.client.sources import StreamSource
from ferry.codes import Code
from ferry.config import ClientConfig
from tests.inproc.conftest import RunningRelay

StartRelay = Callable[..., Awaitable[RunningRelay]]
IMPATIENT = ClientConfig(connect_timeout=5, handshake_timeout=5, io_timeout=2.5, ack_timeout=10)
"""A receiver that gives up after 2.5 s without a byte; the producer pauses 1 s at a time."""


def slow_producer(fd: int, pieces: list[bytes], pause: float) -> threading.Thread:
    def produce() -> None:
        try:
            for piece in pieces:
                os.write(fd, piece)
                time.sleep(pause)
        finally:
            os.close(fd)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    return thread


async def test_a_slow_producer_on_stdin_keeps_the_transfer_alive(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    read_end, write_end = os.pipe()
    pieces = [bytes([i]) * 100 for i in range(6)]  # 100 bytes a second for 6 s
    shown: asyncio.Future[Code] = asyncio.get_running_loop().create_future()
    source = StreamSource(read_end, "slow.log", IMPATIENT.record_size)
    sender = Sender(relay.address, source, IMPATIENT, NoProgress(), shown.set_result)
    sending = asyncio.create_task(sender.run())
    code = await asyncio.wait_for(shown, 5)
    producer = slow_producer(write_end, pieces, pause=1.0)
    out = prepare_directory(str(tmp_path / "out"))
    receiver = Receiver(relay.address, code, out, IMPATIENT, NoProgress())
    try:
        saved = await asyncio.wait_for(receiver.run(), 30)
        await asyncio.wait_for(sending, 10)
    finally:
        os.close(read_end)
        producer.join(10)
    assert saved == out / "slow.log"
    assert saved.read_bytes() == b"".join(pieces)
