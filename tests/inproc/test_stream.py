"""A stream (stdin) whose producer is slow: its bytes keep moving, the transfer completes.

The relay, the sender and the receiver share one event loop whose clock the
test moves (tests/relay/clock.py): the producer's pauses are whole seconds on
that clock, not waited out in real time.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from ferry.address import Address
from ferry.client.progress import NoProgress
from ferry.client.receiver import Receiver, prepare_directory
from ferry.client.sender import Sender
from ferry.client.sources import STREAM_LINGER, StreamSource
from ferry.codes import Code
from ferry.config import ClientConfig, RelayConfig
from ferry.relay.listen import open_listeners
from ferry.relay.server import Relay
from ferry_testing.waiting import until
from tests.relay.clock import ClockLoop, run_on_clock, turns

IMPATIENT = ClientConfig(connect_timeout=5, handshake_timeout=5, io_timeout=2.5, ack_timeout=10)
"""A receiver that gives up after 2.5 s without a byte; the producer pauses 1 s at a time."""
PAUSE = 1.0


class Received(NoProgress):
    """The receiver's progress: bytes delivered so far."""

    def __init__(self) -> None:
        self.done = 0

    def update(self, done: int) -> None:
        self.done += done


def test_a_slow_producer_on_stdin_keeps_the_transfer_alive(tmp_path: Path) -> None:
    pieces = [bytes([i]) * 100 for i in range(6)]  # 100 bytes a second for 6 s
    assert PAUSE >= STREAM_LINGER  # each pause lets the sender send what it has

    async def scenario(loop: ClockLoop) -> None:
        listeners = open_listeners(Address("127.0.0.1", 0))
        relay = Relay(RelayConfig())
        await relay.start(listeners)
        address = Address("127.0.0.1", listeners[0].getsockname()[1])
        read_end, write_end = os.pipe()
        tasks: list[asyncio.Task[object]] = []
        try:
            shown: asyncio.Future[Code] = loop.create_future()
            source = StreamSource(read_end, "slow.log", IMPATIENT.record_size)
            sender = Sender(address, source, IMPATIENT, NoProgress(), shown.set_result)
            sending = asyncio.create_task(sender.run())
            tasks.append(sending)
            code = await asyncio.wait_for(shown, 5)
            out = prepare_directory(str(tmp_path / "out"))
            received = Received()
            receiving = asyncio.create_task(Receiver(address, code, out, IMPATIENT, received).run())
            tasks.append(receiving)

            def arrived(count: int) -> Callable[[], bool]:
                return lambda: received.done >= count or receiving.done()

            for i, piece in enumerate(pieces):
                os.write(write_end, piece)
                await turns()  # the sender reads the piece and lingers for more
                loop.advance(PAUSE)  # a second without input: the piece goes out alone
                await until(arrived(100 * (i + 1)), f"piece {i} at the receiver", 10)
            os.close(write_end)
            write_end = -1
            saved = await asyncio.wait_for(receiving, 30)
            await asyncio.wait_for(sending, 10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
            await relay.close()
        assert not relay.capacity.held(), relay.capacity.held()
        assert saved == out / "slow.log"
        assert saved.read_bytes() == b"".join(pieces)

    run_on_clock(scenario)
