"""Relay scenarios driven by the in-process load generator (bench/loadgen.py).

Each function starts its own ./relay, measures, and stops it, returning a
small dataclass of raw numbers; run.py turns them into figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import loadgen, probe
from ferry_testing import procs

CONCURRENCY = 200
"""Handshakes the load generator runs at once (the relay allows 1000)."""
FILL_SETTLE = 0.5
FILL_LIMIT = 60.0
SETTLE = 1.0
"""Seconds to let the relay settle before a memory snapshot."""
COMBINED_PUSH = 256 * 1024
STREAM_TIMEOUT = 60.0
MIN_RATE = 1_000_000
"""Bytes/s per pipe below which a streaming pipe counts as hung."""


def _pipe_source(index: int, group: int = 1) -> str:
    """Pipes' source addresses; each group of addresses is used once per relay."""
    return loadgen.source_for(index, loadgen.PIPES_PER_ADDRESS, group)


def _control_source(index: int) -> str:
    return loadgen.source_for(index, loadgen.CONTROLS_PER_ADDRESS, group=2)


class Skipped(Exception):
    """The scenario cannot run here (e.g. too few file descriptors)."""


def _need_fds(wanted: int) -> None:
    have = loadgen.raise_fd_limit(wanted)
    if have < wanted:
        raise Skipped(f"needs {wanted} fds, limit is {have}")


@dataclass(frozen=True)
class MemorySample:
    transfers: int
    errors: int
    rss: int
    sockets: int
    pipes: int

    @property
    def per_transfer(self) -> float:
        return (self.rss + self.sockets + self.pipes) / max(1, self.transfers)


def memory_per_transfer(logdir: Path, count: int) -> MemorySample:
    """Relay memory with `count` pipes whose receivers stall, so every buffer fills."""
    _need_fds(loadgen.fds_for(pipes=count))
    with procs.relay(logdir, "-q") as relay:
        return asyncio.run(_memory(relay, count))


async def _memory(relay: procs.Relay, count: int) -> MemorySample:
    # One pipe first, so first-use allocations do not count against the N pipes.
    warm = await loadgen.open_pipe(procs.HOST, relay.port, loadgen.source_for(0, 1, group=9))
    warm.close()
    await asyncio.sleep(SETTLE)
    before = probe.snapshot(relay.pid, relay.port)
    opened = await loadgen.open_many(
        count, lambda i: loadgen.open_pipe(procs.HOST, relay.port, _pipe_source(i)), CONCURRENCY
    )
    try:
        await asyncio.gather(
            *(loadgen.fill(pipe, FILL_SETTLE, FILL_LIMIT) for pipe in opened.items)
        )
        await asyncio.sleep(SETTLE)
        after = probe.snapshot(relay.pid, relay.port)
    finally:
        loadgen.close_all(opened.items)
    return MemorySample(
        transfers=len(opened.items),
        errors=opened.error_count,
        rss=after.rss - before.rss,
        sockets=after.sockets.used - before.sockets.used,
        pipes=after.pipes - before.pipes,
    )


@dataclass(frozen=True)
class Outcome:
    ok: int
    errors: dict[str, int]


@dataclass(frozen=True)
class WaitingSample:
    senders: int
    errors: dict[str, int]
    seconds: float
    rss: int
    rss_delta: int
    dropped: int
    new_pairs: Outcome | None = None
    """`active` extra senders with receivers while all waiting senders hold."""
    paired_waiting: Outcome | None = None
    """`active` of the waiting senders get a receiver and move bytes."""


def waiting_senders(logdir: Path, count: int, active: int) -> WaitingSample:
    """Register `count` waiting senders; then, if active > 0, run that many pipes besides."""
    _need_fds(loadgen.fds_for(pipes=active, controls=2 * count))
    with procs.relay(logdir, "-q") as relay:
        return asyncio.run(_waiting(relay, count, active))


async def _waiting(relay: procs.Relay, count: int, active: int) -> WaitingSample:
    base = probe.rss_bytes(relay.pid)
    opened = await loadgen.open_many(
        count,
        # As ferry's sender waits: a control connection and a parked data connection.
        lambda i: loadgen.Control.register(procs.HOST, relay.port, _control_source(i), True),
        CONCURRENCY,
    )
    try:
        await asyncio.sleep(SETTLE)
        rss = probe.rss_bytes(relay.pid)
        sample = WaitingSample(
            len(opened.items), opened.errors, opened.seconds, rss, rss - base, _dropped(opened)
        )
        if active:
            new_pairs = await _pairs(relay, active, [], group=3)
            paired_waiting = await _pairs(relay, active, opened.items[:active], group=4)
            sample = replace(sample, new_pairs=new_pairs, paired_waiting=paired_waiting)
        return replace(sample, dropped=_dropped(opened))
    finally:
        loadgen.close_all(opened.items)


def _dropped(opened: loadgen.Opened[loadgen.Control]) -> int:
    """Waiting senders the relay closed or refused after registering them."""
    return sum(1 for control in opened.items if control.ended is not None)


async def _pairs(
    relay: procs.Relay, count: int, controls: list[loadgen.Control], group: int
) -> Outcome:
    """Pair `count` receivers (with new senders, or with the given waiting ones); move bytes."""

    def make(index: int) -> Awaitable[loadgen.Pipe]:
        control = controls[index] if controls else None
        return loadgen.open_pipe(procs.HOST, relay.port, _pipe_source(index, group), control)

    opened = await loadgen.open_many(count, make, CONCURRENCY)
    try:
        got = await asyncio.gather(
            *(loadgen.stream(pipe, COMBINED_PUSH, STREAM_TIMEOUT) for pipe in opened.items)
        )
    finally:
        loadgen.close_all(opened.items)
    short = sum(1 for received in got if received != COMBINED_PUSH)
    errors = dict(opened.errors)
    if short:
        errors["short transfer"] = short
    return Outcome(len(opened.items) - short, errors)


@dataclass(frozen=True)
class ThroughputSample:
    pipes: int
    errors: int
    seconds: float
    moved: int
    relay_cpu: float

    @property
    def rate(self) -> float:
        return self.moved / self.seconds if self.seconds > 0 else 0.0


def concurrent_throughput(
    logdir: Path, count: int, size: int, extra: tuple[str, ...] = ()
) -> ThroughputSample:
    """`count` pipes each moving `size` bytes at full speed, all at once."""
    _need_fds(loadgen.fds_for(pipes=count))
    with procs.relay(logdir, "-q", *extra) as relay:
        return asyncio.run(_throughput(relay, count, size))


async def _throughput(relay: procs.Relay, count: int, size: int) -> ThroughputSample:
    opened = await loadgen.open_many(
        count, lambda i: loadgen.open_pipe(procs.HOST, relay.port, _pipe_source(i)), CONCURRENCY
    )
    try:
        cpu = probe.cpu_seconds(relay.pid)
        started = time.perf_counter()
        got = await asyncio.gather(
            *(loadgen.stream(pipe, size, STREAM_TIMEOUT + size / MIN_RATE) for pipe in opened.items)
        )
        seconds = time.perf_counter() - started
        cpu = probe.cpu_seconds(relay.pid) - cpu
    finally:
        loadgen.close_all(opened.items)
    short = sum(1 for count in got if count != size)
    return ThroughputSample(len(opened.items), opened.error_count + short, seconds, sum(got), cpu)
