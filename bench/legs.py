"""ferry on asymmetric paths: the sender's leg and the receiver's leg of different round trips.

    sudo .venv/bin/python -m bench.legs                        # 10/90 90/10 20 50 100, 64 MiB
    sudo .venv/bin/python -m bench.legs --legs 10/90 --runs 1  # quick look

Theory of operation
-------------------
delayline.py's line with a second relay address: packets to and from
RELAY_IP (10.77.0.2) take the sender leg's round trip, packets to and from
FAR_IP (10.77.0.4) the receiver leg's. Every relay listens on both
addresses (0.0.0.0 in the relay namespace); the sender connects to RELAY_IP
and the receiver to FAR_IP, so "10/90" is a sender 10 ms and a receiver 90
ms from the relay (round trips).

Per leg pair, per run, three transfers are interleaved, so a busy spell
hits all three:

  plain  bench/plainrelay.py: a dumb relay with kernel autotuning;
  old    ./relay of --old (default: main), unpacked with `git archive`;
  new    ./relay of this tree.

Both ferry relays serve this tree's ./send and ./receive (the split is the
relay's alone). Time and relay memory are measured as in bench/wan.py (time
from spawning the sender until both clients exited, MB = 10^6 bytes;
relay socket memory = peak of skmem r + w + f over its sockets, sampled
with ss every 50 ms). The table gives the median MB/s and the range over
--runs. On every asymmetric pair, the new relay is then run with a
receiver that stops (SIGSTOP once ~32 MiB are acknowledged, held 5 s) and
the peak socket memory during the stall is reported: it must stay within
the 4 MiB budget. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import delayline, e2e, wan
from bench.delayline import CLIENT_NS, FAR_IP, RELAY_IP, RELAY_NS, in_ns
from bench.report import MIB, load_average, unpack_ref
from ferry_testing import procs

ANY = "0.0.0.0"
TOOLS = ("plain", "old", "new")
BUDGET = 4 * MIB


@dataclass(frozen=True)
class Legs:
    sender_ms: float
    receiver_ms: float

    def __str__(self) -> str:
        return f"{self.sender_ms:g}/{self.receiver_ms:g}"


def parse_legs(text: str) -> list[Legs]:
    """ "10/90,50" -> [Legs(10, 90), Legs(50, 50)]."""
    legs = []
    for item in text.split(","):
        sender, _, receiver = item.partition("/")
        legs.append(Legs(float(sender), float(receiver or sender)))
    return legs


@dataclass
class Cells:
    samples: dict[tuple[str, str], list[wan.Sample]] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    stalls: dict[tuple[str, str], int] = field(default_factory=dict)
    """(legs, relay) -> peak relay socket memory while the receiver was stopped."""


@contextlib.contextmanager
def ferry_relay(ctx: wan.Context, root: Path) -> Iterator[procs.Relay]:
    """root/relay in the relay namespace, on both addresses, port 0 (its ready file says)."""
    command = in_ns(RELAY_NS, [root / "relay"])
    with procs.relay(ctx.workdir, command=command, listen=f"{ANY}:0") as relay:
        yield relay


def ferry_once(ctx: wan.Context, root: Path, source: Path) -> wan.Sample:
    size = source.stat().st_size
    outdir = Path(tempfile.mkdtemp(prefix="legs-recv-", dir=ctx.workdir))
    try:
        with (
            open(outdir.with_suffix(".log"), "wb") as err,
            ferry_relay(ctx, root) as relay,
            wan.Sampler(relay.port, relay.proc.pid) as sampler,
        ):
            seconds = wan.run_pair(
                [procs.ROOT / "send", f"{RELAY_IP}:{relay.port}", source],
                lambda code: [procs.ROOT / "receive", f"{FAR_IP}:{relay.port}", code, outdir],
                ctx.timeout(size),
                err,
            )
            received = outdir / source.name
            if not received.is_file() or wan._sha256(received) != ctx.digest(source):
                raise wan.TransferFailed(f"{source.name}: not received whole")
        return wan.Sample(seconds, size, sampler.peak_skmem(), sampler.rss_growth())
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def plain_once(ctx: wan.Context, source: Path) -> wan.Sample:
    size = source.stat().st_size
    outdir = Path(tempfile.mkdtemp(prefix="legs-plain-", dir=ctx.workdir))
    target = outdir / source.name
    try:
        with (
            open(outdir.with_suffix(".log"), "wb") as err,
            wan.server(ctx, "plain", lambda port: [*wan.PLAIN, "relay", f"{ANY}:{port}"]) as relay,
            wan.Sampler(relay.port, relay.proc.pid) as sampler,
        ):
            seconds = wan.run_pair(
                [*wan.PLAIN, "send", f"{RELAY_IP}:{relay.port}", source],
                lambda _ready: [*wan.PLAIN, "receive", f"{FAR_IP}:{relay.port}", target],
                ctx.timeout(size),
                err,
            )
        if not target.is_file() or wan._sha256(target) != ctx.digest(source):
            raise wan.TransferFailed(f"{source.name}: not received whole")
        return wan.Sample(seconds, size, sampler.peak_skmem(), sampler.rss_growth())
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def stalled(ctx: wan.Context, root: Path, source: Path) -> int:
    """Peak relay socket memory while the receiver is stopped (SIGSTOP) mid-transfer."""
    outdir = Path(tempfile.mkdtemp(prefix="legs-stall-", dir=ctx.workdir))
    try:
        with (
            open(outdir.with_suffix(".log"), "wb") as err,
            ferry_relay(ctx, root) as relay,
            wan.Sampler(relay.port, relay.proc.pid) as sampler,
        ):
            send = procs.spawn(
                in_ns(CLIENT_NS, [procs.ROOT / "send", f"{RELAY_IP}:{relay.port}", source]),
                stdout=subprocess.PIPE, stderr=err,
            )  # fmt: skip
            with procs.running(send):
                code = procs.read_line(send, wan.CODE_TIMEOUT)
                argv: list[str | Path] = [
                    procs.ROOT / "receive", f"{FAR_IP}:{relay.port}", code, outdir
                ]  # fmt: skip
                receive = procs.spawn(in_ns(CLIENT_NS, argv), stderr=err)
                with procs.running(receive):
                    _acked, stop_at, end_at = wan._stop_and_hold(receive, sampler)
                    os.killpg(receive.pid, signal.SIGKILL)
        return sampler.peak_skmem(stop_at, end_at)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _attempt(cells: Cells, key: tuple[str, str], label: str, run: Callable[[], wan.Sample]) -> None:
    try:
        sample = run()
    except (wan.TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
        wan.log(f"{label}: FAILED {exc}")
        cells.failures[key] = cells.failures.get(key, 0) + 1
        return
    cells.samples.setdefault(key, []).append(sample)
    peak = f", relay skmem peak {sample.peak_skmem // 1024} KiB" if sample.peak_skmem else ""
    wan.log(f"{label}: {sample.seconds:.2f} s, {sample.mbps:.1f} MB/s{peak}")


def measure(ctx: wan.Context, cells: Cells, legs: Legs, old: Path, source: Path, runs: int) -> None:
    with delayline.up(legs.sender_ms, far_rtt_ms=legs.receiver_ms):
        for index in range(runs):
            for tool in TOOLS:
                label = f"legs {legs} ms, run {index + 1}/{runs}, {tool}"
                if tool == "plain":
                    _attempt(cells, (str(legs), tool), label, lambda: plain_once(ctx, source))
                else:
                    root = old if tool == "old" else procs.ROOT
                    _attempt(
                        cells,
                        (str(legs), tool),
                        label,
                        functools.partial(ferry_once, ctx, root, source),
                    )
        if legs.sender_ms != legs.receiver_ms:
            for tool in ("old", "new"):
                root = old if tool == "old" else procs.ROOT
                try:
                    peak = stalled(ctx, root, source)
                except (wan.TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
                    wan.log(f"legs {legs} ms, stalled receiver, {tool}: FAILED {exc}")
                    continue
                cells.stalls[(str(legs), tool)] = peak
                wan.log(f"legs {legs} ms, stalled receiver, {tool}: peak {peak // 1024} KiB")


def _spread(samples: list[wan.Sample] | None) -> str:
    if not samples:
        return "fail"
    rates = [s.mbps for s in samples]
    return f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})"


def _median(samples: list[wan.Sample] | None) -> float | None:
    return statistics.median(s.mbps for s in samples) if samples else None


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}×"


def _peak(samples: list[wan.Sample] | None) -> str:
    peaks = [s.peak_skmem for s in samples or [] if s.peak_skmem is not None]
    return f"{max(peaks) / 1024:,.0f}" if peaks else "n/a"


def table(cells: Cells, all_legs: list[Legs], old_ref: str) -> list[str]:
    lines = [
        f"| sender/receiver RTT ms | plain MB/s | old ({old_ref}) MB/s | new MB/s | new/old | "
        "new/plain | old/plain | new peak skmem KiB | old peak skmem KiB | "
        "stalled receiver, new / old peak KiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for legs in all_legs:
        key = str(legs)
        plain, old, new = (cells.samples.get((key, tool)) for tool in TOOLS)
        stall = "-"
        if (key, "new") in cells.stalls or (key, "old") in cells.stalls:
            stall = " / ".join(
                f"{cells.stalls[(key, t)] / 1024:,.0f}" if (key, t) in cells.stalls else "n/a"
                for t in ("new", "old")
            )
        lines.append(
            f"| {key} | {_spread(plain)} | {_spread(old)} | {_spread(new)} | "
            f"{_ratio(_median(new), _median(old))} | {_ratio(_median(new), _median(plain))} | "
            f"{_ratio(_median(old), _median(plain))} | {_peak(new)} | {_peak(old)} | {stall} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.legs", description=__doc__.split("\n")[0])
    parser.add_argument("--legs", default="10/90,90/10,20/20,50/50,100/100",
                        help="sender/receiver round trips in ms, comma-separated")  # fmt: skip
    parser.add_argument("--size", type=int, default=64, help="MiB per transfer (default 64)")
    parser.add_argument("--runs", type=int, default=3, help="rounds per leg pair (default 3)")
    parser.add_argument("--old", default="main", help="git ref of the old relay (default main)")
    parser.add_argument("--min-rate", type=float, default=0.5, help="MB/s that counts as hung")
    args = parser.parse_args(argv)
    delayline.require_root()
    all_legs = parse_legs(args.legs)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_start = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferry-legs-") as temp:
        workdir = Path(temp)
        old = unpack_ref(args.old, workdir / "old", "src", "relay")
        ctx = wan.Context(workdir, args.min_rate)
        source = e2e.make_file(workdir / f"file-{args.size}MiB.bin", args.size * MIB)
        cells = Cells()
        for legs in all_legs:
            measure(ctx, cells, legs, old, source, args.runs)
    command = "sudo .venv/bin/python -m bench.legs " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command}")
    print(f"{args.size} MiB per transfer, {args.runs} runs, median (min-max) MB/s")
    print(f"load average: start {load_start}, end {load_average()} ({os.cpu_count()} CPUs); "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    print("\n".join(table(cells, all_legs, args.old)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
