"""The relay's asyncio server: accepting, one task per connection, shutdown.

Theory of operation. This module is asyncio plumbing; the rules live in
pure modules: who gets in (admission.py, with the refusal helper), what a
connection may send, which deadline applies, what it turns into and how it
ends (session.py), who holds which nameplate (table.py), how a pairing
moves both (lifecycle.py: the one owner of phases and states), what is
counted against a limit and given back (capacity.py: every count is a
Hold), per-address look-up budgets (limits.py), buffer sizes (buffers.py).
The asyncio side is split by concern: this module accepts (through the web
front, web.py, when the web is on: it hands ferry clients and WebSocket
legs back here) and runs each connection's task; dialogue.py reads the
first line and serves a sender's control connection; pairing.py pairs a
claim with the sender's data connection and runs the pipe; all three share
one RelayContext (context.py), which a Relay is.

Every connection ends with one outcome (logs.py), logged and counted
here, whatever ended it. The relay never parses a byte after PAIRED: it
cannot read what it carries.

The connection tasks belong to one asyncio.TaskGroup, held open from
start() to close() by a supervising task: close() decides which to cancel
when, and the group's end is the moment none is left.

Shutdown (close()): stop accepting, refuse everything that is not a running
pipe (handshakes, waiting senders, pairings) with ERROR shutting-down, let
pipes run up to the drain deadline, then cut what is left.

Cluster (--cluster): the directory (directory.py; Redis, cluster.py)
allocates nameplates and says which node holds one; a receiver or sender
data connection for a nameplate this node does not hold is forwarded to its
owner (forward.py, from dialogue.py). Without --cluster the directory is
the table alone and nothing here changes.

Only the standard library is imported here and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from ferry.config import ACCEPT_GRACE, CANCEL_GRACE, SENDER_GRACE
from ferry.errors import BadRequest, Closed, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, logs
from ferry.relay.capacity import AddressSlot
from ferry.relay.connection import Connection
from ferry.relay.context import RelayContext
from ferry.relay.dialogue import Dialogue
from ferry.relay.metrics import Gauges
from ferry.relay.pairing import Pairing
from ferry.relay.session import Ending, Phase, Role, Session, error_ending

log = logs.log


class Relay(RelayContext):
    def _prepare(self) -> None:
        self._dialogue = Dialogue(self, Pairing(self))
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        self._group: asyncio.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []

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
        if not conn.started:
            # Cancelled (close()) before its first step: _serve never ran, so its
            # refusal, close and outcome line are owed here.
            self._end(conn, conn.session.cancelled(), "relay shutting down")
        if not conn.handed_over:
            conn.release()  # a handed-over one is given back with its pipe or parking

    # -- one connection ----------------------------------------------------

    async def _serve(self, conn: Connection) -> None:
        conn.started = True
        sock = conn.sock
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        text = ""
        try:
            ending = await self._dialogue.serve(conn)
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
