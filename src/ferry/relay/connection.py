"""One client connection as the relay sees it, and the process-level helpers
the server needs (peer formatting, file-descriptor accounting).

Standard library only.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from dataclasses import dataclass, field

from ferry.protocol import rendezvous as rv


class Closed(Exception):
    """The peer closed or reset the connection."""


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    peer: str
    key: str
    max_line: int = rv.MAX_LINE
    started: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    role: str = "unknown"
    phase: str = "handshake"
    nameplate: int | None = None
    joined: asyncio.Future[Connection] | None = None
    handed_over: bool = False
    moved: tuple[int, int] = (0, 0)  # bytes to the sender, to the receiver
    claims: int | None = None  # receivers a sender's nameplate had, or which claim this is
    lines: rv.LineBuffer = field(init=False)

    def __post_init__(self) -> None:
        self.lines = rv.LineBuffer(self.max_line)

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
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fds_open() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own
    except OSError:
        return 32  # a guess for platforms without /proc


def open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
