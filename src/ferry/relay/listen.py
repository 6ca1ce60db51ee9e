"""Opening the relay's listening sockets. Standard library only.

":9021" listens on every interface, IPv6 and IPv4 (one dual-stack socket
where the platform allows it, else one socket per family); a host name
listens on each address it resolves to.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Sequence

from ferry import platform
from ferry.address import Address
from ferry.config import LISTEN_BACKLOG, PORT_ZERO_TRIES


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
    limits = platform.fd_limits()
    if limits is None:
        return None
    soft, hard = limits
    if hard == -1:
        hard = max(soft, 1 << 20)
    with contextlib.suppress(ValueError, OSError):
        platform.set_fd_limit(hard, hard)
        soft = hard
    return soft
