"""Waiting for what a test can observe (a file, a log line, a counter), never for a fixed time.

One home for polling, so every wait in the suite has a deadline and says what it
waited for when it fails. Two ways to wait, one signature (predicate, what,
timeout):

- wait_for(), in a test or helper that runs no event loop: polls with
  time.sleep();
- until(), inside a coroutine: polls with asyncio.sleep() so the loop (an
  in-process relay, say) keeps running, and measures its deadline on the
  loop's clock.

wait_until() is the non-raising form, for a test that asserts on the result
itself or does something else when the wait runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_INTERVAL = 0.02
"""Seconds between two looks from a blocking wait."""
ASYNC_POLL_INTERVAL = 0.005
"""Seconds between two looks from inside an event loop: short, because a fake clock
(tests/relay/clock.py) still moves with real time while a test waits."""


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Poll predicate() until true or timeout seconds passed; the last answer, as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def wait_for(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 10.0,
    interval: float = POLL_INTERVAL,
) -> None:
    """Return once predicate() holds; fail the test (AssertionError) after timeout seconds."""
    if not wait_until(predicate, timeout, interval):
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


async def until(
    predicate: Callable[[], object],
    what: str,
    timeout: float = 5.0,
    interval: float = ASYNC_POLL_INTERVAL,
) -> None:
    """wait_for() for a coroutine: the event loop runs while it waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
