"""The relay cluster against one relay, on loopback (docs/PERFORMANCE.md, docs/CLUSTER.md).

    .venv/bin/python -m bench.cluster                      # time to code, both ways
    .venv/bin/python -m bench.cluster --throughput 4 --size-mib 64

Time to code: ms from spawning ./send to its code line, (a) straight to one
relay, (b) through HAProxy (deploy/haproxy.cfg) to three --cluster nodes with
the directory in a real redis-server. The target: (b) <= 1.2 x (a).

Throughput (optional): N concurrent transfers of SIZE, (a) all on one relay,
(b) with forced cross-node placement: sender at node1, receiver at node2, so
every byte crosses two nodes (node2 forwards to node1). Aggregate MB/s =
total bytes / wall time of the batch. Needs redis-server and haproxy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.e2e import CODE_TIMEOUT, make_file
from ferry_testing import cluster, procs

MB = 1_000_000


def time_to_code(address: str, source: Path) -> float:
    """Milliseconds from spawning ./send to its code line on stdout."""
    started = time.perf_counter()
    send = procs.spawn([procs.ROOT / "send", address, source], stdout=subprocess.PIPE)
    with procs.running(send):
        procs.read_line(send, CODE_TIMEOUT)
        return (time.perf_counter() - started) * 1000.0


def batch(send_to: str, receive_from: str, sources: list[Path], workdir: Path) -> float:
    """Seconds for all transfers, started together, to finish (all must succeed)."""
    started = time.perf_counter()
    senders = [
        procs.spawn([procs.ROOT / "send", send_to, source], stdout=subprocess.PIPE)
        for source in sources
    ]
    receivers = []
    for index, send in enumerate(senders):
        code = procs.read_line(send, CODE_TIMEOUT)
        outdir = workdir / f"out{index}"
        outdir.mkdir()
        receivers.append(procs.spawn([procs.ROOT / "receive", receive_from, code, outdir]))
    codes = procs.wait_all([*senders, *receivers], 600)
    elapsed = time.perf_counter() - started
    if any(code != 0 for code in codes):
        raise RuntimeError(f"a transfer failed: exit codes {codes}")
    return elapsed


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})"


def interleaved(runs: int, *measures: Callable[[], float]) -> list[list[float]]:
    """Each measure `runs` times, alternating, so load on a shared machine hits both."""
    results: list[list[float]] = [[] for _ in measures]
    for _ in range(runs):
        for index, measure in enumerate(measures):
            results[index].append(measure())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="time-to-code runs each")
    parser.add_argument("--throughput", type=int, default=0, metavar="N",
                        help="also N concurrent transfers each way (default: skip)")  # fmt: skip
    parser.add_argument("--size-mib", type=int, default=64, help="size of each transfer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ferry-bench-cluster-") as tmp:
        workdir = Path(tmp)
        source = make_file(workdir / "small.bin", 1024)
        single = procs.start_relay(workdir)
        try:
            with cluster.cluster(workdir) as nodes:
                balancer = nodes.balancer.address
                print(f"time to code, {args.runs} runs each, median (min-max) ms", file=sys.stderr)
                alone, through = interleaved(
                    args.runs,
                    lambda: time_to_code(single.address, source),
                    lambda: time_to_code(balancer, source),
                )
                ratio = statistics.median(through) / statistics.median(alone)
                print(f"single relay                    {median_range(alone)} ms")
                print(f"balancer + 3 nodes + Redis      {median_range(through)} ms")
                print(f"ratio                           {ratio:8.2f}   (target <= 1.2)")
                if args.throughput:
                    size = args.size_mib * 1024 * 1024
                    sources = [
                        make_file(workdir / f"big{i}.bin", size) for i in range(args.throughput)
                    ]
                    total = size * len(sources) / MB
                    one = workdir / "one"
                    one.mkdir()
                    seconds_one = batch(single.address, single.address, sources, one)
                    cross = workdir / "cross"
                    cross.mkdir()
                    node1, node2 = nodes.nodes["node1"], nodes.nodes["node2"]
                    seconds_cross = batch(node1.address, node2.address, sources, cross)
                    label = f"{args.throughput} x {args.size_mib} MiB"
                    print(f"{label}, one relay            {total / seconds_one:8.1f} MB/s")
                    print(f"{label}, cross-node (2 hops)  {total / seconds_cross:8.1f} MB/s")
                    print(f"ratio                           {seconds_one / seconds_cross:8.2f}"
                          "   (target >= 0.8)")  # fmt: skip
        finally:
            single.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
