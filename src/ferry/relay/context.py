"""What the relay's parts share: its settings, counts, pairing table and clock.

Theory of operation. The relay's asyncio side is split by concern:
server.py accepts connections, runs one task each and shuts down;
dialogue.py reads a connection's first line and serves a sender's control
connection; pairing.py pairs a claim with the sender's data connection and
runs the pipe. Each reads and changes the relay's state through one
RelayContext (server.Relay is one), which owns nothing but that state and
the few checks more than one part makes: reading a line under the session's
deadline, the look-up budget, the memory ceiling.

Time: every `now` comes from `clock()`, the event loop's by default, and
every deadline waits on the event loop, so a test that moves the loop's
time moves the relay's. Standard library only.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Final

from ferry.config import RelayConfig
from ferry.errors import Closed, Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, forward
from ferry.relay.admission import Gate
from ferry.relay.capacity import Capacity
from ferry.relay.connection import Connection
from ferry.relay.directory import Directory, LocalDirectory
from ferry.relay.lifecycle import Lifecycle
from ferry.relay.limits import LookupLimiter
from ferry.relay.metrics import Metrics
from ferry.relay.pump import SPLICE_AVAILABLE
from ferry.relay.session import delay_until
from ferry.relay.table import PairingTable, State
from ferry.relay.web import WebFront

FDS_PER_PIPE: Final = 4  # two kernel pipes on the splice path


class RelayContext:
    """The relay's shared state and the checks its parts share (module docstring)."""

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
        self._draining = False
        self.web = WebFront(self) if config.web else None  # browsers (web.py)
        self._prepare()

    def _prepare(self) -> None:
        """Set up what a subclass keeps beside the shared state (server.Relay: its
        tasks and the parts that serve them); called last by __init__."""

    def clock(self) -> float:
        return (self._clock or asyncio.get_running_loop().time)()

    @property
    def given_clock(self) -> Callable[[], float] | None:
        """The clock given at construction (None: the event loop's), for the pump."""
        return self._clock

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

    @property
    def draining(self) -> bool:
        return self._draining

    def _fds_held(self) -> int:
        pipes = self.active * FDS_PER_PIPE if self.config.use_splice and SPLICE_AVAILABLE else 0
        forwarded = self.links.fds_held() if self.links is not None else 0
        web = self.web.fds_held() if self.web is not None else 0
        return self.open_connections + pipes + forwarded + web

    # -- checks more than one part makes --------------------------------------

    async def read_line(self, conn: Connection) -> bytes:
        loop = asyncio.get_running_loop()
        while (line := conn.lines.next_line()) is None:
            data = await loop.sock_recv(conn.sock, conn.max_line)
            if not data:
                raise Closed()
            conn.lines.receive_data(data)
        return line

    async def next_line(self, conn: Connection) -> bytes | None:
        """The next line, or None once the session's deadline has passed."""
        try:
            async with asyncio.timeout(conn.session.delay(self.clock())):
                return await self.read_line(conn)
        except TimeoutError:
            return None

    def look_up(self, conn: Connection) -> None:
        """Charge one look-up to the connection's address; Refusal(rate-limited) once
        its budget is spent."""
        now = self.clock()
        if conn.key and not self.lookups.allow(conn.key, now):
            wait = max(1, round(self.lookups.retry_after(conn.key, now)))
            text = f"too many look-ups from your address, retry in {wait}s"
            raise Refusal(rv.REASON_RATE_LIMITED, text)

    def check_memory(self) -> None:
        """Refuse a new transfer (or forwarded pipe) whose budget would pass the ceiling."""
        pipes = self.links.pipes if self.links is not None else 0
        held = self.active + self.table.count(State.CLAIMED) + pipes
        if (held + 1) * self.config.transfer_budget > self.memory_ceiling:
            raise Refusal(rv.REASON_BUSY, "relay busy: memory for transfers in use, try later")
