"""Waiting for what a test can observe (a log line, a counter), never for a fixed time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from ferry.relay import logs

POLL: float = 0.005


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Return once predicate() holds; fail the test after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, logs.Field]]:
    """The fields of every outcome line logged so far."""
    return [
        fields
        for record in caplog.records
        if record.name == logs.LOGGER_NAME
        and isinstance(fields := getattr(record, "fields", None), dict)
    ]


async def logged(
    caplog: pytest.LogCaptureFixture, count: int = 1, timeout: float = 5.0
) -> list[dict[str, logs.Field]]:
    """The outcome lines, once at least `count` have been logged.

    The test must have called caplog.set_level(logging.INFO, "ferry.relay") first.
    """
    assert logging.getLogger(logs.LOGGER_NAME).isEnabledFor(logging.INFO), "caplog.set_level"
    await until(lambda: len(outcome_lines(caplog)) >= count, f"{count} outcome line(s)", timeout)
    return outcome_lines(caplog)
