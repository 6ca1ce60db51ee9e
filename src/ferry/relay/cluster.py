"""The cluster's directory in Redis: nameplates, their owner nodes, node heartbeats.

Imported only when the relay runs with --cluster: it needs the optional
`redis` package (`pip install ferry[cluster]`), and nothing else of the
relay imports it.

Theory of operation. Every key lives under one prefix (KEY_PREFIX):

    ferry:np:<n>      "<node-id> <node-address>"  PX ttl   who holds nameplate n
    ferry:live        zset n -> expiry (ms)                 numbers in use
    ferry:free        zset n -> n                           released numbers
    ferry:next        integer                               highest number ever given
    ferry:node:<id>   "<node-address>"            PX ttl   heartbeat
    ferry:nodes       zset id -> expiry (ms)                 for the live-node gauge

Rules this module owns:
- allocation is one Lua script, so atomic cluster-wide: reclaim up to
  RECLAIM_BATCH numbers whose np key expired (their node died), then take
  the smallest free number, else INCR next. A number is never handed out
  while its np key exists; the smallest free number keeps codes short, so
  the number of live nameplates, not the node count, decides their length;
- a node refreshes the np keys of the nameplates it holds, and its
  heartbeat, every ttl/3 seconds in one script call (REFRESH); a node that
  dies stops refreshing, and its nameplates expire within ttl seconds;
- REFRESH re-creates a held nameplate whose key is gone (Redis restarted
  empty, or was unreachable for longer than ttl), unless another node took
  the number meanwhile (logged as a conflict: the local sender keeps it for
  receivers that land on this node);
- release deletes the np key only if this node still holds it.

Redis operations per transfer (docs/CLUSTER.md): one ALLOCATE and one
RELEASE per sender, one GET per connection that lands on a non-owner node,
plus this node's REFRESH every ttl/3 seconds shared by all its nameplates.
Each script touches O(1) keys (ALLOCATE at most RECLAIM_BATCH more).

The scripts compute key names from the prefix, so they need a single Redis
(optionally with replicas and Sentinel), not Redis Cluster.

Failure: any Redis error or an operation slower than the directory timeout
raises DirectoryUnavailable for that request; the refresh loop keeps
trying, so a node re-registers by itself when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ferry.errors import DirectoryUnavailable
from ferry.relay import logs
from ferry.relay.directory import Owner
from ferry.relay.metrics import Gauges

log = logging.getLogger(logs.LOGGER_NAME)

KEY_PREFIX: Final = "ferry:"
RECLAIM_BATCH: Final = 16
"""Expired numbers one allocation returns to the free set at most (bounds its cost)."""
LATENCY_WEIGHT: Final = 0.2
"""Weight of the newest sample in the directory latency gauge (moving average)."""

T = TypeVar("T")

# KEYS: live, free, next. ARGV: value, ttl ms, np prefix.
ALLOCATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, {batch})
for _, n in ipairs(stale) do
  if redis.call('EXISTS', ARGV[3] .. n) == 0 then
    redis.call('ZREM', KEYS[1], n)
    redis.call('ZADD', KEYS[2], n, n)
  else
    redis.call('ZADD', KEYS[1], now + ttl, n)
  end
end
local n
local popped = redis.call('ZPOPMIN', KEYS[2])
if popped[1] then n = tonumber(popped[1]) else n = redis.call('INCR', KEYS[3]) end
redis.call('SET', ARGV[3] .. n, ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, n)
return n
""".replace("{batch}", str(RECLAIM_BATCH))

# KEYS: live, free. ARGV: nameplate, value, np prefix.
RELEASE: Final = """
if redis.call('GET', ARGV[3] .. ARGV[1]) == ARGV[2] then
  redis.call('DEL', ARGV[3] .. ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: live, free, next, node key, nodes. ARGV: value, ttl ms, np prefix, node id,
# node address, then the nameplates this node holds. Returns {live nodes, conflicts...}.
REFRESH: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ttl)
redis.call('ZADD', KEYS[5], now + ttl, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local result = {redis.call('ZCARD', KEYS[5])}
local top = tonumber(redis.call('GET', KEYS[3]) or '0')
for i = 6, #ARGV do
  local n = ARGV[i]
  local key = ARGV[3] .. n
  local held = redis.call('GET', key)
  if held == ARGV[1] then
    redis.call('PEXPIRE', key, ttl)
    redis.call('ZADD', KEYS[1], now + ttl, n)
  elseif not held then
    redis.call('SET', key, ARGV[1], 'PX', ttl)
    redis.call('ZADD', KEYS[1], now + ttl, n)
    redis.call('ZREM', KEYS[2], n)
    if tonumber(n) > top then
      top = tonumber(n)
      redis.call('SET', KEYS[3], n)
    end
  else
    table.insert(result, n)
  end
end
return result
"""


class RedisDirectory:
    """The cluster's directory (module docstring); one per relay node."""

    def __init__(
        self,
        url: str,
        node: str,
        address: str,
        ttl: float,
        timeout: float,
        client: Any = None,
    ) -> None:
        """ttl: seconds a nameplate or heartbeat outlives its node; timeout: seconds per
        Redis operation. client: a redis.asyncio client (tests), else one from url."""
        self.node = node
        self.address = address
        self._value = f"{node} {address}"
        self._ttl_ms = max(1, round(ttl * 1000))
        self._interval = ttl / 3
        self._timeout = timeout
        self._redis: Any = client or aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._allocate = self._redis.register_script(ALLOCATE)
        self._release = self._redis.register_script(RELEASE)
        self._refresh = self._redis.register_script(REFRESH)
        self._held: set[int] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.up = False
        self.errors = 0
        self.operations = 0
        self.latency = 0.0
        self.live_nodes = 0
        self.conflicts = 0

    def _key(self, name: str) -> str:
        return KEY_PREFIX + name

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """One Redis operation under the timeout, timed; every failure is DirectoryUnavailable."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self.errors += 1
            if self.up:
                log.warning("cluster directory unavailable: %s", exc or type(exc).__name__)
            self.up = False
            raise DirectoryUnavailable(str(exc) or type(exc).__name__) from exc
        elapsed = time.monotonic() - started
        self.operations += 1
        self.latency += LATENCY_WEIGHT * (elapsed - self.latency)
        return result

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Register this node (if Redis answers now) and keep refreshing."""
        with contextlib.suppress(DirectoryUnavailable):
            await self.refresh()
        self._loop_task = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._releasing:
            await asyncio.wait(list(self._releasing), timeout=self._timeout)
        with contextlib.suppress(DirectoryUnavailable):
            await self._call(lambda: self._redis.delete(self._key(f"node:{self.node}")))
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            with contextlib.suppress(DirectoryUnavailable):
                await self.refresh()

    async def refresh(self) -> None:
        """Heartbeat and the TTL of every nameplate held here, in one script call."""
        keys = [self._key(name) for name in ("live", "free", "next", f"node:{self.node}", "nodes")]
        args: list[str | int] = [
            self._value,
            self._ttl_ms,
            self._key("np:"),
            self.node,
            self.address,
        ]
        held = sorted(self._held)
        result = await self._call(lambda: self._refresh(keys=keys, args=[*args, *held]))
        if not self.up:
            log.info("cluster directory reachable: node %s registered", self.node)
        self.up = True
        self.live_nodes = int(result[0])
        for raw in result[1:]:
            nameplate = int(raw)
            if nameplate in self._held:
                self.conflicts += 1
                log.warning("nameplate %d is held by another node too (directory lost)", nameplate)

    # -- the directory -----------------------------------------------------

    async def allocate(self) -> int | None:
        keys = [self._key(name) for name in ("live", "free", "next")]
        args: list[str | int] = [self._value, self._ttl_ms, self._key("np:")]
        nameplate = int(await self._call(lambda: self._allocate(keys=keys, args=args)))
        self._held.add(nameplate)
        return nameplate

    def release(self, nameplate: int) -> None:
        """Forget the nameplate here now; delete it in Redis in the background (if that
        fails, its key expires within ttl and the next allocations reclaim the number)."""
        if nameplate not in self._held:
            return
        self._held.discard(nameplate)
        task = asyncio.create_task(self._release_now(nameplate))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_now(self, nameplate: int) -> None:
        keys = [self._key("live"), self._key("free")]
        args: list[str | int] = [nameplate, self._value, self._key("np:")]
        with contextlib.suppress(DirectoryUnavailable):
            await self._call(lambda: self._release(keys=keys, args=args))

    async def locate(self, nameplate: int) -> Owner | None:
        raw = await self._call(lambda: self._redis.get(self._key(f"np:{nameplate}")))
        if raw is None:
            return None
        node, _, address = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(" ")
        if node == self.node or not address:
            return None
        return Owner(node, address)

    def gauges(self) -> Gauges:
        return {
            "cluster_directory_up": ("1 while this node's last Redis operation worked.", self.up),
            "cluster_directory_latency_seconds": (
                "Redis round trip, moving average over recent operations.",
                round(self.latency, 6),
            ),
            "cluster_directory_operations_total": (
                "Redis operations since start.",
                self.operations,
            ),
            "cluster_redis_errors_total": (
                "Redis operations that failed since start.",
                self.errors,
            ),
            "cluster_nameplates_held": ("Nameplates this node holds in Redis.", len(self._held)),
            "cluster_nodes_live": (
                "Nodes with a live heartbeat at the last refresh.",
                self.live_nodes,
            ),
            "cluster_nameplate_conflicts_total": (
                "Held nameplates found taken by another node (after Redis lost them).",
                self.conflicts,
            ),
        }
