"""What the relay counts against a limit, and the one way to take and give it back.

Theory of operation. Each counted resource (open connections, handshakes,
pipes moving bytes, the web front's WebSocket and TLS legs, connections per
source address, and each global pool's per-network shares: limits.py)
changes only through a `Hold`: taking one counts one unit, and the Hold
gives it back exactly once, on `release()` or on leaving its `with` block,
however that block ends (a return, a Refusal, any exception, a
cancellation). So a path that forgets to give back, or gives back twice,
cannot be written:

- a resource held for a stretch of code is a `with` block (a handshake
  while the first line is read, a transfer share while a claim runs, a pipe
  while the pump runs);
- a resource held for a connection's life (its place among the open
  connections, its source address's slot) is a Hold the connection keeps
  and releases when it ends, whichever path ends it (connection.py).

Which limit applies where, and the refusal that goes with it, is the
server's (dialogue.py, pairing.py) and the web front's (web.py): this module
only counts.
`Capacity.held()` says what is held now, by name; a relay that has closed
holds nothing (tests/relay checks it after every relay test).

Pure bookkeeping, no I/O. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ferry.config import RelayConfig
from ferry.relay.limits import ConnectionCounter, PoolShares


def _nothing() -> None:
    pass


class Hold:
    """One unit of a counted resource, given back exactly once."""

    __slots__ = ("_give_back",)

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back: Callable[[], None] | None = give_back

    @property
    def held(self) -> bool:
        return self._give_back is not None

    def release(self) -> None:
        """Give the unit back; a second call does nothing."""
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class AddressSlot(Hold):
    """A connection's slot among its source address's connections."""

    __slots__ = ("key",)

    def __init__(self, key: str, give_back: Callable[[], None]) -> None:
        super().__init__(give_back)
        self.key = key
        """The per-address limits' key ("" = not limited: the slot counts nothing)."""

    def hand_over(self) -> AddressSlot:
        """The same slot, now the receiver's to give back; this one gives back nothing.
        A connection passed on (the web front to the server) passes its slot so."""
        give_back, self._give_back = self._give_back, None
        return AddressSlot(self.key, give_back or _nothing)


NO_SLOT: Final = ""
"""The key of a connection no per-address limit counts (loopback, a trusted proxy
before its header, a connection from another cluster node)."""


class Count:
    """How many of one thing are held at once."""

    def __init__(self) -> None:
        self.value = 0

    def hold(self) -> Hold:
        self.value += 1
        return Hold(self._give_back)

    def _give_back(self) -> None:
        self.value -= 1


class Shares:
    """One global pool's per-network shares (limits.PoolShares), taken as Holds."""

    def __init__(self, capacity: int, networks: int) -> None:
        self._shares = PoolShares(capacity, networks)

    def may_take(self, network: str, in_use: int) -> bool:
        """Whether `network` may take one more while `in_use` of the pool are taken."""
        return self._shares.may_take(network, in_use)

    def hold(self, network: str) -> Hold:
        self._shares.take(network)
        return Hold(lambda: self._shares.give_back(network))

    def __len__(self) -> int:
        """Networks holding a share now."""
        return len(self._shares)


class AddressSlots:
    """Connections held at once per source address (limits.ConnectionCounter)."""

    def __init__(self, max_connections: int) -> None:
        self._counter = ConnectionCounter(max_connections)

    def take(self, key: str) -> AddressSlot | None:
        """A slot for one more connection from key; None past the limit (nothing taken).
        key "" is not limited: its slot counts nothing."""
        if not key:
            return unlimited()
        if not self._counter.open(key):
            return None
        return AddressSlot(key, lambda: self._counter.close(key))

    def __len__(self) -> int:
        """Addresses holding a slot now."""
        return len(self._counter)


def unlimited() -> AddressSlot:
    """The slot of a connection no per-address limit counts."""
    return AddressSlot(NO_SLOT, _nothing)


class Capacity:
    """Everything the relay counts against its limits (module docstring)."""

    def __init__(self, config: RelayConfig) -> None:
        self.connections = Count()
        """Client sockets held: served, being sorted by the web front, parked or piped."""
        self.handshakes = Count()
        """Connections that have not sent their first line (the max_handshakes pool)."""
        self.pipes = Count()
        """Pipes moving bytes (bounded, with the claims, by max_active_transfers)."""
        self.bridges = Count()
        """WebSocket legs running (web.py: two descriptors each beyond the admitted end)."""
        self.tls_legs = Count()
        """TLS connections running (web.py: two descriptors each, their socketpair)."""
        self.per_address = AddressSlots(config.max_connections_per_address)
        networks = config.fair_share_addresses
        self.handshake_shares = Shares(config.max_handshakes, networks)
        self.sender_shares = Shares(config.max_waiting_senders, networks)
        self.transfer_shares = Shares(config.max_active_transfers, networks)

    def held(self) -> dict[str, int]:
        """What is held now, by name (empty when nothing is)."""
        counts = {
            "connections": self.connections.value,
            "handshakes": self.handshakes.value,
            "pipes": self.pipes.value,
            "bridges": self.bridges.value,
            "tls_legs": self.tls_legs.value,
            "addresses": len(self.per_address),
            "handshake_shares": len(self.handshake_shares),
            "sender_shares": len(self.sender_shares),
            "transfer_shares": len(self.transfer_shares),
        }
        return {name: count for name, count in counts.items() if count}
