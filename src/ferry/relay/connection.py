"""One client connection as the relay sees it, and the process-level helpers
the server needs (peer formatting, file-descriptor accounting).

Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ferry import platform
from ferry.config import REFUSAL_LINGER_BYTES, REFUSAL_LINGER_SECONDS
from ferry.errors import Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay.capacity import AddressSlot, Hold
from ferry.relay.session import Phase, Role, Session


@dataclass(eq=False)
class Connection:
    """A socket, its peer, its session (the rules: session.py) and what it holds.

    Its lifecycle is its session's phase, moved by lifecycle.py; what the
    asyncio side needs of it (is it handed over, is a transfer running) is
    read from there, never kept beside it.
    """

    sock: socket.socket
    peer: str
    slot: AddressSlot
    """Its place among its source address's connections (capacity.py)."""
    session: Session
    counted: Hold
    """Its place among the relay's open connections (capacity.py)."""
    max_line: int = rv.MAX_LINE
    proxied: bool = False
    """From a trusted proxy: a PROXY header names the client (peer and slot change then)."""
    joined: asyncio.Future[Connection] | None = None
    """Receiver: resolves to the sender's data connection."""
    turn: asyncio.Future[Refusal | None] | None = None
    """Receiver queued behind another claim (table.py): resolves when its wait is
    over, to None (its claim holds the nameplate now) or the refusal to answer."""
    paired_early: bool = False
    """Receiver: told PAIRED before its PAKE record came (a receiver from before the
    pipelined handshake); it is paired for real once the record is in."""
    from_node: str = ""
    """Set when another cluster node forwarded this connection (forward.py): its id."""
    client_key: str = ""
    """A forwarded connection's client, as the per-address limits' key: that node
    holds its per-address slot (this connection holds none here), but the pool
    shares count it."""
    started: bool = False
    """Its task ran (server.py): from then on the task itself ends it; a task
    cancelled before its first step never runs its own handlers."""
    lines: rv.LineBuffer = field(init=False)
    _between_transfers: asyncio.Event = field(init=False)

    def __post_init__(self) -> None:
        self.lines = rv.LineBuffer(self.max_line)
        self._between_transfers = asyncio.Event()
        self._between_transfers.set()
        self.session.watch(self._phase_changed)

    def _phase_changed(self, phase: Phase) -> None:
        if self.session.between_transfers:
            self._between_transfers.set()
        else:
            self._between_transfers.clear()

    async def transfer_over(self) -> None:
        """Sender control: return once no transfer of its nameplate is claimed or runs."""
        await self._between_transfers.wait()

    def release(self) -> None:
        """The connection is over: give back its slots (once, whoever asks first)."""
        self.slot.release()
        self.counted.release()

    @property
    def key(self) -> str:
        """The per-address limits' key ("" = not limited)."""
        return self.slot.key

    @property
    def share_key(self) -> str:
        """The key whose network the pool shares count (limits.network_key of it)."""
        return self.client_key if self.from_node else self.key

    @property
    def role(self) -> Role:
        return self.session.role

    @property
    def phase(self) -> Phase:
        return self.session.phase

    @property
    def handed_over(self) -> bool:
        """Sender data: its socket belongs to a receiver's pipe (or the parking lot)."""
        return self.session.handed_over

    @contextlib.asynccontextmanager
    async def watch_hang_up(self) -> AsyncIterator[asyncio.Future[None]]:
        """A future that resolves if the peer closes or resets while we do not read.

        Readable while we are not reading means EOF, a reset, or bytes sent
        early (a receiver's PAKE flight); peeking tells them apart without
        consuming the early bytes, which stay for the pipe.
        """
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def readable() -> None:
            try:
                data = self.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                loop.remove_reader(fd)  # early bytes: nothing more to learn
            elif not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, readable)
        try:
            yield gone
        finally:
            loop.remove_reader(fd)
            gone.cancel()

    def send_nowait(self, message: rv.RelayMessage) -> bool:
        """Write one small line without waiting; False if it cannot go out whole.

        A peer that does not read its control lines is dropped rather than
        buffered for, so a stuck client costs the relay nothing.
        """
        data = rv.encode(message)
        try:
            return self.sock.send(data) == len(data)
        except OSError:
            return False


def format_peer(address: object) -> tuple[str, str]:
    """(printable peer, host) of an accepted socket's address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), address[1]
        return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), host
    return str(address), str(address)


def fd_limit() -> int:
    limits = platform.fd_limits()
    return limits[0] if limits is not None else 1024  # a guess where nothing says


def fds_open() -> int:
    found = platform.open_fds()
    return 32 if found is None else found  # a guess where the system cannot list them


def open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def say_and_half_close(sock: socket.socket, data: bytes) -> None:
    """Write one last line, discard input already here, and half-close.

    Closing a socket with unread input makes the kernel send RST instead of
    FIN, and a RST can destroy the last line before the client reads it. So
    the bytes already received are read and dropped first (at most
    REFUSAL_LINGER_BYTES), and SHUT_WR sends the FIN behind the line at once; what
    the client still sends is for `linger` to drop.
    """
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(data)
    _discard_ready(sock, REFUSAL_LINGER_BYTES)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _discard_ready(sock: socket.socket, limit: int) -> int:
    discarded = 0
    while discarded < limit:
        try:
            data = sock.recv(min(16384, limit - discarded))
        except OSError:  # BlockingIOError: nothing more now
            break
        if not data:
            break
        discarded += len(data)
    return discarded


async def linger(sock: socket.socket) -> None:
    """After say_and_half_close: drop what the client still sends, briefly, then close.

    Until the client closes (a real client does at once), REFUSAL_LINGER_SECONDS
    pass, or REFUSAL_LINGER_BYTES more arrive.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(REFUSAL_LINGER_SECONDS):
            discarded = 0
            while discarded < REFUSAL_LINGER_BYTES:
                data = await loop.sock_recv(sock, 16384)
                if not data:
                    break
                discarded += len(data)
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()
