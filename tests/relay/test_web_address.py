"""The relay's web address on NAMEPLATE: only to senders that ask, only when it has one.

In-process relay, raw clients speaking the rendezvous lines by hand.
"""

from __future__ import annotations

import pytest

from tests.relay.harness import RawClient, running_relay

pytestmark = pytest.mark.timeout(30)

WEB_URL = "https://relay.example:9021/"


async def _first_lines(port: int, request: str, count: int) -> list[str]:
    client = await RawClient.connect(port)
    try:
        await client.send(request)
        return [await client.line() for _ in range(count)]
    finally:
        client.close()


async def test_a_sender_that_asks_gets_the_web_address_on_its_nameplate_line() -> None:
    async with running_relay(web_url=WEB_URL) as relay:
        assigned, ticket = await _first_lines(relay.port, "FERRY 1 SEND STANDBY WEB\n", 2)
        assert assigned.startswith("NAMEPLATE ") and assigned.endswith(f" {WEB_URL}"), assigned
        assert len(assigned.split()) == 3 and ticket.startswith("TICKET "), (assigned, ticket)
        (assigned,) = await _first_lines(relay.port, "FERRY 1 SEND WEB\n", 1)
        assert assigned.endswith(f" {WEB_URL}"), assigned


@pytest.mark.parametrize("request_line", ["FERRY 1 SEND\n", "FERRY 1 SEND STANDBY\n"])
async def test_a_sender_that_does_not_ask_gets_the_nameplate_line_it_always_got(
    request_line: str,
) -> None:
    async with running_relay(web_url=WEB_URL) as relay:
        (assigned,) = await _first_lines(relay.port, request_line, 1)
        assert assigned.split() == ["NAMEPLATE", assigned.split()[1]], assigned


async def test_a_relay_without_a_web_address_answers_the_question_with_a_plain_nameplate() -> None:
    async with running_relay() as relay:
        assigned, ticket = await _first_lines(relay.port, "FERRY 1 SEND STANDBY WEB\n", 2)
        assert len(assigned.split()) == 2 and ticket.startswith("TICKET "), (assigned, ticket)
