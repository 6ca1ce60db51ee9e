"""Where the time goes: one transfer with relay, sender and receiver under cProfile.

    .venv/bin/python -m bench.profiles            # 256 MiB, top 12 functions per program
    .venv/bin/python -m bench.profiles --mib 64 --top 20

The relay runs as `python3 -m cProfile -m ferry.cli.relay` with PYTHONPATH=src
(a bare Python, as ./relay runs it), the clients as `.venv/bin/python -m
cProfile -m ferry.cli.main send|receive`. The .prof files are kept in
bench/results/profiles/ for `python -m pstats`.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench import e2e, probe
from bench.report import GIB, MB, MIB
from ferry_testing import procs

OUT = Path(__file__).resolve().parent / "results" / "profiles"
CODE_TIMEOUT = 30.0
TRANSFER_TIMEOUT = 300.0


def _profiled(name: str, python: str, module: str, *argv: str | Path) -> list[str | Path]:
    return [python, "-m", "cProfile", "-o", OUT / f"{name}.prof", "-m", module, *argv]


def profile_transfer(size: int, workdir: Path) -> float:
    """Run one profiled transfer of `size` bytes; return its MB/s (slowed by the profiler)."""
    source = e2e.make_file(workdir / "profile.bin", size)
    outdir = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
    env = {**os.environ, "PYTHONPATH": str(procs.ROOT / "src")}
    client = str(procs.ROOT / ".venv" / "bin" / "python")
    command = _profiled("relay", "python3", "ferry.cli.relay")
    with procs.relay(workdir, "-q", command=command, env=env) as relay:
        address = relay.address
        started = time.perf_counter()
        send_argv = _profiled("send", client, "ferry.cli.main", "send", address, source)
        send = procs.spawn(send_argv, stdout=subprocess.PIPE)
        with procs.running(send):
            code = procs.read_line(send, CODE_TIMEOUT)
            receive_argv = _profiled("receive", client, "ferry.cli.main", "receive", address, code)
            receive = procs.spawn([*receive_argv, outdir])
            with procs.running(receive):
                codes = procs.wait_all([receive, send], TRANSFER_TIMEOUT)
        seconds = time.perf_counter() - started
        relay.stop(timeout=60.0)  # SIGTERM: the relay exits cleanly and cProfile writes
    if codes != [0, 0]:
        raise RuntimeError(f"profiled transfer failed: receive/send exit codes {codes}")
    return size / seconds / MB


@dataclass
class CpuUse:
    user: float = 0.0
    system: float = 0.0

    def add(self, user: float, system: float) -> None:
        self.user += user
        self.system += system


PROGRAMS = ("send", "receive", "relay")


def cpu_budget(size: int, runs: int, workdir: Path) -> tuple[dict[str, CpuUse], float]:
    """CPU (user, system) of each program over `runs` unprofiled transfers, and the wall time."""
    source = e2e.make_file(workdir / "budget.bin", size)
    totals = {name: CpuUse() for name in PROGRAMS}
    wall = 0.0
    with procs.relay(workdir, "-q") as relay:
        for _ in range(runs):
            outdir = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
            before = probe.cpu_split(relay.pid)
            started = time.perf_counter()
            _budget_pair(relay, source, outdir, totals)
            wall += time.perf_counter() - started
            after = probe.cpu_split(relay.pid)
            totals["relay"].add(after[0] - before[0], after[1] - before[1])
            shutil.rmtree(outdir, ignore_errors=True)
    return totals, wall


def _budget_pair(relay: procs.Relay, source: Path, outdir: Path, totals: dict[str, CpuUse]) -> None:
    send = procs.spawn([procs.ROOT / "send", relay.address, source], stdout=subprocess.PIPE)
    with procs.running(send):
        code = procs.read_line(send, CODE_TIMEOUT)
        receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir])
        with procs.running(receive):
            for name, proc in (("receive", receive), ("send", send)):
                exit_code, user, system = probe.reap(proc, TRANSFER_TIMEOUT)
                if exit_code != 0:
                    raise RuntimeError(f"{name} exited with {exit_code} (None = timed out)")
                totals[name].add(user, system)


def budget_table(totals: dict[str, CpuUse], wall: float, volume: int) -> str:
    gib = volume / GIB
    lines = [f"{'program':<8} {'user':>6} {'system':>7} {'total':>6}   (CPU-s per GiB)"]
    for name, use in [*totals.items(), ("all", _sum(totals.values()))]:
        lines.append(
            f"{name:<8} {use.user / gib:>6.2f} {use.system / gib:>7.2f}"
            f" {(use.user + use.system) / gib:>6.2f}"
        )
    lines.append(f"wall     {wall / gib:>6.2f} s per GiB ({volume / wall / MB:.0f} MB/s)")
    return "\n".join(lines)


def _sum(uses: Iterable[CpuUse]) -> CpuUse:
    total = CpuUse()
    for use in uses:
        total.add(use.user, use.system)
    return total


def summary(name: str, top: int) -> str:
    """The top functions by own time (tottime), with the program's total."""
    path = OUT / f"{name}.prof"
    if not path.is_file():
        return f"{name}: no profile written ({path})"
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return f"== {name} ==\n" + "\n".join(line for line in lines[start:] if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mib", type=int, default=256, help="file size (default 256)")
    parser.add_argument("--top", type=int, default=12, help="functions per program (default 12)")
    parser.add_argument("--runs", type=int, default=3, help="unprofiled runs for the CPU budget")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    size = args.mib * MIB
    workdir = Path(tempfile.mkdtemp(prefix="ferry-profile-", dir="/tmp"))
    try:
        totals, wall = cpu_budget(size, args.runs, workdir)
        rate = profile_transfer(size, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"CPU budget, {args.runs} unprofiled {args.mib} MiB transfers (wait4 / /proc):")
    print(budget_table(totals, wall, args.runs * size), end="\n\n")
    print(f"{args.mib} MiB under cProfile: {rate:.0f} MB/s (the profiler slows every program)\n")
    for name in PROGRAMS:
        print(summary(name, args.top), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
