"""The relay's asyncio server: handshake, rendezvous, then the byte pump.

Theory of operation. Each accepted socket gets one task. The task reads
exactly one line under the handshake deadline (never more than MAX_LINE
bytes buffered), then plays one of three roles:

- sender control (SEND): holds a nameplate; the relay PINGs it and drops it
  when it goes quiet, closes, or waits past max_sender_wait;
- receiver (RECV n): claims the nameplate, which sends the sender an
  INCOMING ticket, then waits up to join_timeout for the sender's data
  connection;
- sender data (JOIN n ticket): hands its socket to the waiting receiver task
  and returns; the receiver task owns both sockets from then on, says
  PAIRED to both and runs the pump.

Every refusal is an ERROR line with a reason, then close. Every connection
ends with one log line naming its outcome. The relay never parses a byte
after PAIRED: it cannot read what it carries.

Only the standard library is imported here and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field

from ferry.config import RelayConfig
from ferry.protocol import rendezvous as rv
from ferry.relay.pump import pump
from ferry.relay.table import Entry, PairingTable, Refusal, State

log = logging.getLogger("ferry.relay")


class _Closed(Exception):
    """The peer closed or reset the connection."""


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    peer: str
    started: float = field(default_factory=time.monotonic)
    lines: rv.LineBuffer = field(default_factory=rv.LineBuffer)
    last_heard: float = field(default_factory=time.monotonic)
    role: str = "unknown"
    nameplate: int | None = None
    joined: asyncio.Future[Connection] | None = None
    handed_over: bool = False

    def send_nowait(self, message: rv.RelayMessage) -> bool:
        """Write one small line without waiting; False if it cannot go out whole.

        A peer that does not read its control lines is dropped rather than
        buffered for, so a stuck client costs the relay nothing.
        """
        data = rv.encode(message)
        try:
            return self.sock.send(data) == len(data)
        except OSError:
            return False


def _format_peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.table: PairingTable[Connection] = PairingTable(config, lambda: secrets.token_hex(16))
        self.handshaking = 0
        self.active = 0
        self.bytes_relayed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._draining = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self, listeners: list[socket.socket]) -> None:
        self._listeners = listeners
        for listener in listeners:
            listener.setblocking(False)
            self._accepting.append(asyncio.create_task(self._accept_loop(listener)))

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Stop accepting, drop waiting senders, let active pipes run up to drain_timeout."""
        self._draining = True
        for task in self._accepting:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        pending = [t for t in self._tasks if not t.done()]
        for entry in self.table.entries():
            if entry.state is State.WAITING:
                entry.sender.send_nowait(rv.Refused(rv.REASON_SHUTTING_DOWN, "relay shutting down"))
                with contextlib.suppress(OSError):
                    entry.sender.sock.shutdown(socket.SHUT_RDWR)
        if pending and drain_timeout > 0:
            await asyncio.wait(pending, timeout=drain_timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: existing transfers go on; retry shortly.
                    log.warning("accept failed: %s; refusing new connections for 0.1 s", exc)
                    await asyncio.sleep(0.1)
                    continue
                raise
            task = asyncio.create_task(self._serve(sock, _format_peer(address)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- one connection ----------------------------------------------------

    async def _serve(self, sock: socket.socket, peer: str) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = Connection(sock, peer)
        outcome = "errory"
        detail = ""
        try:
            outcome, detail = await self._dispatch(conn)
        except Refusal as refusal:
            conn.send_nowait(rv.Refused(refusal.reason, refusal.text))
            outcome, detail = "refused", refusal.reason
        except rv.BadRequest as exc:
            conn.send_nowait(rv.Refused(exc.reason, exc.message))
            outcome, detail = "refused", exc.reason
        except _Closed:
            outcome = "vanished"
        except OSError as exc:
            outcome, detail = "errory", exc.strerror or type(exc).__name__
        finally:
            if not conn.handed_over:
                sock.close()
            if conn.role != "sender-data":
                self._log(conn, outcome, detail)

    def _log(self, conn: Connection, outcome: str, detail: str) -> None:
        duration = time.monotonic() - conn.started
        nameplate = "-" if conn.nameplate is None else str(conn.nameplate)
        log.info(
            "outcome=%s role=%s nameplate=%s peer=%s duration=%.3fs%s",
            outcome, conn.role, nameplate, conn.peer, duration,
            f" detail={detail}" if detail else "",
        )  # fmt: skip

    async def _read_line(self, conn: Connection) -> bytes:
        loop = asyncio.get_running_loop()
        while (line := conn.lines.next_line()) is None:
            data = await loop.sock_recv(conn.sock, rv.MAX_LINE)
            if not data:
                raise _Closed()
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
            case rv.SendRequest():
                conn.role = "sender"
                return await self._serve_sender(conn)
            case rv.ReceiveRequest(nameplate):
                conn.role, conn.nameplate = "receiver", nameplate
                return await self._serve_receiver(conn, nameplate)
            case rv.JoinRequest(nameplate, ticket):
                conn.role, conn.nameplate = "sender-data", nameplate
                self._join(conn, nameplate, ticket)
                return "joined", ""
        raise rv.BadRequest(rv.REASON_BAD_REQUEST, "unexpected first line")

    async def _serve_sender(self, conn: Connection) -> tuple[str, str]:
        entry = self.table.register(conn, time.monotonic())
        conn.nameplate = entry.nameplate
        try:
            if not conn.send_nowait(rv.NameplateAssigned(entry.nameplate)):
                return "vanished", ""
            return await self._hold_nameplate(conn, entry)
        finally:
            self.table.unregister(entry)

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
                    return "lost", "no PONG"
                if not conn.send_nowait(rv.Ping()):
                    return "lost", "PING not accepted"
                continue
            except _Closed:
                # The sender leaves after a transfer (happy) or before any (lonely).
                return ("happy" if entry.claims else "lonely"), f"claims={entry.claims}"
            if not isinstance(rv.parse_client_line(line), rv.Pong):
                raise rv.BadRequest(rv.REASON_BAD_REQUEST, "only PONG is expected here")

    async def _serve_receiver(self, conn: Connection, nameplate: int) -> tuple[str, str]:
        busy = self.active + self.table.count(State.CLAIMED)
        if busy >= self.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        entry = self.table.claim(nameplate, conn, time.monotonic())
        conn.joined = asyncio.get_running_loop().create_future()
        try:
            if not entry.sender.send_nowait(rv.Incoming(entry.ticket)):
                raise Refusal(rv.REASON_SENDER_GONE, "the sender went away")
            try:
                async with asyncio.timeout(self.config.join_timeout):
                    data_conn = await conn.joined
            except TimeoutError:
                raise Refusal(rv.REASON_TIMEOUT, "the sender did not answer in time") from None
        except BaseException:
            if entry.state is State.CLAIMED:
                self.table.release(entry)
            raise
        try:
            return await self._run_pipe(conn, data_conn, entry)
        finally:
            data_conn.sock.close()
            if entry.live:
                self.table.release(entry)
                entry.sender.last_heard = time.monotonic()

    def _join(self, conn: Connection, nameplate: int, ticket: str) -> None:
        entry = self.table.join(nameplate, ticket)
        receiver = entry.receiver
        if receiver is None or receiver.joined is None or receiver.joined.done():
            raise Refusal(rv.REASON_BAD_REQUEST, "no such pairing ticket")
        conn.handed_over = True
        receiver.joined.set_result(conn)

    async def _run_pipe(
        self, receiver: Connection, sender: Connection, entry: Entry[Connection]
    ) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        self.active += 1
        try:
            await loop.sock_sendall(receiver.sock, rv.encode(rv.Paired()))
            await loop.sock_sendall(sender.sock, rv.encode(rv.Paired()))
            result = await pump(
                receiver.sock,
                sender.sock,
                buffer_size=self.config.pump_buffer,
                idle_timeout=self.config.idle_timeout,
                use_splice=self.config.use_splice,
                preload_a_to_b=receiver.lines.take_rest(),
                preload_b_to_a=sender.lines.take_rest(),
            )
        finally:
            self.active -= 1
        moved = result.bytes_a_to_b + result.bytes_b_to_a
        self.bytes_relayed += moved
        detail = f"bytes={moved} claim={entry.claims}"
        return ("piped" if result.outcome == "closed" else result.outcome), detail
