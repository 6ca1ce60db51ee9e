"""The FERRY line dialogue: a connection's first line, and a sender's control connection.

Theory of operation. An admitted connection is a handshake (the
max_handshakes pool and its network's share of it) until its first line
is in, read under the session's deadline (after a trusted proxy's PROXY
header, or another cluster node's AUTH). Then the session says what the
line asks for, and the request goes where it belongs:

- sender control (SEND): registers a nameplate, then PINGs and reads PONGs
  until the sender leaves; if its transfer is running then, it waits for
  the pipe, whose outcome is its own;
- receiver (RECV n) and sender data (JOIN n ticket): pairing.py;
- with --cluster, a RECV or JOIN for a nameplate another node holds is
  forwarded to that node (forward.py), and a node's own connection is
  authenticated before it is served as the client it carries.

Each refusal is raised (Refusal, BadRequest) for server.py to answer and
log. Standard library only.
"""

from __future__ import annotations

import asyncio

from ferry.config import MAX_EARLY_BYTES
from ferry.errors import Closed, DirectoryUnavailable, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, forward, logs, proxy
from ferry.relay.capacity import unlimited
from ferry.relay.connection import Connection
from ferry.relay.context import RelayContext
from ferry.relay.limits import network_key
from ferry.relay.pairing import Pairing
from ferry.relay.session import Ending, Role, SendPing
from ferry.relay.table import Entry, State


class Dialogue:
    """Reads each connection's request and serves it (module docstring)."""

    def __init__(self, relay: RelayContext, pairing: Pairing) -> None:
        self.relay = relay
        self.pairing = pairing

    async def serve(self, conn: Connection) -> Ending:
        """The connection's request, served to its end: its outcome."""
        relay = self.relay
        if relay.draining:
            raise Refusal(rv.REASON_SHUTTING_DOWN, "relay shutting down")
        if buffers.queued(conn.sock) > MAX_EARLY_BYTES:
            # More than any client sends before pairing: whatever it is, it must
            # not sit in the relay's memory (buffers.py).
            raise Refusal(rv.REASON_BAD_REQUEST, "too many bytes before pairing")
        if relay.handshaking >= relay.config.max_handshakes:
            raise Refusal(rv.REASON_BUSY, "relay busy, try later")
        capacity = relay.capacity
        with capacity.handshakes.hold():
            if conn.proxied:
                await self._read_proxy_header(conn)
            network = network_key(conn.key)
            if not capacity.handshake_shares.may_take(network, relay.handshaking - 1):
                raise Refusal(rv.REASON_BUSY, "relay busy: too many connections from your network")
            with capacity.handshake_shares.hold(network):
                while (line := await relay.next_line(conn)) is None:
                    conn.session.timer_expired(relay.clock())  # a handshake's: raises Refusal
                if relay.links is not None and forward.is_node_hello(line):
                    line = await self._accept_node(conn, line)
        request = conn.session.request_received(line, relay.clock())
        if relay.links is not None and not conn.from_node:
            nameplate = getattr(request, "nameplate", None)
            if nameplate is not None and not relay.table.holds(nameplate):
                return await self._forward(conn, line, nameplate)
        match request:
            case rv.SendRequest(standby, web):
                web_url = relay.config.web_url if web and relay.web is not None else ""
                return await self._serve_sender(conn, standby, web_url)
            case rv.ReceiveRequest(nameplate):
                return await self.pairing.serve_receiver(conn, nameplate)
            case rv.JoinRequest(nameplate, ticket):
                self.pairing.join(conn, nameplate, ticket)
                return Ending(logs.HAPPY)
        raise AssertionError("request_received returns requests only")

    async def _read_proxy_header(self, conn: Connection) -> None:
        """A trusted proxy's connection: learn the client's address from its PROXY
        header (proxy.py), under the handshake deadline, then count it like any
        client's. What follows the header is the client's first line."""
        relay = self.relay
        loop = asyncio.get_running_loop()
        data = b""
        try:
            async with asyncio.timeout(conn.session.delay(relay.clock())):
                while (header := proxy.parse(data)) is None:
                    chunk = await loop.sock_recv(conn.sock, proxy.V2_FIXED + proxy.V2_MAX_BODY)
                    if not chunk:
                        raise Closed()
                    data += chunk
        except TimeoutError:
            raise Refusal(rv.REASON_TIMEOUT, "handshake timed out") from None
        conn.lines.receive_data(data[header.length :])
        if header.client is None:
            return  # the proxy's own check: it stays the peer
        host, port = header.client.host, header.client.port
        conn.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        slot = relay.gate.per_address.take(relay.gate.key_for(host))
        if slot is None:
            raise Refusal(rv.REASON_TOO_MANY_CONNECTIONS, "too many connections from your address")
        conn.slot.release()  # the proxy's: it counted nothing
        conn.slot = slot
        conn.proxied = False

    # -- sender control ----------------------------------------------------

    async def _serve_sender(self, conn: Connection, standby: bool, web_url: str = "") -> Ending:
        relay = self.relay
        network = network_key(conn.key)
        shares = relay.capacity.sender_shares
        if not shares.may_take(network, relay.table.count(State.WAITING)):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many waiting senders from your network")
        try:
            number = await relay.directory.allocate()
        except DirectoryUnavailable:
            raise Refusal(rv.REASON_UNAVAILABLE, "relay cluster directory unavailable") from None
        try:
            entry = relay.lifecycle.register(conn, relay.clock(), standby, number)
        except Refusal:
            if number is not None and not relay.table.holds(number):
                relay.directory.release(number)
            raise
        with shares.hold(network):
            try:
                if not conn.send_nowait(rv.NameplateAssigned(entry.nameplate, web_url)):
                    return Ending(logs.VANISHED, "NAMEPLATE not accepted")
                if standby and not conn.send_nowait(rv.StandbyTicket(entry.ticket)):
                    return Ending(logs.VANISHED, "TICKET not accepted")
                return await self._hold_nameplate(conn, entry)
            finally:
                parked = relay.lifecycle.unregister(entry)
                gone = Refusal(rv.REASON_SENDER_GONE, "the sender went away")
                self.pairing.answer_queued(relay.lifecycle.drop_queue(entry), gone)
                relay.directory.release(entry.nameplate)
                if parked is not None:
                    self.pairing.drop_parked(parked)

    async def _hold_nameplate(self, conn: Connection, entry: Entry[Connection]) -> Ending:
        """Keep a sender's control connection until it closes, goes quiet or overstays."""
        relay = self.relay
        session = conn.session
        while True:
            try:
                line = await relay.next_line(conn)
            except (Closed, ConnectionResetError):
                # A sender killed mid-transfer closes this too: its outcome is
                # its transfer's, so wait for that (bounded by the pipe's own).
                await conn.transfer_over()
                return session.peer_closed()
            now = relay.clock()
            if line is not None:
                session.line_received(line, now)
                continue
            tick = session.timer_expired(now, overdue=relay.table.overdue(entry, now))
            if isinstance(tick, Ending):
                return tick
            assert isinstance(tick, SendPing)
            if not conn.send_nowait(rv.Ping()):
                return Ending(logs.LOST, "PING not accepted")

    # -- cluster -------------------------------------------------------------

    async def _accept_node(self, conn: Connection, hello: bytes) -> bytes:
        """Another node's connection: authenticate it; the client line it carries.

        The per-address limits were the client's on the node it reached: the
        internal connection holds no slot of the forwarding node's address here.
        The pool shares count the client's address, as for a direct client.
        """
        relay = self.relay
        assert relay.links is not None
        peer, line = await relay.links.accept(conn, hello, relay.next_line)
        conn.slot.release()
        conn.slot = unlimited()
        conn.client_key = relay.gate.key_for(forward.peer_host(peer))
        return line

    async def _forward(self, conn: Connection, line: bytes, nameplate: int) -> Ending:
        """A receiver or sender data connection for a nameplate another node holds."""
        relay = self.relay
        assert relay.links is not None
        if conn.role is Role.RECEIVER:
            relay.look_up(conn)
        busy = relay.active + relay.links.pipes
        if busy >= relay.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        relay.check_memory()
        if conn.role is not Role.RECEIVER:
            return await relay.links.forward(conn, line, nameplate)
        # A forwarded receiver is a transfer here too: its network's share holds
        # on this node as on the owner (which counts it by the address AUTH carries).
        network = network_key(conn.key)
        shares = relay.capacity.transfer_shares
        if not shares.may_take(network, busy + relay.table.count(State.CLAIMED)):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers from your network")
        with shares.hold(network):
            return await relay.links.forward(conn, line, nameplate)
