"""An event loop whose time a test moves by hand, for deadline tests that never sleep.

The relay and the pump read the event loop's clock and wait on its timers,
so on a `ClockLoop` a 10-minute idle timeout passes the moment the test
calls `advance(600)`: the next turn of the loop runs every timer now due.
Sockets stay real; only time is fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class ClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._offset = 0.0

    def time(self) -> float:
        return super().time() + self._offset

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self._offset += seconds


async def turns(count: int = 20) -> None:
    """Let the loop run `count` turns (due timers fire, ready sockets are served)."""
    for _ in range(count):
        await asyncio.sleep(0)


def run_on_clock(scenario: Callable[[ClockLoop], Awaitable[None]]) -> None:
    """Run scenario(loop) to its end on a fresh ClockLoop, then close the loop."""
    loop = ClockLoop()
    try:
        loop.run_until_complete(scenario(loop))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
