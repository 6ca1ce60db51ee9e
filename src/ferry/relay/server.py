"""The relay's asyncio server: each connection's task, the pairing, the pump.

Theory of operation. This module is asyncio plumbing; the rules live in
pure modules: who gets in (admission.py, with the refusal helper), what a
connection may send, which deadline applies, what it turns into and how it
ends (session.py), who holds which nameplate (table.py), how a pairing
moves both (lifecycle.py: the one owner of phases and states; this module
only asks it), what is counted against a limit and given back (capacity.py:
every count is a Hold), per-address look-up budgets (limits.py), buffer
sizes (buffers.py).

Each admitted socket gets one task, which reads lines under its session's
deadline and acts on what the session answers:

- sender control (SEND): registers a nameplate, then PINGs and reads PONGs
  until the sender leaves; if its transfer is running then, it waits for
  the pipe, whose outcome is its own;
- receiver (RECV n): spends one look-up of its address's budget, reads the
  PAKE record behind the line (rv.claim_record_missing: until it is whole
  the claim holds nothing), claims the nameplate; takes the sender's parked
  data connection, or sends the sender INCOMING and waits for one; says
  PAIRED to both and runs the pump;
- sender data (JOIN n ticket): parks (standby, no task) or hands its socket
  to the waiting receiver task, and its task ends.

Every connection ends with one outcome (logs.py), logged and counted. The
relay never parses a byte after PAIRED: it cannot read what it carries.

The connection tasks belong to one asyncio.TaskGroup, held open from
start() to close() by a supervising task: close() decides which to cancel
when, and the group's end is the moment none is left.

Shutdown (close()): stop accepting, refuse everything that is not a running
pipe (handshakes, waiting senders, pairings) with ERROR shutting-down, let
pipes run up to the drain deadline, then cut what is left.

Cluster (--cluster): the directory (directory.py; Redis, cluster.py)
allocates nameplates and says which node holds one; a receiver or sender
data connection for a nameplate this node does not hold is forwarded to its
owner (forward.py), and a connection from another node is authenticated
before it is served as the client it carries. Without --cluster the
directory is the table alone and nothing here changes.

Time: every `now` comes from one clock, the event loop's by default, and
every deadline waits on the event loop, so a test that moves the loop's
time moves the relay's. Only the standard library is imported here and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
from collections.abc import Callable
from typing import Any, Final

from ferry.config import (
    ACCEPT_GRACE,
    CANCEL_GRACE,
    EARLY_PAIRED_AFTER,
    MAX_EARLY_BYTES,
    MAX_PARKED_BYTES,
    OPENING_BYTES,
    SENDER_GRACE,
    RelayConfig,
)
from ferry.errors import BadRequest, Closed, DirectoryUnavailable, Refusal
from ferry.netopts import keep_alive
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, forward, logs, proxy
from ferry.relay.admission import OUT_OF_FDS, Gate
from ferry.relay.capacity import AddressSlot, Capacity, unlimited
from ferry.relay.connection import Connection
from ferry.relay.directory import Directory, LocalDirectory
from ferry.relay.lifecycle import Lifecycle
from ferry.relay.limits import LookupLimiter, network_key
from ferry.relay.metrics import Gauges, Metrics
from ferry.relay.pump import SPLICE_AVAILABLE, PumpResult, pump
from ferry.relay.session import (
    Ending,
    Phase,
    PipeReport,
    Role,
    SendPing,
    Session,
    delay_until,
    error_ending,
)
from ferry.relay.table import Entry, PairingTable, State
from ferry.relay.web import WebFront

log = logs.log

FDS_PER_PIPE: Final = 4  # two kernel pipes on the splice path


class Relay:
    def __init__(
        self,
        config: RelayConfig,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
        directory: Directory | None = None,
        links: forward.NodeLinks | None = None,
    ) -> None:
        """clock: seconds, monotonic; the running event loop's time when None.
        directory, links: a cluster node's (cli/relay.py); None for a single relay."""
        self.config = config
        self.directory: Directory = directory or LocalDirectory()
        self.links = links
        self.metrics = metrics or Metrics()
        self.buffers = buffers.plan(config)
        self.memory_ceiling = buffers.memory_ceiling(config)
        self.lifecycle: Lifecycle[Connection] = Lifecycle(config, lambda: secrets.token_hex(16))
        self.capacity = Capacity(config)
        self.gate = Gate(config, self.metrics, self._fds_held, self.capacity.per_address)
        self.lookups = LookupLimiter(config.lookups_per_minute, config.max_tracked_addresses)
        self._clock = clock
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        self._group: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._draining = False
        self.web = WebFront(self) if config.web else None  # browsers (web.py)

    def clock(self) -> float:
        return (self._clock or asyncio.get_running_loop().time)()

    def delay(self, deadline: float | None) -> float | None:
        """Seconds from now (the relay's clock) to deadline; None: no deadline."""
        return delay_until(deadline, self.clock())

    @property
    def table(self) -> PairingTable[Connection]:
        return self.lifecycle.table

    @property
    def handshaking(self) -> int:
        return self.capacity.handshakes.value

    @property
    def active(self) -> int:
        return self.capacity.pipes.value

    @property
    def open_connections(self) -> int:
        return self.capacity.connections.value

    # -- lifecycle ---------------------------------------------------------

    async def start(self, listeners: list[socket.socket]) -> None:
        self._listeners = listeners
        await self.directory.start()
        self.gate.start()
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(opened))
        await opened
        admit = self._admit if self.web is None else self.web.wrap(self._admit)
        for listener in listeners:
            listener.setblocking(False)
            self._accepting.append(asyncio.create_task(self.gate.accept_loop(listener, admit)))

    async def _supervise(self, opened: asyncio.Future[None]) -> None:
        """Hold the connection tasks' group open until close() is done with them."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            opened.set_result(None)
            await self._stopping.wait()

    @property
    def draining(self) -> bool:
        return self._draining

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Stop accepting, refuse all but running pipes, let those run up to drain_timeout."""
        self._draining = True
        if self.web is not None:
            self.web.stop_sorting()
        for task in self._accepting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        for task, conn in list(self._tasks.items()):
            if conn.phase is not Phase.PIPING:
                task.cancel()
        running = [(task, conn.role) for task, conn in self._tasks.items()]
        # A forwarded sender data connection is a pipe here: it drains like one.
        pipes = [task for task, conn in self._tasks.items() if self._is_pipe(conn)]
        senders = [task for task, role in running if role is Role.SENDER]
        if pipes and drain_timeout > 0:
            await asyncio.wait(pipes, timeout=drain_timeout)
        if senders:
            # Senders whose transfer just ended close their control connection
            # themselves; a moment's grace lets their outcome be what happened.
            await asyncio.wait(senders, timeout=SENDER_GRACE)
        for task in self._tasks:
            task.cancel()
        self._stopping.set()  # the group ends as soon as its last task has
        if self._supervisor is not None:
            await asyncio.wait([self._supervisor], timeout=CANCEL_GRACE)
        if self._accepting:
            await asyncio.wait(self._accepting, timeout=ACCEPT_GRACE)
        if self.web is not None:
            await self.web.close()
        await self.gate.close()
        await self.directory.close()

    def _is_pipe(self, conn: Connection) -> bool:
        # A sender data connection pipes here only when forwarded (JOINED has no task).
        return conn.role is Role.RECEIVER or (
            conn.role is Role.SENDER_DATA and conn.phase is Phase.PIPING
        )

    def gauges(self) -> Gauges:
        return {
            "connections_open": ("Connections held now.", self.open_connections),
            "handshakes": ("Connections that have not sent their first line.", self.handshaking),
            "waiting_senders": ("Senders holding a nameplate.", len(self.table)),
            "active_transfers": ("Pipes moving bytes now.", self.active),
            "tracked_addresses": ("Source addresses with a look-up budget.", len(self.lookups)),
            "draining": ("1 while shutting down.", int(self._draining)),
            **self.directory.gauges(),
            **(self.links.gauges() if self.links is not None else {}),
        }

    # -- admission ---------------------------------------------------------

    def _fds_held(self) -> int:
        pipes = self.active * FDS_PER_PIPE if self.config.use_splice and SPLICE_AVAILABLE else 0
        forwarded = self.links.fds_held() if self.links is not None else 0
        web = self.web.fds_held() if self.web is not None else 0
        return self.open_connections + pipes + forwarded + web

    def _admit(
        self,
        sock: socket.socket,
        peer: str,
        slot: AddressSlot,
        proxied: bool,
        since: float | None = None,
    ) -> None:
        """slot: its address's, now this connection's to give back (capacity.py).
        since: when it was accepted, if the web front held it first (web.py)."""
        # Accepted with the kernel's default buffers (listen.py): nothing but short
        # lines moves until pairing, so hold them to the control size from now on.
        with contextlib.suppress(OSError):
            buffers.set_both(sock, self.buffers.control // 2)
        session = Session(self.config, self.clock() if since is None else since)
        conn = Connection(
            sock,
            peer,
            slot,
            session,
            self.capacity.connections.hold(),
            max_line=self.config.max_hello_bytes,
            proxied=proxied,
        )
        if self._group is None or self._stopping.is_set():
            # Closed (or not started): nothing is served any more.
            self.gate.hang_up(sock, rv.REASON_SHUTTING_DOWN, "relay shutting down", False)
            conn.release()
            return
        task = self._group.create_task(self._serve(conn))
        self._tasks[task] = conn
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        conn = self._tasks.pop(task)
        if not conn.handed_over:
            conn.release()  # a handed-over one is given back with its pipe or parking

    # -- one connection ----------------------------------------------------

    async def _serve(self, conn: Connection) -> None:
        sock = conn.sock
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        text = ""
        try:
            ending = await self._dispatch(conn)
        except (Refusal, BadRequest) as exc:
            text = exc.text if isinstance(exc, Refusal) else exc.message
            ending = Ending(logs.REFUSED, reason=exc.reason)
        except Closed:
            ending = conn.session.peer_closed()
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            ending = error_ending(exc.errno, name)
        except Exception as exc:  # a bug: end this connection only, loudly
            log.exception("internal error on a %s connection", conn.role.value)
            ending = Ending(logs.ERRORY, f"internal {type(exc).__name__}")
        except asyncio.CancelledError:
            ending = conn.session.cancelled()
            self._end(conn, ending, "relay shutting down")
            raise
        self._end(conn, ending, text)

    def _end(self, conn: Connection, ending: Ending, refusal_text: str = "") -> None:
        """Close (or refuse) the connection and log its one outcome line."""
        if conn.handed_over:
            return  # parked or joined: the receiver's line covers the pipe
        if ending.reason:
            self.gate.hang_up(conn.sock, ending.reason, refusal_text, may_linger=True)
        else:
            conn.sock.close()
        self.metrics.ended(conn.role.value, ending.outcome)
        fields = conn.session.log_fields(ending, conn.peer, self.clock())
        logs.outcome(ending.outcome, **fields)

    async def _read_line(self, conn: Connection) -> bytes:
        loop = asyncio.get_running_loop()
        while (line := conn.lines.next_line()) is None:
            data = await loop.sock_recv(conn.sock, conn.max_line)
            if not data:
                raise Closed()
            conn.lines.receive_data(data)
        return line

    async def _next_line(self, conn: Connection) -> bytes | None:
        """The next line, or None once the session's deadline has passed."""
        try:
            async with asyncio.timeout(conn.session.delay(self.clock())):
                return await self._read_line(conn)
        except TimeoutError:
            return None

    async def _dispatch(self, conn: Connection) -> Ending:
        if self._draining:
            raise Refusal(rv.REASON_SHUTTING_DOWN, "relay shutting down")
        if buffers.queued(conn.sock) > MAX_EARLY_BYTES:
            # More than any client sends before pairing: whatever it is, it must
            # not sit in the relay's memory (buffers.py).
            raise Refusal(rv.REASON_BAD_REQUEST, "too many bytes before pairing")
        if self.handshaking >= self.config.max_handshakes:
            raise Refusal(rv.REASON_BUSY, "relay busy, try later")
        capacity = self.capacity
        with capacity.handshakes.hold():
            if conn.proxied:
                await self._read_proxy_header(conn)
            network = network_key(conn.key)
            if not capacity.handshake_shares.may_take(network, self.handshaking - 1):
                raise Refusal(rv.REASON_BUSY, "relay busy: too many connections from your network")
            with capacity.handshake_shares.hold(network):
                while (line := await self._next_line(conn)) is None:
                    conn.session.timer_expired(self.clock())  # a handshake's: raises Refusal
                if self.links is not None and forward.is_node_hello(line):
                    line = await self._accept_node(conn, line)
        request = conn.session.request_received(line, self.clock())
        if self.links is not None and not conn.from_node:
            nameplate = getattr(request, "nameplate", None)
            if nameplate is not None and not self.table.holds(nameplate):
                return await self._forward(conn, line, nameplate)
        match request:
            case rv.SendRequest(standby, web):
                web_url = self.config.web_url if web and self.web is not None else ""
                return await self._serve_sender(conn, standby, web_url)
            case rv.ReceiveRequest(nameplate):
                return await self._serve_receiver(conn, nameplate)
            case rv.JoinRequest(nameplate, ticket):
                self._join(conn, nameplate, ticket)
                return Ending(logs.HAPPY)
        raise AssertionError("request_received returns requests only")

    async def _read_proxy_header(self, conn: Connection) -> None:
        """A trusted proxy's connection: learn the client's address from its PROXY
        header (proxy.py), under the handshake deadline, then count it like any
        client's. What follows the header is the client's first line."""
        loop = asyncio.get_running_loop()
        data = b""
        try:
            async with asyncio.timeout(conn.session.delay(self.clock())):
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
        slot = self.gate.per_address.take(self.gate.key_for(host))
        if slot is None:
            raise Refusal(rv.REASON_TOO_MANY_CONNECTIONS, "too many connections from your address")
        conn.slot.release()  # the proxy's: it counted nothing
        conn.slot = slot
        conn.proxied = False

    # -- sender control ----------------------------------------------------

    async def _serve_sender(self, conn: Connection, standby: bool, web_url: str = "") -> Ending:
        network = network_key(conn.key)
        shares = self.capacity.sender_shares
        if not shares.may_take(network, self.table.count(State.WAITING)):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many waiting senders from your network")
        try:
            number = await self.directory.allocate()
        except DirectoryUnavailable:
            raise Refusal(rv.REASON_UNAVAILABLE, "relay cluster directory unavailable") from None
        try:
            entry = self.lifecycle.register(conn, self.clock(), standby, number)
        except Refusal:
            if number is not None and not self.table.holds(number):
                self.directory.release(number)
            raise
        with shares.hold(network):
            try:
                if not conn.send_nowait(rv.NameplateAssigned(entry.nameplate, web_url)):
                    return Ending(logs.VANISHED, "NAMEPLATE not accepted")
                if standby and not conn.send_nowait(rv.StandbyTicket(entry.ticket)):
                    return Ending(logs.VANISHED, "TICKET not accepted")
                return await self._hold_nameplate(conn, entry)
            finally:
                parked = self.lifecycle.unregister(entry)
                self.directory.release(entry.nameplate)
                if parked is not None:
                    self._drop_parked(parked)

    async def _hold_nameplate(self, conn: Connection, entry: Entry[Connection]) -> Ending:
        """Keep a sender's control connection until it closes, goes quiet or overstays."""
        session = conn.session
        while True:
            try:
                line = await self._next_line(conn)
            except (Closed, ConnectionResetError):
                # A sender killed mid-transfer closes this too: its outcome is
                # its transfer's, so wait for that (bounded by the pipe's own).
                await conn.transfer_over()
                return session.peer_closed()
            now = self.clock()
            if line is not None:
                session.line_received(line, now)
                continue
            tick = session.timer_expired(now, overdue=self.table.overdue(entry, now))
            if isinstance(tick, Ending):
                return tick
            assert isinstance(tick, SendPing)
            if not conn.send_nowait(rv.Ping()):
                return Ending(logs.LOST, "PING not accepted")

    # -- receiver and pipe -------------------------------------------------

    async def _serve_receiver(self, conn: Connection, nameplate: int) -> Ending:
        self._look_up(conn)
        busy = self.active + self.table.count(State.CLAIMED)
        if busy >= self.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        self._check_memory()
        network = network_key(conn.share_key)
        shares = self.capacity.transfer_shares
        if not shares.may_take(network, busy):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers from your network")
        self.table.claimable(nameplate)  # refuses at once what no record could change
        with shares.hold(network):
            await self._read_claim_record(conn)
            entry = self.lifecycle.claim(nameplate, conn, self.clock())
            return await self._pair_and_pipe(conn, entry)

    def _look_up(self, conn: Connection) -> None:
        """Charge one look-up to the connection's address; Refusal(rate-limited) once
        its budget is spent."""
        now = self.clock()
        if conn.key and not self.lookups.allow(conn.key, now):
            wait = max(1, round(self.lookups.retry_after(conn.key, now)))
            text = f"too many look-ups from your address, retry in {wait}s"
            raise Refusal(rv.REASON_RATE_LIMITED, text)

    async def _read_claim_record(self, conn: Connection) -> None:
        """A claim's PAKE record, whole (rv.claim_record_missing), by the session's deadline.

        Until it is here the claim holds neither the nameplate nor the
        sender's data connection: a claim that stays silent, or sends
        anything but a PAKE record, costs the sender nothing and keeps no
        one else out. The record stays in the line buffer for the pipe.

        A receiver from before the pipelined handshake sends its record only
        after PAIRED: a claim with nothing behind its line for
        EARLY_PAIRED_AFTER is told PAIRED now (it holds nothing still), and
        is paired for real once its record is in.
        """
        loop = asyncio.get_running_loop()
        early_at = self.clock() + EARLY_PAIRED_AFTER
        while missing := rv.claim_record_missing(conn.lines.rest()):
            deadline = conn.session.deadline()
            if not conn.paired_early and not conn.lines.rest():
                deadline = early_at if deadline is None else min(deadline, early_at)
            try:
                async with asyncio.timeout(self.delay(deadline)):
                    data = await loop.sock_recv(conn.sock, missing)
            except TimeoutError:
                if self.clock() >= early_at and not conn.paired_early and not conn.lines.rest():
                    conn.paired_early = True
                    await loop.sock_sendall(conn.sock, rv.encode(rv.Paired()))
                    continue
                conn.session.timer_expired(self.clock())  # raises Refusal(timeout)
                continue
            if not data:
                raise Closed()
            conn.lines.receive_data(data)
        conn.session.claim_record_arrived(self.clock())

    async def _pair_and_pipe(self, conn: Connection, entry: Entry[Connection]) -> Ending:
        """A claim is in: pair it with the sender's data connection and run the pipe."""
        data_conn = self.lifecycle.take_parked(entry)
        if data_conn is not None:
            # A standby sender's data connection was waiting: pair at once.
            asyncio.get_running_loop().remove_reader(data_conn.sock.fileno())
        else:
            data_conn = await self._await_join(conn, entry)
        transfer = Ending(logs.ERRORY, "pipe failed")
        try:
            transfer = await self._run_pipe(conn, data_conn, entry)
            return transfer
        except asyncio.CancelledError:
            transfer = conn.session.cancelled()
            raise
        finally:
            self._close_joined(data_conn)
            pipe = conn.session.pipe
            self._end_claim(entry, transfer, refund=pipe is None or not pipe.sender_replied)

    async def _await_join(self, conn: Connection, entry: Entry[Connection]) -> Connection:
        """Ask the sender for a data connection, and wait for it."""
        conn.joined = asyncio.get_running_loop().create_future()
        try:
            # No parked connection (a standby sender may be reconnecting, or it
            # could not get one in): ask for a data connection now, as for any sender.
            if not entry.sender.send_nowait(rv.Incoming(entry.ticket)):
                raise Refusal(rv.REASON_SENDER_GONE, "the sender went away")
            while (data_conn := await self._wait_joined(conn)) is None:
                conn.session.timer_expired(self.clock())  # raises Refusal(timeout)
            return data_conn
        except BaseException:
            if conn.joined.done() and not conn.joined.cancelled():
                self._close_joined(conn.joined.result())  # joined, then we were cancelled
            if entry.receiver is conn:
                self._end_claim(entry, None, refund=True)
            raise

    def _end_claim(
        self, entry: Entry[Connection], transfer: Ending | None, refund: bool = False
    ) -> None:
        """A claim or pipe ended: the nameplate waits again (standby senders get a ticket).

        refund: the claim never reached the key exchange (session.py), so the
        nameplate's claim budget gets it back.
        """
        ticket = self.lifecycle.end_claim(entry, transfer, self.clock(), refund)
        if ticket:
            entry.sender.send_nowait(rv.StandbyTicket(ticket))

    async def _wait_joined(self, conn: Connection) -> Connection | None:
        """The sender's data connection; None at the session's deadline; Closed if
        this receiver leaves first."""
        assert conn.joined is not None
        delay = conn.session.delay(self.clock())
        async with conn.watch_hang_up() as gone:
            either: list[asyncio.Future[Any]] = [conn.joined, gone]
            done, _ = await asyncio.wait(either, timeout=delay, return_when="FIRST_COMPLETED")
        if conn.joined in done:
            return conn.joined.result()
        if gone in done:
            raise Closed()
        return None

    def _close_joined(self, data_conn: Connection) -> None:
        data_conn.sock.close()
        data_conn.release()

    def _join(self, conn: Connection, nameplate: int, ticket: str) -> None:
        joined = self.lifecycle.join(nameplate, ticket, conn)
        if joined.entry.parked is conn:
            if joined.displaced is not None:
                self._drop_parked(joined.displaced)
            self._park(conn, joined.entry)
            return
        receiver = joined.entry.receiver
        assert receiver is not None and receiver.joined is not None, receiver
        receiver.joined.set_result(conn)

    def _park(self, conn: Connection, entry: Entry[Connection]) -> None:
        """Hold a standby data connection, with no task, until a receiver claims.

        Watching it for readability catches the sender leaving (EOF or a
        reset): then it is unparked and closed. Bytes it sends early (its
        first handshake flight) are kept for the pipe, as far as the session
        allows; more than that is not a ferry client.
        """
        loop = asyncio.get_running_loop()
        fd = conn.sock.fileno()
        keep_alive(conn.sock)  # no traffic until a receiver comes: keep NATs open

        def readable() -> None:
            try:
                data = conn.sock.recv(MAX_PARKED_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if conn.session.may_park(len(conn.lines), len(data)):
                conn.lines.receive_data(data)
                return
            loop.remove_reader(fd)
            self.lifecycle.unpark(entry, conn)
            self._drop_parked(conn)

        loop.add_reader(fd, readable)

    def _drop_parked(self, conn: Connection) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        self._close_joined(conn)

    async def _run_pipe(
        self, receiver: Connection, sender: Connection, entry: Entry[Connection]
    ) -> Ending:
        loop = asyncio.get_running_loop()
        # The sender's control connection is part of this transfer now: a drain
        # waits for it like for the pipe, and does not refuse it (its outcome
        # is what happens to the transfer).
        self.lifecycle.start_pipe(entry, receiver)
        self.metrics.transfers += 1
        with self.capacity.pipes.hold():
            # The data direction gets the budget: sender -> relay window, relay ->
            # receiver unacknowledged bytes. Before PAIRED, so the first file
            # byte already finds the large window.
            self.buffers.apply(sender.sock, receiver.sock)
            if not receiver.paired_early:
                await loop.sock_sendall(receiver.sock, rv.encode(rv.Paired()))
            await loop.sock_sendall(sender.sock, rv.encode(rv.Paired()))
            first_flight = sender.lines.take_rest()
            result = await self._pump(receiver, sender, first_flight, entry)
        return receiver.session.pipe_ended(PipeReport.of(result, len(first_flight)))

    def _count_bytes(self, count: int) -> None:
        self.metrics.bytes_relayed += count

    async def _pump(
        self, receiver: Connection, sender: Connection, preload_down: bytes, entry: Entry[Any]
    ) -> PumpResult:
        """Run the pipe; preload_down: what the sender sent before PAIRED (its first flight)."""
        preload_up = receiver.lines.take_rest()

        def opened() -> None:
            self.lifecycle.opened(entry)

        use_splice = self.config.use_splice
        while True:
            try:
                return await pump(
                    receiver.sock,
                    sender.sock,
                    buffer_size=self.buffers.pump,
                    idle_timeout=self.config.idle_timeout,
                    use_splice=use_splice,
                    preload_a_to_b=preload_up,
                    preload_b_to_a=preload_down,
                    on_moved=self._count_bytes,
                    clock=self._clock,
                    opening_bytes=OPENING_BYTES,
                    on_opened=opened,
                )
            except OSError as exc:
                if not use_splice or exc.errno not in OUT_OF_FDS:
                    raise
                use_splice = False  # no descriptors for kernel pipes: copy instead

    def _check_memory(self) -> None:
        """Refuse a new transfer (or forwarded pipe) whose budget would pass the ceiling."""
        pipes = self.links.pipes if self.links is not None else 0
        held = self.active + self.table.count(State.CLAIMED) + pipes
        if (held + 1) * self.config.transfer_budget > self.memory_ceiling:
            raise Refusal(rv.REASON_BUSY, "relay busy: memory for transfers in use, try later")

    # -- cluster -------------------------------------------------------------

    async def _accept_node(self, conn: Connection, hello: bytes) -> bytes:
        """Another node's connection: authenticate it; the client line it carries.

        The per-address limits were the client's on the node it reached: the
        internal connection holds no slot of the forwarding node's address here.
        The pool shares count the client's address, as for a direct client.
        """
        assert self.links is not None
        peer, line = await self.links.accept(conn, hello, self._next_line)
        conn.slot.release()
        conn.slot = unlimited()
        conn.client_key = self.gate.key_for(forward.peer_host(peer))
        return line

    async def _forward(self, conn: Connection, line: bytes, nameplate: int) -> Ending:
        """A receiver or sender data connection for a nameplate another node holds."""
        assert self.links is not None
        if conn.role is Role.RECEIVER:
            self._look_up(conn)
        busy = self.active + self.links.pipes
        if busy >= self.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        self._check_memory()
        if conn.role is not Role.RECEIVER:
            return await self.links.forward(conn, line, nameplate)
        # A forwarded receiver is a transfer here too: its network's share holds
        # on this node as on the owner (which counts it by the address AUTH carries).
        network = network_key(conn.key)
        shares = self.capacity.transfer_shares
        if not shares.may_take(network, busy + self.table.count(State.CLAIMED)):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers from your network")
        with shares.hold(network):
            return await self.links.forward(conn, line, nameplate)
