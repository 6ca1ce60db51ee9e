"""Socket options both the relay and the clients use. Standard library only."""

from __future__ import annotations

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
    error instead of waiting forever. Best effort, each option on its own
    (platform.set_keepalive): a system without one keeps its default for it.
    """
    platform.set_keepalive(sock, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
