"""Hypothesis against the relay's handshake: the parser, the line buffer, the live relay.

Property: whatever a client sends first, the relay answers with at most one
well-formed line (an ERROR with a known reason, or the answer to a valid
request) and never buffers more than max_hello_bytes, and a real pairing
still works afterwards.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ferry.errors import BadRequest
from ferry.protocol import rendezvous as rv
from tests.relay.clock import ClockLoop, run_on_clock, turns
from tests.relay.harness import RawClient, pair, running_relay

pytestmark = pytest.mark.timeout(120)

REASONS = {v for k, v in vars(rv).items() if k.startswith("REASON_")}

hello_like = st.builds(
    lambda parts: " ".join(parts) + "\n",
    st.lists(
        st.sampled_from(["FERRY", "1", "2", "SEND", "RECV", "JOIN", "PONG", "0", "-1",
                         "99999999999", "a" * 32, "f" * 32, "", "\t", "\x00", "é"]),
        max_size=6,
    ),
).map(lambda text: text.encode("utf-8"))  # fmt: skip
garbage = st.one_of(st.binary(max_size=600), hello_like)


@given(garbage)
@settings(max_examples=400, deadline=None)
def test_parse_client_line_gives_a_message_or_bad_request(data: bytes) -> None:
    try:
        message = rv.parse_client_line(data)
    except BadRequest as exc:
        assert exc.reason in REASONS
    else:
        assert rv.parse_client_line(rv.encode(message)) == message


@given(st.lists(st.binary(max_size=200), max_size=20), st.integers(16, 128))
@settings(max_examples=300, deadline=None)
def test_line_buffer_never_holds_a_line_longer_than_its_limit(
    chunks: list[bytes], limit: int
) -> None:
    buffer = rv.LineBuffer(limit)
    for chunk in chunks:
        buffer.receive_data(chunk)
        try:
            while (line := buffer.next_line()) is not None:
                assert len(line) <= limit and line.endswith(b"\n")
        except BadRequest:
            return
        assert len(buffer) < limit


@given(st.lists(garbage, min_size=1, max_size=8))
@example([b"GET \r\n\r\n", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", b"GE"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_live_relay_answers_garbage_with_one_line_and_keeps_pairing(payloads: list[bytes]) -> None:
    run_on_clock(lambda loop: asyncio.wait_for(_garbage_then_pair(loop, payloads), 30))


async def _garbage_then_pair(loop: ClockLoop, payloads: list[bytes]) -> None:
    async with running_relay(handshake_timeout=0.2, max_hello_bytes=64) as r:
        clients = [await RawClient.connect(r.port) for _ in payloads]
        for client, payload in zip(clients, payloads, strict=True):
            if payload:
                try:
                    await client.send(payload)
                except OSError:
                    pass  # the relay may already have refused and reset us
        await turns(50)  # every connection accepted, its hello read
        loop.advance(0.3)  # past the handshake deadline: whoever is unfinished is refused
        for client, payload in zip(clients, payloads, strict=True):
            first = await client.line(timeout=5)
            if payload.startswith((b"GET ", b"HEAD ")):  # HTTP: the web front answers it
                assert first == "" or first.startswith("HTTP/1.1 "), first
                continue
            assert first == "" or first.split(" ")[0] in ("ERROR", "NAMEPLATE"), first
            if first.startswith("ERROR "):
                assert first.split(" ")[1] in REASONS
        control, data, receiver, _ = await pair(r.port)
        await data.send(b"still works")
        data.half_close()
        assert await receiver.read_until_closed() == b"still works"
        for client in (*clients, control, data, receiver):
            client.close()
        assert r.relay.handshaking == 0
