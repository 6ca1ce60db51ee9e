"""A connect to the relay started before start-up's heavy work, taken over by RelayLink.

Theory of operation. A receiver's start-up (asyncio, the crypto libraries,
the storage modules) takes longer than a TCP connect across a WAN, and the
connect needs none of it. So ./receive starts one as soon as its arguments
and output directory check out: start() resolves the relay's address and begins a non-blocking
connect to the first address on a thread (getaddrinfo may block; nothing
else does), and returns at once. The round trip then runs while Python
imports. RelayLink.connect() takes the attempt over (Dialing.resolved()): it
waits, within its own timeout, for the resolution, and races the started
socket with the usual happy-eyeballs attempts at the other addresses, so a
dead first address costs what it always did. If anything here failed
(resolution, socket), RelayLink.connect() resolves and connects as if
nothing had been tried, and reports errors in its own words.

The thread runs no Python import (a non-ASCII host name, which would load
the idna codec, is left to RelayLink.connect()), so nothing is left half
imported if the program exits while it runs. POSIX only: the selector
loop watches the started socket, Windows' proactor loop cannot.
"""

from __future__ import annotations

import errno
import socket
import threading

from ferry import platform

IN_PROGRESS = frozenset({0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})
"""connect_ex() results of a non-blocking connect that is under way (or done)."""

AddrInfo = tuple[int, int, int, str, tuple[object, ...]]


class Dialing:
    """One connect started early: the resolved addresses and the socket to the first."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._done = threading.Event()
        self._infos: list[AddrInfo] = []
        self._sock: socket.socket | None = None
        self._taken = False

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            if infos:
                family, type_, proto, _, sockaddr = infos[0]
                sock = socket.socket(family, type_, proto)
                sock.setblocking(False)
                if sock.connect_ex(sockaddr) in IN_PROGRESS:
                    self._sock = sock
                else:
                    sock.close()
                self._infos = list(infos)
        except (OSError, UnicodeError):
            pass  # RelayLink.connect() tries again and says why
        finally:
            self._done.set()

    def wait(self, timeout: float | None) -> bool:
        """Block until the resolution is over (True) or timeout passed (False)."""
        return self._done.wait(timeout)

    def take(self) -> tuple[list[AddrInfo], socket.socket | None]:
        """Once wait() said True: the addresses (empty: resolve again) and the socket
        connecting to the first of them (None: none started). Only the first call gets
        them; the caller owns the socket."""
        if self._taken or not self._done.is_set():
            return [], None
        self._taken = True
        return self._infos, self._sock

    def close(self) -> None:
        """Close the socket if nobody took it (an early exit)."""
        if not self._taken and self._done.is_set() and self._sock is not None:
            self._taken = True
            self._sock.close()


def start(host: str, port: int) -> Dialing | None:
    """Begin connecting to host:port on a thread; None where it is not done (Windows)."""
    if not platform.POSIX or not host.isascii():
        return None
    dialing = Dialing(host, port)
    threading.Thread(target=dialing._run, name="dial-relay", daemon=True).start()
    return dialing
