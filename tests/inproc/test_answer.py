"""A receiver that never decides (a person away from its --ask prompt): the sender's
answer timeout ends that attempt like a refusal, and the code still works."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ferry.client.output import Output
from ferry.client.progress import NoProgress
from ferry.client.receiver import Receiver, prepare_directory
from ferry.client.wire import Wire
from ferry.errors import ConnectionLost
from tests.inproc.conftest import RunningRelay
from tests.inproc.test_transfer import FAST, SendingTask

StartRelay = Callable[..., Awaitable[RunningRelay]]


class Undecided(Output):
    """A person away from the --ask prompt."""

    async def confirm(self, summary: str, wire: Wire) -> bool:
        await asyncio.sleep(3600)
        return False


async def test_an_unanswered_offer_ends_that_attempt_and_the_code_stays_alive(
    relay_factory: StartRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await relay_factory()
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    config = dataclasses.replace(FAST, answer_timeout=1.0)
    sending = SendingTask(relay, source, config)
    code = await sending.code()
    out = prepare_directory(str(tmp_path / "out"))
    undecided = Receiver(relay.address, code, out, FAST, NoProgress(), output=Undecided())
    away = asyncio.create_task(undecided.run())
    with caplog.at_level(logging.WARNING, logger="ferry.send"):
        for _ in range(100):
            if "did not answer" in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert "did not answer (1s); still waiting" in caplog.text
    assert not sending.task.done()
    away.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionLost):
        await away
    saved = await Receiver(relay.address, code, out, FAST, NoProgress()).run()
    await sending.result()
    assert saved is not None and saved.read_bytes() == b"hello"
