"""A Sender asking for the relay's web address, against a real in-process relay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ferry.client.progress import NoProgress
from ferry.client.sender import Sender
from ferry.client.sources import Outgoing
from ferry.codes import Code
from ferry.config import RelayConfig
from ferry.errors import BadRequest
from ferry.protocol import rendezvous as rv
from tests.inproc.conftest import RunningRelay
from tests.inproc.test_transfer import FAST, _parked, receiver

StartRelay = Callable[..., Awaitable[RunningRelay]]
WEB_URL = "https://relay.example:9021/"


async def _send_hello(
    relay: RunningRelay, tmp_path: Path, ask: bool
) -> tuple[Sender, asyncio.Task[None], Code, str]:
    """A sender of a.txt ("hello"): its task, its code, and its web address when shown."""
    (tmp_path / "a.txt").write_bytes(b"hello")
    outgoing = Outgoing.open(str(tmp_path / "a.txt"))
    shown: asyncio.Future[tuple[Code, str]] = asyncio.get_running_loop().create_future()

    def show(code: Code) -> None:
        shown.set_result((code, sender.web_url))

    sender = Sender(relay.address, outgoing, FAST, NoProgress(), show, ask_web_url=ask)
    task = asyncio.create_task(sender.run())
    task.add_done_callback(lambda _: outgoing.file.close())
    code, web_url = await asyncio.wait_for(shown, 5)
    return sender, task, code, web_url


async def _receive_hello(relay: RunningRelay, code: Code, task: asyncio.Task[None], out: Path):
    await asyncio.wait_for(receiver(relay, code, out).run(), 20)
    await asyncio.wait_for(task, 20)
    assert (out / "a.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("ask", [True, False], ids=["asked", "not-asked"])
async def test_sender_knows_the_relay_web_address_when_it_shows_the_code_if_it_asked(
    relay_factory: StartRelay, tmp_path: Path, ask: bool
) -> None:
    relay = await relay_factory(RelayConfig(web_url=WEB_URL))
    _, task, code, web_url = await _send_hello(relay, tmp_path, ask)
    assert web_url == (WEB_URL if ask else "")
    assert await _parked(relay, code.nameplate)  # still a standby sender
    await _receive_hello(relay, code, task, tmp_path / "out")


async def test_sender_asks_again_without_web_when_the_relay_is_from_before_it(
    relay_factory: StartRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = rv.parse_client_line
    asked: list[bytes] = []

    def before_web(line: bytes) -> rv.ClientMessage:
        # What a relay from before the web address answers to SEND STANDBY WEB.
        asked.append(line)
        if line.endswith(b" WEB\n"):
            raise BadRequest(rv.REASON_BAD_REQUEST, "unknown request")
        return original(line)

    monkeypatch.setattr(rv, "parse_client_line", before_web)
    relay = await relay_factory(RelayConfig(web_url=WEB_URL))
    _, task, code, web_url = await _send_hello(relay, tmp_path, ask=True)
    assert web_url == ""
    assert asked[:2] == [b"FERRY 1 SEND STANDBY WEB\n", b"FERRY 1 SEND STANDBY\n"]
    assert await _parked(relay, code.nameplate)  # standby kept: only WEB was dropped
    await _receive_hello(relay, code, task, tmp_path / "out")
