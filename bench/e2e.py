"""End-to-end figures with real ./send and ./receive processes through ./relay."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench import probe
from ferry_testing import procs

BLOCK = 4 * 1024 * 1024
CODE_TIMEOUT = 30.0
MIN_TRANSFER_TIMEOUT = 60.0
MIN_RATE = 5_000_000
"""Bytes/s below which a transfer is treated as hung (sets its timeout)."""


class TransferFailed(Exception):
    pass


def make_file(path: Path, size: int) -> Path:
    """A file of `size` bytes: one random block repeated (content does not change the cost)."""
    block = os.urandom(BLOCK)
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            remaining -= out.write(block[: min(BLOCK, remaining)])
    return path


@dataclass(frozen=True)
class Transfer:
    seconds: float
    relay_cpu: float
    size: int


def _timeout_for(size: int) -> float:
    return max(MIN_TRANSFER_TIMEOUT, size / MIN_RATE)


def transfer(relay: procs.Relay, source: Path, workdir: Path) -> Transfer:
    """Send source to a fresh directory; time from spawning ./send until both exited."""
    outdir = Path(tempfile.mkdtemp(prefix="recv-", dir=workdir))
    errors = workdir / "client-stderr.log"
    try:
        with open(errors, "wb") as err:
            cpu_before = probe.cpu_seconds(relay.pid)
            started = time.perf_counter()
            finished = _run_pair(relay, source, outdir, err)
            relay_cpu = probe.cpu_seconds(relay.pid) - cpu_before
        _check_received(source, outdir / source.name, errors)
        return Transfer(finished - started, relay_cpu, source.stat().st_size)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _run_pair(relay: procs.Relay, source: Path, outdir: Path, err: IO[bytes]) -> float:
    """Run send and receive; return perf_counter() when the last of them exited."""
    timeout = _timeout_for(source.stat().st_size)
    send = procs.spawn(
        [procs.ROOT / "send", relay.address, source], stdout=subprocess.PIPE, stderr=err
    )
    with procs.running(send):
        code = procs.read_line(send, CODE_TIMEOUT)
        receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir], stderr=err)
        with procs.running(receive):
            codes = procs.wait_all([receive, send], timeout)
            finished = time.perf_counter()
    if codes != [0, 0]:
        raise TransferFailed(f"receive/send exit codes {codes} (None = timed out)")
    return finished


def _check_received(source: Path, received: Path, errors: Path) -> None:
    if not received.is_file():
        raise TransferFailed(f"{received.name} not received; clients said: {_tail(errors)}")
    got, want = received.stat().st_size, source.stat().st_size
    if got != want:
        raise TransferFailed(f"received {got} bytes, sent {want}")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no client output)"


def time_to_code(relay: procs.Relay, source: Path) -> float:
    """Milliseconds from spawning ./send to its code line on stdout."""
    started = time.perf_counter()
    send = procs.spawn([procs.ROOT / "send", relay.address, source], stdout=subprocess.PIPE)
    with procs.running(send):
        procs.read_line(send, CODE_TIMEOUT)
        return (time.perf_counter() - started) * 1000.0
