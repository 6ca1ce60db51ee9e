"""Per-source-address limits: connections at once and nameplate look-ups per minute.

Theory of operation. Pure bookkeeping, no I/O and no clock of its own:
methods that care about time take `now` (seconds, monotonic), so tests drive
time by hand, as in table.py.

Rules this module owns:
- one source "address" is an IPv4 address, or an IPv6 /64 network (one
  customer's allocation: an attacker with one /64 has 2**64 addresses, so
  counting single IPv6 addresses would limit nothing); IPv4-mapped IPv6
  addresses count as their IPv4 address;
- an address holds at most `max_connections` connections at once: open()
  says no past it, close() gives the slot back;
- an address may make `per_minute` look-ups: a token bucket of that size,
  refilled evenly over 60 seconds, so a guesser gets one guess every
  60/per_minute seconds once its burst is spent;
- memory is bounded: an address is remembered only while it holds a
  connection or its bucket is not yet full again, and never more than
  `max_tracked` addresses at once (past that, new addresses are refused
  look-ups: under a flood from that many sources, refusing is the safe side);
- the relay's global pools (handshakes, waiting senders, transfers) are
  shared out by network: an IPv4 address, or an IPv6 /48 (a home gets a
  /56 or a /48 from its provider, so its /64s are not scarce). While a pool
  is less than a quarter full anyone may take from it; past that, a network
  may hold at most its share, ¾ × capacity ÷ `addresses` rounded up, so
  filling the rest takes about `addresses` distinct networks, and newcomers
  are admitted while one network floods.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

SECONDS_PER_MINUTE = 60.0


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address as the limits see it: an IPv6 zone (%eth0) dropped, an
    IPv4-mapped IPv6 address (::ffff:1.2.3.4) as the IPv4 one; None if host is not an
    IP address (a Unix socket, a test double)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and their IPv4-mapped forms."""
    ip = ip_of(host)
    return ip is not None and ip.is_loopback


def address_key(host: str) -> str:
    """The unit an address limit counts: the IPv4 address, or the IPv6 /64."""
    ip = ip_of(host)
    if ip is None:
        return host  # not an IP (a Unix socket, a test double): count it as itself
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def network_key(key: str) -> str:
    """The unit a pool share counts, from an address key: the IPv4 address, or the
    IPv6 /48 around a /64 ("" stays "": not limited)."""
    if "/" not in key:
        return key
    try:
        return str(ipaddress.IPv6Network(key).supernet(new_prefix=48))
    except ValueError:
        return key


class PoolShares:
    """Per-network shares of one global pool (module docstring). The pool's own cap is
    checked by its owner; this only says whether a network may take one more."""

    FREE_FRACTION = 4
    """While in_use < capacity // FREE_FRACTION, shares do not apply."""

    def __init__(self, capacity: int, addresses: int) -> None:
        self.capacity = capacity
        self.share = max(1, -(-capacity * 3 // (4 * addresses)))  # ceil(¾ capacity / addresses)
        self._held: dict[str, int] = {}

    def may_take(self, key: str, in_use: int) -> bool:
        if not key or in_use < self.capacity // self.FREE_FRACTION:
            return True
        return self._held.get(key, 0) < self.share

    def take(self, key: str) -> None:
        if key:
            self._held[key] = self._held.get(key, 0) + 1

    def give_back(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ConnectionCounter:
    """Connections held at once per address key."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._open: dict[str, int] = {}

    def open(self, key: str) -> bool:
        """Count one more connection from key; False (and nothing counted) past the limit."""
        held = self._open.get(key, 0)
        if held >= self.max_connections:
            return False
        self._open[key] = held + 1
        return True

    def close(self, key: str) -> None:
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)

    def __len__(self) -> int:
        return len(self._open)


class LookupLimiter:
    """Token buckets of look-ups per address key, `per_minute` each."""

    def __init__(self, per_minute: int, max_tracked: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / SECONDS_PER_MINUTE  # tokens per second
        self.max_tracked = max_tracked
        # Least recently charged first: a bucket is full again once it has been
        # left alone for a minute, so expired buckets are always at the front.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Charge one look-up to key; False when its budget is spent."""
        self._forget_full(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked:
                return False
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until key may look up again (0 when it may now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = bucket.tokens + max(0.0, now - bucket.updated) * self.rate
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refill = SECONDS_PER_MINUTE  # any bucket idle this long is full again
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < refill:
                break
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
