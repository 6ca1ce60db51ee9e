"""A lightweight in-process asyncio load generator for the ferry relay.

It speaks the relay's rendezvous lines through ferry.protocol.rendezvous
(the same encode, parse and LineBuffer as ferry's client), with no key
exchange and no encryption: the relay is blind after PAIRED, so plain bytes
cost it the same.

    control:  FERRY 1 SEND           -> NAMEPLATE n   (answers PING with PONG)
    receiver: FERRY 1 RECV n         -> control gets INCOMING ticket
    data:     FERRY 1 JOIN n ticket  -> receiver and data both get PAIRED
    standby:  FERRY 1 SEND STANDBY   -> NAMEPLATE n, TICKET t; the data connection
              joins with t at once and waits (parked) until a receiver claims n

A Pipe is one such pairing: three sockets (control, receiver, sender data).
Everything is bounded: each step has a timeout, bulk opening runs at most
`concurrency` handshakes at once, filling stops once no byte moved for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ferry.errors import RemoteProtocolError
from ferry.protocol import rendezvous as rv
from ferry.protocol.records import Header, RecordType
from ferry.relay import peek

STEP_TIMEOUT = 30.0
CLAIM_RECORD = Header(33, RecordType.PAKE, 0).encode() + bytes(33)
CHUNK = 1024 * 1024
FDS_PER_PIPE = 3
FD_RESERVE = 64
PIPES_PER_ADDRESS = 20
"""Pipes per source address: 60 connections and 20 look-ups, inside the relay's
default per-address limits (100 connections, 30 look-ups a minute)."""
CONTROLS_PER_ADDRESS = 50
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

T = TypeVar("T")


class LoadgenError(Exception):
    """The relay refused or answered something unexpected."""


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft open-files limit towards wanted (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if cap > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (cap, hard))
            soft = cap
    return soft


def fds_for(pipes: int = 0, controls: int = 0) -> int:
    return FDS_PER_PIPE * pipes + controls + FD_RESERVE


def source_for(index: int, per_address: int, group: int) -> str:
    """A loopback source address: clients index // per_address share one, 127.<group>.x.y.

    Spreading clients over addresses keeps the relay's per-address limits out of
    the measurement, like clients coming from many machines."""
    slot = index // per_address
    high, low = divmod(slot, 254)
    return f"127.{group}.{high % 256}.{low + 1}"


def _wire(message: rv.RelayMessage) -> str:
    """A relay message as the relay sent it, for error texts ("ERROR busy relay busy")."""
    return rv.encode(message).decode("ascii").rstrip("\n")


class Link:
    """A non-blocking TCP socket with a line reader for the rendezvous phase."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines = rv.LineBuffer()

    @classmethod
    async def connect(cls, host: str, port: int, source: str) -> Link:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, message: rv.ClientMessage, behind: bytes = b"") -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, rv.encode(message) + behind)

    async def receive(self) -> rv.RelayMessage:
        """The relay's next message; LoadgenError on EOF or a line that is not one."""
        loop = asyncio.get_running_loop()
        try:
            while (line := self.lines.next_line()) is None:
                data = await loop.sock_recv(self.sock, rv.MAX_LINE)
                if not data:
                    raise LoadgenError("relay closed the connection")
                self.lines.receive_data(data)
            return rv.parse_relay_line(line)
        except RemoteProtocolError as exc:
            raise LoadgenError(str(exc)) from None

    def take_rest(self) -> int:
        """Drop bytes read past the last line (pipe payload); return how many."""
        return len(self.lines.take_rest())

    def close(self) -> None:
        self.sock.close()


class Control:
    """A sender's control connection: holds a nameplate, answers PING, queues tickets."""

    def __init__(self, link: Link, nameplate: int, parked: Link | None = None) -> None:
        self.link = link
        self.nameplate = nameplate
        self.parked = parked
        """A standby sender's data connection, waiting at the relay for a receiver."""
        self.tickets: asyncio.Queue[str] = asyncio.Queue()
        self.ended: str | None = None
        self._task = asyncio.create_task(self._listen())

    @classmethod
    async def register(cls, host: str, port: int, source: str, standby: bool = False) -> Control:
        """A waiting sender; with standby, as ferry's sender does: its data connection parked."""
        link = await Link.connect(host, port, source)
        parked: Link | None = None
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await link.send(rv.SendRequest(standby=standby))
                assigned = await link.receive()
                if not isinstance(assigned, rv.NameplateAssigned):
                    raise LoadgenError(f"expected a nameplate, got {_wire(assigned)}")
                if standby:
                    ticket = await link.receive()
                    if not isinstance(ticket, rv.StandbyTicket):
                        raise LoadgenError(f"expected a ticket, got {_wire(ticket)}")
                    parked = await Link.connect(host, port, source)
                    await parked.send(rv.JoinRequest(assigned.nameplate, ticket.ticket))
        except BaseException:
            link.close()
            if parked is not None:
                parked.close()
            raise
        return cls(link, assigned.nameplate, parked)

    async def _listen(self) -> None:
        try:
            while True:
                match await self.link.receive():
                    case rv.Ping():
                        await self.link.send(rv.Pong())
                    case rv.Incoming(ticket) | rv.StandbyTicket(ticket):
                        self.tickets.put_nowait(ticket)
                    case other:
                        self.ended = _wire(other)
                        return
        except (LoadgenError, OSError) as exc:
            self.ended = str(exc)

    async def next_ticket(self) -> str:
        async with asyncio.timeout(STEP_TIMEOUT):
            return await self.tickets.get()

    def close(self) -> None:
        self._task.cancel()
        self.link.close()
        if self.parked is not None:
            self.parked.close()


@dataclass
class Pipe:
    control: Control
    receiver: Link
    data: Link
    received: int = 0

    def close(self) -> None:
        for link in (self.receiver, self.data):
            link.close()
        self.control.close()


async def open_pipe(host: str, port: int, source: str, control: Control | None = None) -> Pipe:
    """Pair a receiver with a sender (a new one, or an already waiting control)."""
    own = control is None
    ctl = await Control.register(host, port, source) if control is None else control
    links: list[Link] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            links.append(await Link.connect(host, port, source))
            # A claim is paired only with its PAKE record behind it (any 33 bytes
            # framed as one will do for the relay; the sender side never reads them).
            await links[0].send(rv.ReceiveRequest(ctl.nameplate), CLAIM_RECORD)
            if ctl.parked is not None:  # a standby sender: paired at once
                links.append(ctl.parked)
                ctl.parked = None
            else:
                ticket = await _ticket_or_refusal(ctl, links[0])
                links.append(await Link.connect(host, port, source))
                await links[1].send(rv.JoinRequest(ctl.nameplate, ticket))
            for link in links:
                if not isinstance(answer := await link.receive(), rv.Paired):
                    raise LoadgenError(_wire(answer))
    except BaseException:
        for link in links:
            link.close()
        if own:
            ctl.close()
        raise
    return Pipe(ctl, links[0], links[1], received=links[0].take_rest())


async def _ticket_or_refusal(control: Control, receiver: Link) -> str:
    """The INCOMING ticket; or, if the relay answers the receiver first (ERROR), raise."""
    ticket = asyncio.ensure_future(control.next_ticket())
    receiver_readable = asyncio.ensure_future(peek.readable(receiver.sock))
    try:
        await asyncio.wait({ticket, receiver_readable}, return_when=asyncio.FIRST_COMPLETED)
        if ticket.done():
            return ticket.result()
    finally:
        ticket.cancel()
        receiver_readable.cancel()
    raise LoadgenError(_wire(await receiver.receive()))


@dataclass
class Opened(Generic[T]):
    items: list[T] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def note(self, exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {exc}"[:80]
        self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def open_many(count: int, make: Callable[[int], Awaitable[T]], concurrency: int) -> Opened[T]:
    """Run make(i) for i < count, at most `concurrency` at once; collect results and errors."""
    gate = asyncio.Semaphore(concurrency)
    opened: Opened[T] = Opened()

    async def one(index: int) -> None:
        async with gate:
            try:
                opened.items.append(await make(index))
            except (OSError, LoadgenError, TimeoutError) as exc:
                opened.note(exc)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    opened.seconds = time.perf_counter() - started
    return opened


async def fill(pipe: Pipe, settle: float, limit: float) -> int:
    """Write into the sender side until no byte went out for `settle` s (the reader stalls)."""
    chunk = bytes(64 * 1024)
    sent = 0
    deadline = time.monotonic() + limit
    stuck_since: float | None = None
    while (now := time.monotonic()) < deadline:
        try:
            sent += pipe.data.sock.send(chunk)
            stuck_since = None
            await asyncio.sleep(0)
        except BlockingIOError:
            stuck_since = stuck_since or now
            if now - stuck_since >= settle:
                break
            await asyncio.sleep(0.05)
    return sent


async def stream(pipe: Pipe, total: int, timeout: float) -> int:
    """Send total bytes sender -> receiver at full speed; return the bytes received."""
    sender = asyncio.create_task(_send_all(pipe.data.sock, total))
    try:
        async with asyncio.timeout(timeout):
            received = await _receive_all(pipe, total)
    except TimeoutError:
        received = pipe.received
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sender
    return received


async def _send_all(sock: socket.socket, total: int) -> None:
    loop = asyncio.get_running_loop()
    chunk = memoryview(bytes(CHUNK))
    remaining = total
    while remaining > 0:
        piece = chunk[: min(CHUNK, remaining)]
        await loop.sock_sendall(sock, piece)
        remaining -= len(piece)
    sock.shutdown(socket.SHUT_WR)


async def _receive_all(pipe: Pipe, total: int) -> int:
    loop = asyncio.get_running_loop()
    buffer = bytearray(CHUNK)
    while pipe.received < total:
        count = await loop.sock_recv_into(pipe.receiver.sock, buffer)
        if count == 0:
            break
        pipe.received += count
    return pipe.received


def close_all(items: list[Pipe] | list[Control]) -> None:
    for item in items:
        item.close()
