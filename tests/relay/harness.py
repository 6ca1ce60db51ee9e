"""In-process relay on 127.0.0.1:0 and raw rendezvous clients for relay tests.

Raw clients speak the rendezvous lines by hand, so a test can stop, stall,
reset or lie at any step. Every wait has a timeout; every socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ferry.address import Address
from ferry.config import RelayConfig
from ferry.protocol.records import Header, RecordType
from ferry.relay.listen import open_listeners
from ferry.relay.server import Relay

TIMEOUT = 5.0

PAKE_RECORD = Header(33, RecordType.PAKE, 0).encode() + b"\x02" + b"k" * 32
"""What ./receive sends right behind its RECV line: a PAKE record (this one's body is
the right size, not a valid point). The relay pairs a claim only once it is whole."""


def claim(nameplate: int | str) -> bytes:
    """A receiver's claim as ./receive sends it: the RECV line and its PAKE record."""
    return f"FERRY 1 RECV {nameplate}\n".encode() + PAKE_RECORD


@dataclass
class RunningRelay:
    relay: Relay
    port: int


@contextlib.asynccontextmanager
async def running_relay(**settings: object) -> AsyncIterator[RunningRelay]:
    # Test clients are all on loopback; count them per address like remote ones.
    settings.setdefault("limit_loopback", True)
    # One test address may fill a pool (tests of the global caps); the shares'
    # own tests set this.
    settings.setdefault("fair_share_addresses", 1)
    config = RelayConfig(**settings)  # type: ignore[arg-type]
    assert not config.problems(), config.problems()
    listeners = open_listeners(Address("127.0.0.1", 0))
    relay = Relay(config)
    await relay.start(listeners)
    try:
        yield RunningRelay(relay, listeners[0].getsockname()[1])
    finally:
        await relay.close()
    # Whatever the test did, a closed relay holds no capacity (capacity.py).
    assert not relay.capacity.held(), relay.capacity.held()


class RawClient:
    """One TCP connection to the relay, driven line by line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            async with asyncio.timeout(TIMEOUT):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        async with asyncio.timeout(TIMEOUT):
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def line(self, timeout: float = TIMEOUT) -> str:
        """The next line without its LF; "" when the relay closed first."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while (end := self.buffer.find(b"\n")) < 0:
                try:
                    data = await loop.sock_recv(self.sock, 4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return ""
                self.buffer += data
        text = self.buffer[:end].decode("ascii", "replace")
        del self.buffer[: end + 1]
        return text

    async def exactly(self, size: int, timeout: float = TIMEOUT) -> bytes:
        """The next `size` bytes (fewer only if the relay closed first)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while len(self.buffer) < size:
                data = await loop.sock_recv(self.sock, 65536)
                if not data:
                    break
                self.buffer += data
        head = bytes(self.buffer[:size])
        del self.buffer[:size]
        return head

    async def read_until_closed(self, timeout: float = TIMEOUT) -> bytes:
        loop = asyncio.get_running_loop()
        data = bytes(self.buffer)
        self.buffer.clear()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await loop.sock_recv(self.sock, 65536)
                except ConnectionResetError:
                    return data
                if not chunk:
                    return data
                data += chunk

    def reset(self) -> None:
        """Close with RST instead of FIN (SO_LINGER 0)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def half_close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


async def register_sender(port: int, source: str = "127.0.0.1") -> tuple[RawClient, int]:
    control = await RawClient.connect(port, source)
    await control.send("FERRY 1 SEND\n")
    answer = await control.line()
    assert answer.startswith("NAMEPLATE "), answer
    return control, int(answer.split()[1])


async def pair(port: int, source: str = "127.0.0.1") -> tuple[RawClient, RawClient, RawClient, int]:
    """A sender (control, data) and a receiver joined into a pipe: (control, data, receiver, n)."""
    control, nameplate = await register_sender(port, source)
    receiver = await RawClient.connect(port, source)
    await receiver.send(claim(nameplate))
    incoming = await control.line()
    assert incoming.startswith("INCOMING "), incoming
    data = await RawClient.connect(port, source)
    await data.send(f"FERRY 1 JOIN {nameplate} {incoming.split()[1]}\n")
    assert await data.line() == "PAIRED"
    assert await receiver.line() == "PAIRED"
    # The receiver's PAKE record, which its claim carried: the pipe starts clean.
    assert await data.exactly(len(PAKE_RECORD)) == PAKE_RECORD
    return control, data, receiver, nameplate


def close_all(*clients: RawClient) -> None:
    for client in clients:
        client.close()


async def standby_sender(port: int) -> tuple[RawClient, int, str]:
    """A standby sender's control connection: (control, nameplate, its first TICKET)."""
    control = await RawClient.connect(port)
    await control.send("FERRY 1 SEND STANDBY\n")
    assigned = await control.line()
    assert assigned.startswith("NAMEPLATE "), assigned
    ticket = await control.line()
    assert ticket.startswith("TICKET "), ticket
    return control, int(assigned.split()[1]), ticket.split()[1]
