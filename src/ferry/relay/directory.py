"""Where nameplates come from and which node holds each: the relay's directory.

Theory of operation. A relay keeps its waiting senders in its own pairing
table (table.py); the directory answers the two questions the table cannot
answer alone once there are several relays:

- allocate(): which number does a new sender get? It must not be in use on
  any node of the cluster;
- locate(n): which node holds nameplate n, if not this one?

and hears release(n) when a sender leaves. A single relay's directory is its
table: `LocalDirectory` allocates nothing itself (None: the table picks the
smallest free number, as it always has) and never locates a nameplate
elsewhere, so the single-node relay behaves exactly as before and imports
nothing outside the standard library. The cluster's directory lives in
Redis (cluster.py, imported only with --cluster).

Failure: a directory that cannot answer raises DirectoryUnavailable; the
server turns that into an ERROR unavailable refusal for the one request
that needed it. Nothing already paired or piping depends on the directory.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ferry.relay.metrics import Gauges


@dataclass(frozen=True)
class Owner:
    """The node holding a nameplate: its id and where other nodes reach it."""

    node: str
    address: str


class Directory(Protocol):
    node: str
    """This node's id ("" for a single relay)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def allocate(self) -> int | None:
        """A nameplate for a new sender (None: let the local table choose)."""
        ...

    def release(self, nameplate: int) -> None:
        """The sender holding nameplate left (best effort, never raises)."""
        ...

    async def locate(self, nameplate: int) -> Owner | None:
        """The node holding nameplate when it is not this one (None: not known)."""
        ...

    def gauges(self) -> Gauges: ...


class LocalDirectory:
    """A single relay: its pairing table is the whole directory."""

    node = ""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def allocate(self) -> int | None:
        return None

    def release(self, nameplate: int) -> None:
        pass

    async def locate(self, nameplate: int) -> Owner | None:
        return None

    def gauges(self) -> Gauges:
        return {}
