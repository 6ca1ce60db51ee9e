"""The relay's asyncio server: admission, handshake, rendezvous, then the byte pump.

Theory of operation. Each accepted socket gets one task. Before the task
reads a byte, admission control may refuse it (ERROR busy or
too-many-connections): file descriptors running low, too many connections
from its source address, the relay draining, or too many handshakes at
once. Then the task reads exactly one line under the handshake deadline
(never more than max_hello_bytes buffered), and plays one of three roles:

- sender control (SEND): holds a nameplate; the relay PINGs it and drops it
  when it goes quiet, closes, or waits past max_sender_wait;
- receiver (RECV n): spends one look-up of its address's budget, claims the
  nameplate, which sends the sender an INCOMING ticket, then waits up to
  join_timeout for the sender's data connection;
- sender data (JOIN n ticket): hands its socket to the waiting receiver task
  and returns; the receiver task owns both sockets from then on, says
  PAIRED to both and runs the pump.

Every refusal is an ERROR line with a reason, then close. Every connection
ends with one outcome (logs.py), logged and counted. The relay never parses
a byte after PAIRED: it cannot read what it carries.

Shutdown (close()): stop accepting, refuse everything that is not a running
pipe (handshakes, waiting senders, pairings) with ERROR shutting-down, let
pipes run up to the drain deadline, then cut what is left.

File descriptors: each connection costs one, each spliced pipe four more.
The server counts what it holds and refuses new connections (cleanly, with
ERROR busy) while fewer than fd_reserve would stay free; if accept() fails
anyway (EMFILE), a spare descriptor kept for that moment is released to
accept and refuse the waiting connection, so nobody hangs in the backlog.
A pipe that cannot get its kernel pipe falls back to the copy path.

Only the standard library is imported here and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import socket
import time
from typing import Final

from ferry.config import RelayConfig
from ferry.netopts import keep_alive
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, logs
from ferry.relay.connection import (
    Closed,
    Connection,
    fd_limit,
    fds_open,
    format_peer,
    open_spare,
)
from ferry.relay.limits import ConnectionCounter, LookupLimiter, address_key, is_loopback
from ferry.relay.metrics import Gauges, Metrics
from ferry.relay.pump import SPLICE_AVAILABLE, PumpResult, pump
from ferry.relay.table import Entry, PairingTable, Refusal, State

log = logs.log

OUT_OF_FDS: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
GONE: Final = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT)
FDS_PER_PIPE: Final = 4  # two kernel pipes on the splice path
LINGER_SECONDS: Final = 0.5
LINGER_BYTES: Final = 64 * 1024
SENDER_GRACE: Final = 1.0
"""Seconds a draining relay waits for senders whose transfer ended to close."""
MAX_PARKED_BYTES: Final = 4096
"""Early bytes a parked standby data connection may send (its PAKE flight is ~40)."""


class Relay:
    def __init__(self, config: RelayConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.buffers = buffers.plan(config)
        self.table: PairingTable[Connection] = PairingTable(config, lambda: secrets.token_hex(16))
        self.per_address = ConnectionCounter(config.max_connections_per_address)
        self.lookups = LookupLimiter(config.lookups_per_minute, config.max_tracked_addresses)
        self.handshaking = 0
        self.active = 0
        self.open_connections = 0
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._draining = False
        self._fd_base = 0
        self._spare_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self, listeners: list[socket.socket]) -> None:
        self._listeners = listeners
        self._spare_fd = open_spare()
        self._fd_base = fds_open()
        for listener in listeners:
            listener.setblocking(False)
            self._accepting.append(asyncio.create_task(self._accept_loop(listener)))

    @property
    def draining(self) -> bool:
        return self._draining

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Stop accepting, refuse all but running pipes, let those run up to drain_timeout."""
        self._draining = True
        for task in self._accepting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        for task, conn in list(self._tasks.items()):
            if conn.phase != "piping":
                task.cancel()
        running = [
            (task, conn.role) for task, conn in self._tasks.items() if conn.phase == "piping"
        ]
        pipes = [task for task, role in running if role == "receiver"]
        senders = [task for task, role in running if role == "sender"]
        if pipes and drain_timeout > 0:
            await asyncio.wait(pipes, timeout=drain_timeout)
        if senders:
            # Senders whose transfer just ended close their control connection
            # themselves; a moment's grace lets their outcome be what happened.
            await asyncio.wait(senders, timeout=SENDER_GRACE)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._accepting:
            await asyncio.wait(self._accepting, timeout=1)
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None

    def gauges(self) -> Gauges:
        return {
            "connections_open": ("Connections held now.", self.open_connections),
            "handshakes": ("Connections that have not sent their first line.", self.handshaking),
            "waiting_senders": ("Senders holding a nameplate.", len(self.table)),
            "active_transfers": ("Pipes moving bytes now.", self.active),
            "tracked_addresses": ("Source addresses with a look-up budget.", len(self.lookups)),
            "draining": ("1 while shutting down.", int(self._draining)),
        }

    # -- admission ---------------------------------------------------------

    def _fds_in_use(self) -> int:
        pipes = self.active * FDS_PER_PIPE if self.config.use_splice and SPLICE_AVAILABLE else 0
        return self._fd_base + self.open_connections + pipes

    async def _accept_loop(self, listener: socket.socket) -> None:
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
            if self._fds_in_use() + self.config.fd_reserve >= fd_limit():
                self._refuse_now(sock, peer, rv.REASON_BUSY, "relay busy: out of file descriptors")
                continue
            # "" = not subject to per-address limits (loopback, unless limit_loopback).
            key = address_key(host) if self.config.limit_loopback or not is_loopback(host) else ""
            if key and not self.per_address.open(key):
                text = "too many connections from your address"
                self._refuse_now(sock, peer, rv.REASON_TOO_MANY_CONNECTIONS, text)
                continue
            conn = Connection(sock, peer, key, max_line=self.config.max_hello_bytes)
            self.open_connections += 1
            task = asyncio.create_task(self._serve(conn))
            self._tasks[task] = conn
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        conn = self._tasks.pop(task)
        if not conn.handed_over:
            self._release(conn)

    def _release(self, conn: Connection) -> None:
        """A connection's socket is closed: give back its slots."""
        if conn.key:
            self.per_address.close(conn.key)
        self.open_connections -= 1

    def _refuse_now(self, sock: socket.socket, peer: str, reason: str, text: str) -> None:
        """Refuse a connection not yet admitted: one ERROR line, close, log."""
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(rv.encode(rv.Refused(reason, text)))
        sock.close()
        self.metrics.refused(reason)
        self.metrics.ended("unknown", logs.REFUSED)
        logs.outcome(logs.REFUSED, role="unknown", peer=peer, reason=reason, duration=0.0)

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
            self._refuse_now(sock, format_peer(address)[0], rv.REASON_BUSY, text)
        finally:
            self._spare_fd = open_spare()

    # -- one connection ----------------------------------------------------

    async def _serve(self, conn: Connection) -> None:
        sock = conn.sock
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            # Inherited from the listener at window-scale size; nothing but
            # short lines moves until pairing, so hold that to a few KiB.
            buffers.set_both(sock, self.buffers.control // 2)
        reason = ""
        refusal_sent = False
        try:
            outcome, detail = await self._dispatch(conn)
        except (Refusal, rv.BadRequest) as exc:
            why = exc.reason
            text = exc.text if isinstance(exc, Refusal) else exc.message
            refusal_sent = conn.send_nowait(rv.Refused(why, text))
            outcome, detail, reason = logs.REFUSED, "", why
            self.metrics.refused(why)
        except Closed:
            outcome, detail = logs.VANISHED, ""
        except OSError as exc:
            gone = exc.errno in GONE
            outcome = logs.VANISHED if gone else logs.ERRORY
            detail = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        except Exception as exc:  # a bug: end this connection only, loudly
            log.exception("internal error on a %s connection", conn.role)
            outcome, detail = logs.ERRORY, f"internal {type(exc).__name__}"
        except asyncio.CancelledError:
            if conn.phase == "piping":
                outcome, detail = logs.CUT, "drain deadline"
            else:
                conn.send_nowait(rv.Refused(rv.REASON_SHUTTING_DOWN, "relay shutting down"))
                outcome, detail, reason = logs.REFUSED, "", rv.REASON_SHUTTING_DOWN
                self.metrics.refused(reason)
            self._end(conn, outcome, detail, reason)
            raise
        try:
            if refusal_sent:
                await self._linger(conn)
        finally:
            self._end(conn, outcome, detail, reason)

    async def _linger(self, conn: Connection) -> None:
        """After an ERROR line: half-close, then drop what the peer still sends, briefly.

        Closing a socket with unread input makes the kernel send RST, and a
        RST can destroy the ERROR line before the client reads it. So read
        and discard up to LINGER_BYTES for up to LINGER_SECONDS (or until
        the client closes, which a real client does at once).
        """
        if self._draining or conn.handed_over:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, TimeoutError):
            conn.sock.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(LINGER_SECONDS):
                discarded = 0
                while discarded < LINGER_BYTES:
                    data = await loop.sock_recv(conn.sock, 16384)
                    if not data:
                        break
                    discarded += len(data)

    def _end(self, conn: Connection, outcome: str, detail: str, reason: str) -> None:
        if not conn.handed_over:
            conn.sock.close()
        if conn.handed_over:
            return  # a joined data connection: the receiver's line covers the pipe
        self.metrics.ended(conn.role, outcome)
        fields: dict[str, logs.Field] = {
            "role": conn.role,
            "nameplate": "-" if conn.nameplate is None else conn.nameplate,
            "peer": conn.peer,
            "duration": time.monotonic() - conn.started,
        }
        if reason:
            fields["reason"] = reason
        if conn.role == "receiver" and conn.phase == "piping":
            fields["bytes_to_receiver"], fields["bytes_to_sender"] = conn.moved[1], conn.moved[0]
        if conn.claims is not None:
            fields["claims"] = conn.claims
        if detail:
            fields["detail"] = detail
        logs.outcome(outcome, **fields)

    async def _read_line(self, conn: Connection) -> bytes:
        loop = asyncio.get_running_loop()
        while (line := conn.lines.next_line()) is None:
            data = await loop.sock_recv(conn.sock, conn.max_line)
            if not data:
                raise Closed()
            conn.lines.receive_data(data)
        conn.last_heard = time.monotonic()
        return line

    async def _dispatch(self, conn: Connection) -> tuple[str, str]:
        if self._draining:
            raise Refusal(rv.REASON_SHUTTING_DOWN, "relay shutting down")
        if self.handshaking >= self.config.max_handshakes:
            raise Refusal(rv.REASON_BUSY, "relay busy, try later")
        self.handshaking += 1
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                line = await self._read_line(conn)
        except TimeoutError:
            raise Refusal(rv.REASON_TIMEOUT, "handshake timed out") from None
        finally:
            self.handshaking -= 1
        match rv.parse_client_line(line):
            case rv.SendRequest(standby):
                conn.role, conn.phase = "sender", "waiting"
                return await self._serve_sender(conn, standby)
            case rv.ReceiveRequest(nameplate):
                conn.role, conn.phase, conn.nameplate = "receiver", "claiming", nameplate
                return await self._serve_receiver(conn, nameplate)
            case rv.JoinRequest(nameplate, ticket):
                conn.role, conn.phase, conn.nameplate = "sender-data", "joining", nameplate
                self._join(conn, nameplate, ticket)
                return logs.HAPPY, ""
        raise rv.BadRequest(rv.REASON_BAD_REQUEST, "unexpected first line")

    # -- sender control ----------------------------------------------------

    async def _serve_sender(self, conn: Connection, standby: bool) -> tuple[str, str]:
        entry = self.table.register(conn, time.monotonic(), standby)
        conn.nameplate = entry.nameplate
        try:
            if not conn.send_nowait(rv.NameplateAssigned(entry.nameplate)):
                return logs.VANISHED, "NAMEPLATE not accepted"
            if standby and not conn.send_nowait(rv.StandbyTicket(entry.ticket)):
                return logs.VANISHED, "TICKET not accepted"
            return await self._hold_nameplate(conn, entry)
        finally:
            conn.claims = entry.claims
            self.table.unregister(entry)
            parked = self.table.take_parked(entry)
            if parked is not None:
                self._drop_parked(parked)

    async def _hold_nameplate(self, conn: Connection, entry: Entry[Connection]) -> tuple[str, str]:
        """Keep a sender's control connection until it closes, goes quiet or overstays."""
        while True:
            try:
                async with asyncio.timeout(self.config.ping_interval):
                    line = await self._read_line(conn)
            except TimeoutError:
                now = time.monotonic()
                if self.table.overdue(entry, now):
                    raise Refusal(rv.REASON_TIMEOUT, "waited too long for a receiver") from None
                quiet = now - conn.last_heard > self.config.pong_timeout
                if entry.state is State.WAITING and quiet:
                    return logs.LOST, "no PONG"
                if not conn.send_nowait(rv.Ping()):
                    return logs.LOST, "PING not accepted"
                continue
            except (Closed, ConnectionResetError):
                # The sender leaves after a transfer (happy) or before any (lonely).
                return (logs.HAPPY if entry.claims else logs.LONELY), ""
            if not isinstance(rv.parse_client_line(line), rv.Pong):
                raise rv.BadRequest(rv.REASON_BAD_REQUEST, "only PONG is expected here")

    # -- receiver and pipe -------------------------------------------------

    async def _serve_receiver(self, conn: Connection, nameplate: int) -> tuple[str, str]:
        now = time.monotonic()
        if conn.key and not self.lookups.allow(conn.key, now):
            wait = max(1, round(self.lookups.retry_after(conn.key, now)))
            text = f"too many look-ups from your address, retry in {wait}s"
            raise Refusal(rv.REASON_RATE_LIMITED, text)
        busy = self.active + self.table.count(State.CLAIMED)
        if busy >= self.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        entry = self.table.claim(nameplate, conn, now)
        conn.claims = entry.claims
        conn.joined = asyncio.get_running_loop().create_future()
        data_conn = self.table.take_parked(entry)
        if data_conn is not None:
            # A standby sender's data connection was waiting: pair at once.
            asyncio.get_running_loop().remove_reader(data_conn.sock.fileno())
        else:
            data_conn = await self._await_join(conn, entry)
        try:
            return await self._run_pipe(conn, data_conn, entry)
        finally:
            self._close_joined(data_conn)
            self._end_claim(entry)

    async def _await_join(self, conn: Connection, entry: Entry[Connection]) -> Connection:
        """Ask the sender for a data connection, and wait for it."""
        assert conn.joined is not None
        try:
            # No parked connection (a standby sender may be reconnecting, or it
            # could not get one in): ask for a data connection now, as for any sender.
            if not entry.sender.send_nowait(rv.Incoming(entry.ticket)):
                raise Refusal(rv.REASON_SENDER_GONE, "the sender went away")
            try:
                async with asyncio.timeout(self.config.join_timeout):
                    return await self._wait_joined(conn)
            except TimeoutError:
                raise Refusal(rv.REASON_TIMEOUT, "the sender did not answer in time") from None
        except BaseException:
            if conn.joined.done() and not conn.joined.cancelled():
                self._close_joined(conn.joined.result())  # joined, then we were cancelled
            if entry.receiver is conn:
                self._end_claim(entry)
            raise

    def _end_claim(self, entry: Entry[Connection]) -> None:
        """A claim or pipe ended: the nameplate waits again (standby senders get a ticket)."""
        if entry.sender.phase == "piping":
            entry.sender.phase = "waiting"
        if not entry.live:
            return
        ticket = self.table.release(entry)
        entry.sender.last_heard = time.monotonic()
        if ticket:
            entry.sender.send_nowait(rv.StandbyTicket(ticket))

    async def _wait_joined(self, conn: Connection) -> Connection:
        """The sender's data connection, or Closed if this receiver leaves first."""
        assert conn.joined is not None
        loop = asyncio.get_running_loop()
        gone = loop.create_future()

        def hung_up() -> None:
            # Readable before PAIRED means EOF, a reset, or bytes sent early;
            # peek tells them apart without consuming the early bytes.
            try:
                data = conn.sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if not gone.done():
                    gone.set_result(None)
            else:
                loop.remove_reader(conn.sock.fileno())

        loop.add_reader(conn.sock.fileno(), hung_up)
        try:
            done, _ = await asyncio.wait([conn.joined, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(conn.sock.fileno())
            gone.cancel()
        if conn.joined in done:
            return conn.joined.result()
        raise Closed()

    def _close_joined(self, data_conn: Connection) -> None:
        data_conn.sock.close()
        self._release(data_conn)

    def _join(self, conn: Connection, nameplate: int, ticket: str) -> None:
        entry = self.table.join(nameplate, ticket, conn)
        if entry.parked is conn:
            conn.handed_over, conn.phase = True, "parked"
            if entry.displaced is not None:
                self._drop_parked(entry.displaced)
                entry.displaced = None
            self._park(conn, entry)
            return
        receiver = entry.receiver
        if receiver is None or receiver.joined is None or receiver.joined.done():
            raise Refusal(rv.REASON_BAD_REQUEST, "no such pairing ticket")
        conn.handed_over = True
        receiver.joined.set_result(conn)

    def _park(self, conn: Connection, entry: Entry[Connection]) -> None:
        """Hold a standby data connection, with no task, until a receiver claims.

        Watching it for readability catches the sender leaving (EOF or a
        reset): then it is unparked and closed. Bytes it sends early (its
        first handshake flight) are kept for the pipe, up to MAX_PARKED_BYTES;
        more than that is not a ferry client.
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
            if data and len(conn.lines) + len(data) <= MAX_PARKED_BYTES:
                conn.lines.receive_data(data)
                return
            loop.remove_reader(fd)
            self.table.unpark(entry, conn)
            self._drop_parked(conn)

        loop.add_reader(fd, readable)

    def _drop_parked(self, conn: Connection) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        self._close_joined(conn)

    async def _run_pipe(
        self, receiver: Connection, sender: Connection, entry: Entry[Connection]
    ) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        receiver.phase = "piping"
        # The sender's control connection is part of this transfer now: a drain
        # waits for it like for the pipe, and does not refuse it (its outcome
        # is what happens to the transfer).
        entry.sender.phase = "piping"
        self.active += 1
        self.metrics.transfers += 1
        try:
            # The data direction gets the budget: sender -> relay window, relay ->
            # receiver unacknowledged bytes. Before PAIRED, so the first file
            # byte already finds the large window.
            self.buffers.apply(sender.sock, receiver.sock)
            await loop.sock_sendall(receiver.sock, rv.encode(rv.Paired()))
            await loop.sock_sendall(sender.sock, rv.encode(rv.Paired()))
            result = await self._pump(receiver, sender)
        finally:
            self.active -= 1
        receiver.moved = (result.bytes_a_to_b, result.bytes_b_to_a)
        outcome = {"closed": logs.HAPPY, "idle": logs.IDLE}.get(result.outcome, logs.ERRORY)
        return outcome, ""

    def _count_bytes(self, count: int) -> None:
        self.metrics.bytes_relayed += count

    async def _pump(self, receiver: Connection, sender: Connection) -> PumpResult:
        preload_up, preload_down = receiver.lines.take_rest(), sender.lines.take_rest()
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
                )
            except OSError as exc:
                if not use_splice or exc.errno not in OUT_OF_FDS:
                    raise
                use_splice = False  # no descriptors for kernel pipes: copy instead
