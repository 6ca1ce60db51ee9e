"""In-process fixtures: a real relay on 127.0.0.1:0 inside the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ferry.address import Address
from ferry.config import RelayConfig
from ferry.relay.listen import open_listeners
from ferry.relay.server import Relay


class RunningRelay:
    def __init__(self, relay: Relay, port: int) -> None:
        self.relay = relay
        self.address = Address("127.0.0.1", port)


@pytest.fixture
async def relay_factory() -> AsyncIterator[object]:
    started: list[Relay] = []

    async def start(config: RelayConfig | None = None) -> RunningRelay:
        config = config or RelayConfig()
        listeners = open_listeners(Address("127.0.0.1", 0))
        relay = Relay(config)
        await relay.start(listeners)
        started.append(relay)
        return RunningRelay(relay, listeners[0].getsockname()[1])

    yield start
    for relay in started:
        await relay.close()
        assert not relay.capacity.held(), relay.capacity.held()  # capacity.py
