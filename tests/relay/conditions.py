"""Waiting for what a test can observe (a log line, a counter), never for a fixed time."""

from __future__ import annotations

import logging

import pytest

from ferry.relay import logs
from ferry_testing.waiting import until


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
