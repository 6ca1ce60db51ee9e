"""Opening the relay's listening sockets. Standard library only, and light:
cli/relay.py imports this module to listen before it imports the relay
(nothing here imports asyncio or the relay's settings at import time).

":9021" listens on every interface, IPv6 and IPv4 (one dual-stack socket
where the platform allows it, else one socket per family); a host name
listens on each address it resolves to.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from ferry.address import Address, parse_address

# Here, not in ferry.config (ipaddress, the relay's settings), so that cli/relay.py
# can listen before importing anything heavier than the socket module
# (typing's Final is left out for the same reason).
LISTEN_BACKLOG = 1024
"""Connections the kernel queues for the relay before it accepts them."""
PORT_ZERO_TRIES = 20
"""Fresh ports tried when port 0's free port is taken on another address family."""


class EarlyListeners:
    """Sockets bound before the program was imported, and the text they were bound for.
    (A plain class: dataclasses and typing cost more to import than binding does.)"""

    __slots__ = ("address", "sockets", "text")

    def __init__(self, text: str, address: Address, sockets: list[socket.socket]) -> None:
        self.text = text
        """The address argument as given (":9021"), compared with what the parser read."""
        self.address = address
        self.sockets = sockets

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def bind_early(text: str) -> EarlyListeners:
    """Parse a listening address and bind it (raises InvalidAddress or OSError)."""
    address = parse_address(text, listen=True)
    return EarlyListeners(text, address, open_listeners(address))


def _listener(family: int, sockaddr: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # No buffer sizes here: a connection not yet accepted keeps the kernel's
        # small default, and its window scale comes from the system's maximum,
        # room for the largest window a transfer gets (relay/buffers.py).
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def open_listeners(address: Address) -> list[socket.socket]:
    """Bind and listen; raises OSError if nothing could be bound.

    Port 0 means one free port on every family: the first socket picks it
    and the others take the same. If another program holds that port on a
    later family, all are closed and a new port is tried, rather than
    serving only part of the address.
    """
    if address.host:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        targets = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
    else:
        targets = [
            (socket.AF_INET6, ("::", address.port)),
            (socket.AF_INET, ("0.0.0.0", address.port)),
        ]
    targets = list(dict.fromkeys(targets))
    for _ in range(PORT_ZERO_TRIES if address.port == 0 else 1):
        listeners, errors = _bind_all(targets, address.port == 0)
        if address.port == 0 and listeners and any(e.errno == errno.EADDRINUSE for e in errors):
            for sock in listeners:
                sock.close()
            continue
        if not listeners:
            raise errors[0] if errors else OSError(f"cannot listen on {address}")
        return listeners
    raise OSError(errno.EADDRINUSE, f"no port free on every address of {address}")


def _bind_all(
    targets: Sequence[tuple[int, tuple[object, ...]]], port_zero: bool
) -> tuple[list[socket.socket], list[OSError]]:
    listeners: list[socket.socket] = []
    errors: list[OSError] = []
    for family, sockaddr in targets:
        if port_zero and listeners:
            sockaddr = (sockaddr[0], listeners[0].getsockname()[1], *sockaddr[2:])
        try:
            listeners.append(_listener(family, sockaddr))
        except OSError as exc:
            errors.append(exc)
    return listeners, errors


def raise_fd_limit() -> int | None:
    """Raise the soft open-files limit to the hard limit; return the new soft limit
    (None where the system has no such limit to read)."""
    from ferry import platform  # imports asyncio: only once the relay is listening

    limits = platform.fd_limits()
    if limits is None:
        return None
    soft, hard = limits
    if hard == -1:
        hard = max(soft, 1 << 20)
    try:
        platform.set_fd_limit(hard, hard)
        soft = hard
    except (ValueError, OSError):
        pass
    return soft
