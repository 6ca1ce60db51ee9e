"""Socket options both the relay and the clients use. Standard library only."""

from __future__ import annotations

import contextlib
import socket

from ferry import platform

KEEPALIVE_IDLE = 25
"""Seconds of silence before TCP keepalive probes start on a waiting connection:
under the usual NAT idle timeouts, so the mapping stays open."""
KEEPALIVE_INTERVAL = 10
"""Seconds between unanswered probes."""
KEEPALIVE_COUNT = 3
"""Unanswered probes before the kernel declares the peer gone."""


def keep_alive(sock: socket.socket) -> None:
    """Probe a silent connection often enough to keep NATs open and notice a dead peer.

    For connections that wait without traffic (a parked standby data
    connection): about a minute after the path dies, the socket reports an
    error instead of waiting forever.
    """
    set_keepalive(sock, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """TCP keepalive with these timings, each option set on its own (best effort).

    The idle time's option has another name on macOS
    (platform.keepalive_idle_option()); a system without one of the options keeps
    its default for that one and still gets the others.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        (platform.keepalive_idle_option(), idle),
        (getattr(socket, "TCP_KEEPINTVL", None), interval),
        (getattr(socket, "TCP_KEEPCNT", None), count),
    ):
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
