"""A claim that never presented a well-formed PAKE message costs the sender nothing.

The nameplate is public: whoever knows it (a stranger, or the relay itself)
can make the sender's data connection meet any bytes. Only a PAKE message
that the SPAKE2 library accepted is a guess at the code; everything else
(silence, a disconnect, garbage, another record type, an oversize header,
an invalid point) must leave both of the sender's budgets untouched.

Two settings: a malicious relay written here, which pairs the sender with
each bad claim itself (nothing filters them), and the real relay in
process, with a stranger's raw claims (the relay filters most of them
before the sender sees them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ferry.address import Address
from ferry.client.progress import NoProgress
from ferry.client.sender import Sender
from ferry.client.sources import Outgoing
from ferry.codes import Code
from ferry.config import ClientConfig
from ferry.errors import TooManyAttempts
from ferry.protocol.events import Timeouts
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import Header, RecordType
from tests.inproc.conftest import RunningRelay
from tests.inproc.test_transfer import receiver, wrong_words
from tests.relay.harness import RawClient

pytestmark = pytest.mark.timeout(60)

StartRelay = Callable[..., Awaitable[RunningRelay]]

# Budgets of one: any claim counted against either would end the sender.
STRICT = ClientConfig(
    connect_timeout=5, handshake_timeout=0.5, io_timeout=10, ack_timeout=10,
    max_wrong_codes=1, max_failed_attempts=1,
)  # fmt: skip

# Through the real relay a silent claim is never paired, so the sender's handshake timeout
# only has to fit an honest exchange on a busy machine.
THROUGH_RELAY = dataclasses.replace(STRICT, handshake_timeout=10)

SILENT = b"<silent>"
LEAVE = b"<leave>"
BAD_CLAIMS = {
    "silent until the handshake timeout": SILENT,
    "disconnect": LEAVE,
    "garbage": b"\x00\x00\x00\x05\x63\x00hello",
    "wrong record type": Header(32, RecordType.CONFIRM, 0).encode() + bytes(32),
    "sealed record": Header(40, RecordType.OFFER, 0).encode() + bytes(40),
    "oversize": Header(1 << 31, RecordType.PAKE, 0).encode() + bytes(64),
    "invalid point": Header(33, RecordType.PAKE, 0).encode() + b"B" + b"\xff" * 32,
    "a point for the other side": Header(33, RecordType.PAKE, 0).encode() + b"A" + b"\x01" * 32,
    "truncated PAKE": Header(33, RecordType.PAKE, 0).encode() + b"B" + b"\x01" * 8,
}


def _sender(address: Address, path: Path, config: ClientConfig) -> tuple[Sender, Outgoing]:
    path.write_bytes(b"hello")
    outgoing = Outgoing.open(str(path))
    return Sender(address, outgoing, config, NoProgress(), lambda code: None), outgoing


class MaliciousRelay:
    """Speaks rendezvous like a relay, then pairs each standby data connection with
    the next of `claims` (bytes it sends as the "receiver", SILENT or LEAVE)."""

    def __init__(self, claims: list[bytes]) -> None:
        self.claims = list(claims)
        self.served = 0
        self.all_served = asyncio.Event()
        self._control: asyncio.StreamWriter | None = None
        self._tickets = 0
        self.handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def _ticket(self) -> bytes:
        self._tickets += 1
        return f"TICKET {self._tickets:032x}\n".encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers[task] = writer
        with contextlib.suppress(ConnectionError):
            await self._serve(reader, writer)

    async def close(self) -> None:
        for task, writer in self.handlers.items():
            task.cancel()
            writer.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        for writer in self.handlers.values():
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line.startswith(b"FERRY 1 SEND"):
            self._control = writer
            writer.write(b"NAMEPLATE 7\n" + self._ticket())
            await reader.read()  # hold the control connection while the sender does
            return
        if not self.claims:
            await reader.read()  # the standby connection after the last claim: park it
            return
        claim = self.claims.pop(0)
        writer.write(b"PAIRED\n")
        if claim is LEAVE:
            writer.close()
        elif claim is not SILENT:
            writer.write(claim)
        await reader.read()  # until the sender closes this data connection
        writer.close()
        self.served += 1
        if not self.claims:
            self.all_served.set()
        assert self._control is not None
        self._control.write(self._ticket())


@contextlib.asynccontextmanager
async def malicious_relay(claims: list[bytes]) -> AsyncIterator[tuple[MaliciousRelay, Address]]:
    fake = MaliciousRelay(claims)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    try:
        yield fake, Address("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await fake.close()
        await server.wait_closed()


@pytest.mark.parametrize("claim", list(BAD_CLAIMS.values()), ids=list(BAD_CLAIMS))
async def test_a_malicious_relays_claim_without_a_valid_pake_message_costs_nothing(
    tmp_path: Path, claim: bytes
) -> None:
    async with malicious_relay([claim] * 3) as (fake, address):
        sender, outgoing = _sender(address, tmp_path / "a.txt", STRICT)
        task = asyncio.create_task(sender.run())
        try:
            await asyncio.wait_for(fake.all_served.wait(), 20)
            await asyncio.sleep(0.2)  # what the sender makes of the last one
            assert not task.done(), task
            assert (sender.wrong_codes, sender.failed_attempts) == (0, 0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            outgoing.close()


async def test_a_malicious_relays_real_guess_costs_one_wrong_code(tmp_path: Path) -> None:
    # The same relay, now with a well-formed PAKE message under a guessed code:
    # that is a guess, and with a budget of one the sender gives up.
    guess = ReceiverSession(b"7-apple-apple-apple", Timeouts(5, 5, 5)).first_flight()
    async with malicious_relay([guess]) as (_, address):
        sender, outgoing = _sender(address, tmp_path / "a.txt", STRICT)
        try:
            with pytest.raises(TooManyAttempts):
                await asyncio.wait_for(sender.run(), 20)
        finally:
            outgoing.close()
    assert sender.wrong_codes == 1


# -- the real relay, a stranger's raw claims ----------------------------------------------------


async def _bad_claim(port: int, nameplate: int, early: bytes) -> None:
    """One claim that makes no guess; returns once the relay or the sender ended it."""
    client = await RawClient.connect(port)
    try:
        line = f"FERRY 1 RECV {nameplate}\n".encode()
        if early is LEAVE:
            await client.send(line)
            return
        await client.send(line if early is SILENT else line + early)
        with contextlib.suppress(TimeoutError):
            await client.read_until_closed(timeout=1.0)
    finally:
        client.close()


async def test_a_strangers_claims_without_a_valid_pake_message_cost_the_sender_nothing(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sender, outgoing = _sender(relay.address, tmp_path / "a.txt", THROUGH_RELAY)
    shown: asyncio.Future[Code] = asyncio.get_running_loop().create_future()
    sender.show_code = shown.set_result
    task = asyncio.create_task(sender.run())
    try:
        code = await asyncio.wait_for(shown, 5)
        for early in BAD_CLAIMS.values():
            await _bad_claim(relay.address.port, code.nameplate, early)
        assert not task.done(), task
        assert (sender.wrong_codes, sender.failed_attempts) == (0, 0)
        await asyncio.wait_for(receiver(relay, code, tmp_path / "out").run(), 20)
        await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        outgoing.close()
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"


async def test_through_the_real_relay_a_wrong_code_still_counts(
    relay_factory: StartRelay, tmp_path: Path
) -> None:
    relay = await relay_factory()
    sender, outgoing = _sender(relay.address, tmp_path / "a.txt", THROUGH_RELAY)
    shown: asyncio.Future[Code] = asyncio.get_running_loop().create_future()
    sender.show_code = shown.set_result
    task = asyncio.create_task(sender.run())
    try:
        code = await asyncio.wait_for(shown, 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(receiver(relay, wrong_words(code), tmp_path / "o").run(), 20)
        with pytest.raises(TooManyAttempts):
            await asyncio.wait_for(task, 20)
    finally:
        outgoing.close()
    assert sender.wrong_codes == 1
