"""The web front: browsers on the relay's own port, sorted from ferry clients.

Theory of operation. With the web enabled (RelayConfig.web, on by default),
server.py hands every accepted socket here first (``WebFront.wrap`` wraps
its admit callback). The front peeks at the first bytes, without consuming
them, under the handshake deadline:

- a rendezvous line (anything but ``GET `` or ``HEAD ``: http.sniff) goes
  to the server untouched, so a command-line client is served exactly as
  without the web, zero-copy pipe included;
- from a trusted proxy, the PROXY header comes first: the front parses it
  from the peeked bytes too and sniffs what follows; a ferry client's
  connection then goes to the server with the header still unread (the
  server reads it as before), a browser's has its header consumed here and
  gets the client's address, per-address key and connection limit;
- a TLS ClientHello (first byte 0x16), when the relay has a certificate
  (--tls-cert, --tls-key): the TLS handshake runs under the same deadline
  (tls.py), and the plaintext inside is served as below, on the end of a
  socketpair, exactly as a plain-http connection (a FERRY line inside TLS
  is not HTTP: 400). Without a certificate it goes to the server, which
  refuses it as any garbage;
- an HTTP request: its head is read (at most http.MAX_HEAD bytes, before
  the handshake deadline) and answered once (site.py decides what): a file
  of the web app, an error, or the WebSocket upgrade, whose leg is bridged
  into the server as an ordinary connection (bridge.py).

What a front connection holds is counted where the server counts its own:
it is a handshake and an open connection (the max_handshakes pool: while
that is full, or while the relay drains, sockets are refused here as the
server would refuse them; the handshake deadline counts from the accept, for
the rendezvous line of a ferry client and of a WebSocket leg alike), a
leg's two extra descriptors count against the descriptor reserve
(fds_held), as do a TLS leg's two, and it keeps the per-address connection
slot the gate gave it. The slot is released here for an HTTP answer, or
handed with the socketpair end to the server for a WebSocket leg (released
there, once).

Refusals before a byte is read (the handshake pool full, a relay shutting
down, a proxied client past its limit) are the server's refusals, answered
in the client's language: an HTTP request gets an HTTP status with
Retry-After (refusals.py), a ferry client its ERROR line.

Every HTTP answer is logged as one outcome line (role=http, or https inside
TLS; a failed TLS handshake is refused, role=https); a WebSocket
leg is logged by the connection it becomes.

Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from ferry.config import CANCEL_GRACE, RelayConfig
from ferry.errors import AddressFull, BadRequest, HttpError, NetworkBusy, TlsFailed
from ferry.protocol import http
from ferry.protocol import rendezvous as rv
from ferry.protocol import websocket as ws
from ferry.relay import bridge, buffers, logs, peek, proxy, refusals, site, tls
from ferry.relay.admission import Admit, Gate
from ferry.relay.buffers import BufferPlan
from ferry.relay.capacity import AddressSlot, Capacity, Hold, unlimited
from ferry.relay.connection import format_peer
from ferry.relay.limits import network_key
from ferry.relay.metrics import Metrics
from ferry.relay.session import Role

ServerAdmit = Callable[[socket.socket, str, AddressSlot, bool, float], None]
"""Relay._admit: the gate's Admit, plus when the socket was accepted (relay clock)."""

WEB_ROOT: Final = Path(__file__).resolve().parent.parent / "webapp"
"""The web app shipped in the package (may be absent: then / is a 404)."""

WRITE_TIMEOUT: Final = 30.0
"""Seconds a browser has to take one whole answer (a file of the web app)."""
STATIC_SEND_BUFFER: Final = 256 * 1024
"""The send buffer asked for a file of the web app (the whole app.js fits)."""


class Relay(Protocol):
    """What the web front uses of the relay that owns it (server.Relay, a
    context.RelayContext). A protocol, so that this module does not import
    context.py, which imports it."""

    config: RelayConfig
    buffers: BufferPlan
    gate: Gate
    capacity: Capacity
    metrics: Metrics

    @property
    def handshaking(self) -> int: ...

    def clock(self) -> float: ...

    @property
    def draining(self) -> bool: ...


class WebFront:
    def __init__(self, relay: Relay, root: Path | None = None) -> None:
        """root: the web app's directory; RelayConfig.web_root, else WEB_ROOT."""
        self.relay = relay
        configured = relay.config.web_root
        self.root = root or (Path(configured) if configured else WEB_ROOT)
        config = relay.config
        self.tls: ssl.SSLContext | None = (
            tls.server_context(config.tls_cert, config.tls_key) if config.tls_cert else None
        )
        """https on this port (tls.py); raises BadTlsFiles here, at start-up."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._bridging: set[asyncio.Task[None]] = set()

    def fds_held(self) -> int:
        """Descriptors held beyond the server's open_connections (which counts the
        sockets being sorted or answered here, and each leg's admitted end)."""
        capacity = self.relay.capacity
        return 2 * capacity.bridges.value + 2 * capacity.tls_legs.value

    def wrap(self, admit: ServerAdmit) -> Admit:
        """The admit callback for Gate.accept_loop: sort first, then admit."""

        def sort_then_admit(
            sock: socket.socket, peer: str, slot: AddressSlot, proxied: bool
        ) -> None:
            relay = self.relay
            since = relay.clock()
            network = network_key(slot.key)
            # Refused as the server refuses them, before a byte is read; an HTTP
            # request hears it as an HTTP status (refusals.py).
            if relay.draining:
                self._refuse(sock, peer, slot, rv.REASON_SHUTTING_DOWN, "relay shutting down")
                return
            if relay.handshaking >= relay.config.max_handshakes:
                self._refuse(sock, peer, slot, rv.REASON_BUSY, "relay busy, try later")
                return
            if not relay.capacity.handshake_shares.may_take(network, relay.handshaking):
                text = "relay busy: too many connections from your network"
                self._refuse(sock, peer, slot, rv.REASON_BUSY, text)
                return
            # Accepted with the kernel's default buffers (listen.py): hold them to the
            # control size while sorting, as the server does from its admit on.
            with contextlib.suppress(OSError):
                buffers.set_both(sock, relay.buffers.control // 2)
            sorting = _Sorting(relay.capacity, network)
            task = asyncio.create_task(self._sort(sock, peer, slot, proxied, since, admit, sorting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: sorting.ended(sock, slot))

        return sort_then_admit

    def stop_sorting(self) -> None:
        """Shutting down: refuse what is being sorted (ERROR shutting-down, as the
        server refuses its handshakes) and stop answering HTTP requests."""
        for task in self._tasks - self._bridging:
            task.cancel()

    async def close(self) -> None:
        """After the server ended its connections: let the legs send their close
        frames, then cut what is left."""
        self.stop_sorting()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=bridge.CLOSE_TIMEOUT + 1)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CANCEL_GRACE)

    # -- sorting -------------------------------------------------------------

    async def _sort(
        self,
        sock: socket.socket,
        peer: str,
        slot: AddressSlot,
        proxied: bool,
        since: float,
        admit: ServerAdmit,
        sorting: _Sorting,
    ) -> None:
        """slot: its address's (the server's once admitted); sorting: what the sorting
        holds, given back once it is sorted."""
        relay = self.relay
        loop = asyncio.get_running_loop()
        deadline = loop.time() + relay.config.handshake_timeout
        leg: tls.TlsLeg | None = None
        sorting.started = True
        try:
            sock.setblocking(False)
            try:
                async with asyncio.timeout_at(deadline):
                    if proxied:
                        header = await _peek_header(sock)
                        if header is not None:
                            peer, slot = self._proxied_client(sock, peer, header)
                            proxied = False
                            sorting.reshare(network_key(slot.key))
                    kind = http.Protocol.FERRY if proxied else await _peek_protocol(sock)
                    if kind is http.Protocol.TLS and self.tls is not None:
                        try:
                            leg = await tls.accept(sock, self.tls)
                        except (ssl.SSLError, OSError):
                            raise TlsFailed() from None
            except TimeoutError:
                sorting.done()
                text = "handshake timed out"
                self._refuse(sock, peer, slot, rv.REASON_TIMEOUT, text, sniff=False)
                return
            except AddressFull as exc:
                sorting.done()
                text = "too many connections from your address"
                self._refuse(sock, str(exc), slot, rv.REASON_TOO_MANY_CONNECTIONS, text)
                return
            except NetworkBusy:
                sorting.done()
                text = "relay busy: too many connections from your network"
                self._refuse(sock, peer, slot, rv.REASON_BUSY, text)
                return
            except TlsFailed:  # a TLS handshake that failed (its alert sent) or was cut
                sorting.done()
                sock.close()
                slot.release()
                reason = rv.REASON_BAD_REQUEST
                logs.outcome(logs.REFUSED, role="https", peer=peer, reason=reason, duration=0.0)
                return
            except asyncio.CancelledError:
                sorting.done()
                self._refuse(sock, peer, slot, rv.REASON_SHUTTING_DOWN, "relay shutting down")
                raise
            if leg is not None:
                await self._serve_tls(leg, _Front(leg.plain, peer, slot, since, deadline,
                                                  sorting.done, admit, https=True))  # fmt: skip
                return
            if kind is not http.Protocol.HTTP:
                sorting.done()
                if relay.draining:  # the server has swept its connections already
                    self._refuse(sock, peer, slot, rv.REASON_SHUTTING_DOWN, "relay shutting down")
                    return
                # The handshake deadline still counts from the accept (since). A
                # trusted proxy's header was read here (or is bad: proxied, the
                # server refuses it as without the web).
                admit(sock, peer, slot.hand_over(), proxied, since)
                return
            front = _Front(sock, peer, slot, since, deadline, sorting.done, admit)
            await self._serve_http(front)
        finally:
            sorting.done()
            slot.release()  # unless handed over to the server

    def _refuse(
        self,
        sock: socket.socket,
        peer: str,
        slot: AddressSlot,
        reason: str,
        text: str,
        sniff: bool = True,
    ) -> None:
        """A refusal before the server saw the socket: as the gate's own, and the slot back.

        sniff: the client's first bytes were not consumed (at most peeked): an
        HTTP request gets an HTTP status (refusals.py)."""
        self.relay.gate.hang_up(sock, reason, text, may_linger=True, sniff=sniff)
        slot.release()
        self.relay.metrics.ended(Role.UNKNOWN.value, logs.REFUSED)
        logs.outcome(logs.REFUSED, role=Role.UNKNOWN.value, peer=peer, reason=reason, duration=0.0)

    # -- HTTP ----------------------------------------------------------------

    async def _serve_http(self, front: _Front) -> None:
        loop = asyncio.get_running_loop()
        sock = front.sock
        status = 0
        try:
            head, early = b"", b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(front.deadline):
                    head, early = await _read_head(sock)
            if not head:
                return  # closed, or too slow: no answer is owed
            try:
                request = http.parse_request(head)
                answer = site.route(request, self.root)
                accept = ws.handshake_response(request) if answer == site.Upgrade() else b""
            except HttpError as exc:
                status = exc.status
                await _send(sock, _error(exc, head.startswith(b"HEAD ")))
                return
            if isinstance(answer, site.StaticFile):
                status = await self._send_file(sock, request, answer)
                return
            if self.relay.draining:
                status = 503
                drain = refusals.RETRY_AFTER_DRAIN
                await _send(sock, _error(HttpError(503, "relay shutting down"), False, drain))
                return
            status = 101
            await _send(sock, accept)
            front.done_sorting()
            await self._bridge(front, early)
        except (OSError, TimeoutError):
            pass
        finally:
            if not front.handed:
                sock.close()
                front.slot.release()
            if status != 101:
                outcome = logs.HAPPY if 200 <= status < 400 else logs.REFUSED
                role = "https" if front.https else "http"
                fields: dict[str, logs.Field] = {"role": role, "peer": front.peer}
                if status:
                    fields["status"] = status
                duration = round(loop.time() - front.started, 3)
                logs.outcome(outcome, **fields, duration=duration)

    async def _serve_tls(self, leg: tls.TlsLeg, front: _Front) -> None:
        """HTTP inside TLS: served on the leg's plaintext end while the leg runs."""
        with self.relay.capacity.tls_legs.hold():
            runner = asyncio.create_task(leg.run())
            try:
                await self._serve_http(front)
                await runner  # bounded: the front closed its end (tls.FLUSH_TIMEOUT)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                for sock in (leg.plain, leg.mine, leg.raw):
                    sock.close()

    def _proxied_client(
        self, sock: socket.socket, peer: str, header: proxy.Header
    ) -> tuple[str, AddressSlot]:
        """Consume a trusted proxy's header: the client's peer and its address's slot
        (dialogue.py's _read_proxy_header does the same without the web)."""
        _consume(sock, header.length)
        if header.client is None:
            return peer, unlimited()  # the proxy's own check
        host, port = header.client.host, header.client.port
        client = format_peer((host, port))[0]
        slot = self.relay.gate.per_address.take(self.relay.gate.key_for(host))
        if slot is None:
            raise AddressFull(client)
        return client, slot

    async def _send_file(
        self, sock: socket.socket, request: http.Request, found: site.StaticFile
    ) -> int:
        headers = site.security_headers(request.header("host"))
        headers["Content-Type"] = found.content_type
        try:
            file = open(found.path, "rb")  # noqa: SIM115 - closed below, after the send
        except OSError:
            await _send(sock, _error(HttpError(404, "no such file"), request.method == "HEAD"))
            return 404
        with file:
            size = os.fstat(file.fileno()).st_size
            headers["Content-Length"] = str(size)
            head = http.response(200, headers, include_body=False)
            if request.method == "GET":
                # The socket still has its small pre-pairing buffer: an answer sent through
                # it crawls (about 1-2 MB/s on a loaded machine). A static answer is bounded
                # and short-lived, so give it a bounded buffer of its own.
                buffers.set_send_buffer(sock, min(len(head) + size, STATIC_SEND_BUFFER))
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(WRITE_TIMEOUT):
                await loop.sock_sendall(sock, head)
                if request.method == "GET" and size:
                    await loop.sock_sendfile(sock, file, 0, size)
        return 200

    async def _bridge(self, front: _Front, early: bytes) -> None:
        """Admit one end of a socketpair as the browser's connection; bridge the other."""
        inner, mine = bridge.socketpair(front.sock)
        closed = asyncio.Event()
        inner.on_close = closed.set
        task = asyncio.current_task()
        assert task is not None
        self._bridging.add(task)
        leg_held = self.relay.capacity.bridges.hold()
        try:
            legs = bridge.Bridge(
                front.sock,
                mine,
                early=early,
                inner_closed=closed,
                going_away=lambda: self.relay.draining,
            )
            if self.relay.draining:
                return  # the server has swept its connections already: no new one
            # From here the admitted end holds the address's slot and gives it back.
            front.handed = True
            front.admit(inner, front.peer, front.slot.hand_over(), False, front.since)
            await legs.run()
        finally:
            leg_held.release()
            self._bridging.discard(task)
            if not front.handed:
                inner.close()
            mine.close()
            front.sock.close()


@dataclass
class _Front:
    """A socket the front holds: who it is and what is owed to the server."""

    sock: socket.socket
    peer: str
    slot: AddressSlot
    """Its address's slot: released here, or handed over with the socket."""
    since: float
    """When it was accepted, on the relay's clock (the handshake deadline counts from it)."""
    deadline: float
    """The handshake deadline, on the event loop's clock."""
    done_sorting: Callable[[], None]
    admit: ServerAdmit
    https: bool = False
    """sock is a TLS leg's plaintext end (tls.PlainEnd)."""
    handed: bool = False
    """The server owns the socket (or its bridge's end) and the slot now."""
    started: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class _Sorting:
    """What a socket holds while the front sorts it: a handshake, its network's share
    of them, an open connection (capacity.py); given back once, by done()."""

    def __init__(self, capacity: Capacity, network: str) -> None:
        self.started = False
        """The sorting task ran: from then on it closes or passes on the socket."""
        self._capacity = capacity
        self._share = capacity.handshake_shares.hold(network)
        self._holds: list[Hold] = [capacity.handshakes.hold(), capacity.connections.hold()]

    def reshare(self, network: str) -> None:
        """A trusted proxy's client: its network holds the share instead of the proxy's.
        Raises NetworkBusy when that network holds its share already."""
        shares = self._capacity.handshake_shares
        if not shares.may_take(network, self._capacity.handshakes.value - 1):
            raise NetworkBusy()
        self._share.release()
        self._share = shares.hold(network)

    def done(self) -> None:
        self._share.release()
        for hold in self._holds:
            hold.release()

    def ended(self, sock: socket.socket, slot: AddressSlot) -> None:
        """The sorting task is done, however it ended: all given back. A task
        cancelled before its first step never ran its own finally."""
        self.done()
        if not self.started:
            sock.close()
            slot.release()


async def _peek_protocol(sock: socket.socket) -> http.Protocol:
    """What the connection speaks, from its first bytes, none consumed."""
    data = await peek.peek(sock, lambda data: http.sniff(data) is not http.Protocol.UNKNOWN)
    return http.sniff(data) if data else http.Protocol.FERRY


async def _peek_header(sock: socket.socket) -> proxy.Header | None:
    """A trusted proxy's PROXY header, parsed from peeked bytes (none consumed);
    None if it is malformed or the connection ends first (the server refuses)."""

    def complete(data: bytes) -> bool:
        try:
            return proxy.parse(data) is not None
        except BadRequest:
            return True

    data = await peek.peek(sock, complete, proxy.V2_FIXED + proxy.V2_MAX_BODY)
    try:
        return proxy.parse(data)
    except BadRequest:
        return None


def _consume(sock: socket.socket, count: int) -> None:
    """Read ``count`` bytes already peeked (they are queued: no waiting)."""
    while count > 0:
        data = sock.recv(count)
        if not data:
            raise ConnectionResetError("closed during the PROXY header")
        count -= len(data)


async def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the request head, the bytes behind it); (b"", b"") if the browser closed."""
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    while (end := http.head_end(buffer)) is None:
        data = await loop.sock_recv(sock, http.MAX_HEAD - len(buffer))
        if not data:
            return b"", b""
        buffer += data
    return bytes(buffer[:end]), bytes(buffer[end:])


async def _send(sock: socket.socket, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(WRITE_TIMEOUT):
        await loop.sock_sendall(sock, data)


def _error(error: HttpError, head_only: bool = False, retry_after: int | None = None) -> bytes:
    return refusals.http_error(
        error.status, str(error), head_only=head_only, retry_after=retry_after
    )
