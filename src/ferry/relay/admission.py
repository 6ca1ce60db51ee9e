"""Who gets in: accepting sockets, the descriptor and per-address budgets, refusals.

Theory of operation. `Gate.accept_loop` accepts from one listener and hands
each socket it admits to the server; the rest are refused before a byte is
read. Admission refuses (ERROR busy or too-many-connections) while fewer
than fd_reserve descriptors would stay free, or when the source address
already holds max_connections_per_address connections. If accept() fails
anyway (EMFILE), a spare descriptor kept for that moment is released to
accept and refuse the waiting connection, so nobody hangs in the backlog.

A connection from a trusted proxy (--trusted-proxy) is admitted without
an address check: its source is the proxy, and the client's own address is
known only once the server has read the PROXY header (proxy.py); the
server applies the per-address limits then.

Every refusal of the relay goes through `hang_up`: the ERROR line, a
half-close, and a short linger that drops what the client still sends
(connection.py says why: unread bytes turn a close into a RST, which can
destroy the line). At most MAX_LINGERING refused sockets linger at once,
each for at most REFUSAL_LINGER_SECONDS; past that, and on the out-of-descriptors
path, whose descriptor must become the spare again at once, a refusal
drops what has already arrived and closes.

With the web on, a refusal before the first read (the per-address limit,
no descriptors) answers in the client's language: an HTTP request gets an
HTTP status (429, 503 with Retry-After), anything else the ERROR line
(refusals.py); that wait for the first bytes counts as lingering.

Standard library only.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Final

from ferry.config import MAX_LINGERING, REFUSAL_LINGER_SECONDS, RelayConfig
from ferry.protocol import rendezvous as rv
from ferry.relay import logs, refusals
from ferry.relay.capacity import AddressSlot, AddressSlots, unlimited
from ferry.relay.connection import (
    fd_limit,
    fds_open,
    format_peer,
    linger,
    open_spare,
    say_and_half_close,
)
from ferry.relay.limits import address_key, ip_of, is_loopback
from ferry.relay.metrics import Metrics
from ferry.relay.session import Role

log = logs.log

OUT_OF_FDS: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Admit = Callable[[socket.socket, str, AddressSlot, bool], None]
"""The server's side: (socket, printable peer, its address's slot, from a trusted proxy).
The slot is the receiver's to release (capacity.py)."""


class Gate:
    def __init__(
        self,
        config: RelayConfig,
        metrics: Metrics,
        held: Callable[[], int],
        per_address: AddressSlots,
    ) -> None:
        """held(): descriptors the server holds for connections and pipes now;
        per_address: the connections-per-address slots (capacity.py)."""
        self.config = config
        self.metrics = metrics
        self.per_address = per_address
        self.proxies = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxy]
        self._held = held
        self._lingering: set[asyncio.Task[None]] = set()
        self._fd_base = 0
        self._spare_fd: int | None = None

    def start(self) -> None:
        self._spare_fd = open_spare()
        self._fd_base = fds_open()

    async def close(self) -> None:
        """Let lingering refusals finish, and give the spare descriptor back."""
        if self._lingering:
            await asyncio.wait(list(self._lingering), timeout=REFUSAL_LINGER_SECONDS + 1)
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None

    def fds_in_use(self) -> int:
        return self._fd_base + self._held() + len(self._lingering)

    async def accept_loop(self, listener: socket.socket, admit: Admit) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in OUT_OF_FDS:
                    self._refuse_with_spare(listener)
                    await asyncio.sleep(0.05)
                    continue
                if listener.fileno() < 0:
                    return  # closed under us: shutting down
                # ECONNABORTED and the network errors accept(2) passes on from a
                # dead pending connection: that peer is gone, the listener is fine.
                log.warning("accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.01)
                continue
            peer, host = format_peer(address)
            self.metrics.connections += 1
            if self.fds_in_use() + self.config.fd_reserve >= fd_limit():
                self._refuse_now(sock, peer, rv.REASON_BUSY, "relay busy: out of file descriptors")
                continue
            if self.is_trusted_proxy(host):
                admit(sock, peer, unlimited(), True)  # the server reads the client's address
                continue
            slot = self.per_address.take(self.key_for(host))
            if slot is None:
                text = "too many connections from your address"
                self._refuse_now(sock, peer, rv.REASON_TOO_MANY_CONNECTIONS, text)
                continue
            admit(sock, peer, slot, False)

    def key_for(self, host: str) -> str:
        """The per-address limits' key; "" = not limited (loopback, unless limit_loopback)."""
        return address_key(host) if self.config.limit_loopback or not is_loopback(host) else ""

    def is_trusted_proxy(self, host: str) -> bool:
        ip = ip_of(host) if self.proxies else None
        return ip is not None and any(ip in network for network in self.proxies)

    def hang_up(
        self, sock: socket.socket, reason: str, text: str, may_linger: bool, sniff: bool = False
    ) -> None:
        """Every refusal: ERROR line, half-close, linger briefly, close (module docstring).

        sniff: nothing was read from the socket yet; with the web on, an HTTP
        request then gets an HTTP status instead (refusals.py)."""
        self.metrics.refused(reason)
        if sniff and self.config.web and may_linger and len(self._lingering) < MAX_LINGERING:
            task = asyncio.create_task(refusals.refuse(sock, reason, text))
            self._lingering.add(task)
            task.add_done_callback(self._lingering.discard)
            return
        say_and_half_close(sock, rv.encode(rv.Refused(reason, text)))
        if not may_linger or len(self._lingering) >= MAX_LINGERING:
            sock.close()
            return
        task = asyncio.create_task(linger(sock))
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)

    def _refuse_now(
        self, sock: socket.socket, peer: str, reason: str, text: str, may_linger: bool = True
    ) -> None:
        """Refuse a connection not yet admitted, and log it."""
        self.hang_up(sock, reason, text, may_linger, sniff=True)
        self.metrics.ended(Role.UNKNOWN.value, logs.REFUSED)
        logs.outcome(logs.REFUSED, role=Role.UNKNOWN.value, peer=peer, reason=reason, duration=0.0)

    def _refuse_with_spare(self, listener: socket.socket) -> None:
        """Out of descriptors: use the spare one to accept and refuse one waiting peer."""
        if self._spare_fd is None:
            return
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            sock, address = listener.accept()
        except OSError:
            pass
        else:
            self.metrics.connections += 1
            text = "relay busy: out of file descriptors"
            self._refuse_now(sock, format_peer(address)[0], rv.REASON_BUSY, text, False)
        finally:
            self._spare_fd = open_spare()
