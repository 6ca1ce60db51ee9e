"""ferry across a WAN: throughput and relay memory with real per-packet latency.

    make bench-wan                                           # everything (root; long)
    sudo .venv/bin/python -m bench.wan --rtts 0,50 --sizes 64 --runs 1   # quick look

Theory of operation
-------------------
delayline.py joins two network namespaces with a forwarder that delays
every packet by RTT/2 each way (no bandwidth cap, optional loss). Both
clients run in the client namespace and every relay in the relay namespace,
so both legs of a relayed transfer, sender -> relay and relay -> receiver,
cross the delay line:

    ferry-wan-c (10.77.0.1)                      ferry-wan-r (10.77.0.2)
    send    ----------- RTT/2 each way ------->  relay
    receive <---------- RTT/2 each way --------  relay

Per RTT, per file size (1 MiB for the small-file time, then --sizes), per
run, three transfers are interleaved, so a busy spell hits all three:

  plain     bench/plainrelay.py: a dumb TCP relay and clients with kernel
            autotuning and no settings of their own, "what the network allows";
  ferry     ./relay 10.77.0.2:0, then ./send and ./receive (the receiver
            started as soon as the sender prints its code); SHA-256 checked;
  wormhole  magic-wormhole through its own transit relay (both servers in the
            relay namespace, both clients --no-listen), from bench/compare.py's
            venv; if it cannot be installed its column says n/a.

With --shapes, ferry also sends the same bytes two other ways in the same
rounds: `./send R DIR` of a directory holding the file cut in four quarters
(every quarter checked), and `cat FILE | ./send R -` (stdin).

A fresh ferry relay and plain relay are started for every transfer, so each
transfer's RSS growth is measured from the same starting point. Time runs
from spawning the sender until both clients exited; MB/s is size / time with
MB = 10^6 bytes; the table shows the median over --runs.

Relay memory. While a transfer runs, a thread runs
`ip netns exec ferry-wan-r ss -tmniH state established '( sport = :PORT )'`
every 50 ms (the relay namespace holds nothing else on that port) and sums,
over the relay's sockets, skmem r (rmem_alloc: receive queue) + w
(wmem_queued: send queue, sent or not) + f (fwd_alloc: charged but unused),
the memory the kernel charges to the sockets (t overlaps w; rb and tb are
limits). The figure is the peak of that sum over the samples; with several
runs the table shows the largest peak. RSS growth is the peak of VmRSS from
/proc/PID/status minus VmRSS just before the transfer. The same sampler
reads bytes_acked, which tells the stall scenario how much has reached the
receiver.

Stalled receiver: ferry at --stall-rtt with a --stall-size file; once the
receiver has acknowledged ~32 MiB (or after STALL_WAIT seconds), it is
SIGSTOPped, held for STALL_HOLD seconds while sampling, then killed. The
peak relay socket memory during the stall shows whether the relay's
per-transfer memory stays bounded when one side stops reading.

Every process is started in its own process group and stopped in a
`finally`, every wait has a deadline (transfers: size / --min-rate), and the
namespaces are deleted on the way out, also on Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from bench import compare, delayline, e2e, probe
from bench.delayline import CLIENT_NS, RELAY_IP, RELAY_NS, in_ns
from bench.report import MIB, Machine, load_average, machine
from ferry_testing import procs

RESULTS = procs.ROOT / "bench" / "results"
WORKDIR_PREFIX = "ferry-wan-"
SMALL = 1 * MIB
CODE_TIMEOUT = 60.0  # the code needs a few round trips to the relay: generous at 100 ms
MIN_TIMEOUT = 60.0
SAMPLE_INTERVAL = 0.05
STALL_AFTER = 32 * MIB
STALL_WAIT = 10.0
STALL_HOLD = 5.0
PLAIN: list[str | Path] = [sys.executable, procs.ROOT / "bench" / "plainrelay.py"]
TOOLS = ("plain", "ferry", "wormhole")
SHAPES = ("ferry-dir", "ferry-stdin")
"""--shapes: the same bytes as a directory of four quarters, and through stdin."""


class TransferFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"[wan] {message}", file=sys.stderr, flush=True)


# -- relay memory -------------------------------------------------------------

_SKMEM = re.compile(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+),")
_ACKED = re.compile(r"bytes_acked:(\d+)")


@dataclass(frozen=True)
class MemorySample:
    at: float
    skmem: int
    """Sum over the relay's established sockets of skmem r + w + f, bytes."""
    rss: int
    acked: int
    """Largest bytes_acked among the relay's sockets: what the receiver has acknowledged."""


def _signed(value: int) -> int:
    """forward_alloc is signed in the kernel; ss prints it as unsigned 32-bit."""
    return value - (1 << 32) if value >= 1 << 31 else value


class Sampler:
    """Samples the relay's socket memory and RSS every SAMPLE_INTERVAL in a thread."""

    def __init__(self, port: int, pid: int):
        self.port, self.pid = port, pid
        self.rss_before = probe.rss_bytes(pid)
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(delayline.COMMAND_TIMEOUT)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                self.samples.append(self._sample())
            self._stop.wait(SAMPLE_INTERVAL)

    def _sample(self) -> MemorySample:
        argv = ["ss", "-tmniH", "state", "established", f"( sport = :{self.port} )"]
        text = delayline.run(in_ns(RELAY_NS, argv), check=False)
        skmem = sum(int(r) + _signed(int(f)) + int(w) for r, f, w in _SKMEM.findall(text))
        acked = max((int(n) for n in _ACKED.findall(text)), default=0)
        return MemorySample(time.monotonic(), skmem, probe.rss_bytes(self.pid), acked)

    @property
    def acked(self) -> int:
        return self.samples[-1].acked if self.samples else 0

    def peak_skmem(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((s.skmem for s in self.samples if since <= s.at <= until), default=0)

    def rss_growth(self) -> int:
        return max((s.rss for s in self.samples), default=self.rss_before) - self.rss_before


# -- one transfer -------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float
    size: int
    peak_skmem: int | None = None
    rss_growth: int | None = None

    @property
    def mbps(self) -> float:
        return self.size / self.seconds / 1e6


@dataclass
class Context:
    workdir: Path
    min_rate: float
    """MB/s below which a transfer counts as hung."""
    ports: Iterator[int] = field(default_factory=lambda: itertools.count(20000))
    digests: dict[Path, str] = field(default_factory=dict)

    def timeout(self, size: int) -> float:
        return max(MIN_TIMEOUT, size / (self.min_rate * 1e6))

    def digest(self, path: Path) -> str:
        if path not in self.digests:
            self.digests[path] = _sha256(path)
        return self.digests[path]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Server:
    proc: procs.Popen
    port: int

    @property
    def address(self) -> str:
        return f"{RELAY_IP}:{self.port}"


@contextlib.contextmanager
def server(
    ctx: Context, name: str, argv: Callable[[int], Sequence[str | Path]]
) -> Iterator[Server]:
    """A server in the relay namespace on the next counted port, stopped when the block ends.

    Only these servers run in the namespace, so a counted port is free: no race."""
    port = next(ctx.ports)
    with open(ctx.workdir / f"{name}-{port}.log", "wb") as log_file:
        proc = procs.spawn(in_ns(RELAY_NS, argv(port)), stdout=log_file, stderr=log_file)
    with procs.running(proc):
        delayline.wait_listening(RELAY_NS, port, procs.START_TIMEOUT, proc)
        yield Server(proc, port)


def ferry_relay(ctx: Context) -> contextlib.AbstractContextManager[procs.Relay]:
    """./relay in the relay namespace on port 0; it says which port in its ready file, so
    nothing probes it across the delay line."""
    command = in_ns(RELAY_NS, [procs.ROOT / "relay"])
    return procs.relay(ctx.workdir, command=command, listen=f"{RELAY_IP}:0")


def plain_relay(ctx: Context) -> contextlib.AbstractContextManager[Server]:
    return server(ctx, "plain-relay", lambda port: [*PLAIN, "relay", f"{RELAY_IP}:{port}"])


def run_pair(
    sender: Sequence[str | Path],
    receiver: Callable[[str], Sequence[str | Path]],
    timeout: float,
    err: IO[bytes],
) -> float:
    """Sender first; the receiver as soon as the sender prints its line; seconds until both exit."""
    started = time.perf_counter()
    send = procs.spawn(in_ns(CLIENT_NS, sender), stdout=subprocess.PIPE, stderr=err)
    with procs.running(send):
        line = procs.read_line(send, CODE_TIMEOUT)
        receive = procs.spawn(in_ns(CLIENT_NS, receiver(line)), stderr=err)
        with procs.running(receive):
            codes = procs.wait_all([receive, send], timeout)
            finished = time.perf_counter()
    if codes != [0, 0]:
        raise TransferFailed(f"receive/send exit codes {codes} (None = timed out): {_tail(err)}")
    return finished - started


def _tail(err: IO[bytes], lines: int = 3) -> str:
    """The clients' last stderr lines, for a failure message."""
    err.flush()
    try:
        text = Path(err.name).read_text(errors="replace")
    except (OSError, TypeError):
        return "(no client output)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no client output)"


def _check(ctx: Context, source: Path, received: Path) -> None:
    if not received.is_file():
        raise TransferFailed(f"{received.name} was not received")
    if _sha256(received) != ctx.digest(source):
        raise TransferFailed(f"{received.name}: SHA-256 differs from the file sent")


@contextlib.contextmanager
def _ferry_session(
    ctx: Context, prefix: str
) -> Iterator[tuple[Path, IO[bytes], procs.Relay, Sampler]]:
    """A fresh ./relay in the relay namespace, sampled, with a receive directory and a
    client log; everything removed afterwards."""
    outdir = Path(tempfile.mkdtemp(prefix=prefix, dir=ctx.workdir))
    try:
        with (
            open(outdir.with_suffix(".log"), "wb") as err,
            ferry_relay(ctx) as relay,
            Sampler(relay.port, relay.proc.pid) as sampler,
        ):
            yield outdir, err, relay, sampler
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def ferry_once(ctx: Context, source: Path) -> Sample:
    size = source.stat().st_size
    with _ferry_session(ctx, "ferry-recv-") as (outdir, err, relay, sampler):
        seconds = run_pair(
            [procs.ROOT / "send", relay.address, source],
            lambda code: [procs.ROOT / "receive", relay.address, code, outdir],
            ctx.timeout(size),
            err,
        )
        _check(ctx, source, outdir / source.name)
    return Sample(seconds, size, sampler.peak_skmem(), sampler.rss_growth())


def quarters(source: Path) -> Path:
    """The directory --shapes sends for source: its bytes in four files (made once)."""
    directory = source.with_suffix(".quarters")
    if not directory.exists():
        directory.mkdir()
        size = source.stat().st_size
        with open(source, "rb") as whole:
            for i in range(4):
                with open(directory / f"q{i}.bin", "wb") as part:
                    part.write(whole.read(size // 4 if i < 3 else size))
    return directory


def ferry_shape_once(ctx: Context, source: Path, shape: str) -> Sample:
    """The bytes of source as a directory of quarters ("ferry-dir") or via stdin."""
    size = source.stat().st_size
    with _ferry_session(ctx, "ferry-recv-") as (outdir, err, relay, sampler):
        if shape == "ferry-dir":
            sender: list[str | Path] = [procs.ROOT / "send", relay.address, quarters(source)]
        else:  # the sender's stdout stays the pipe its code is read from
            sender = ["sh", "-c", 'cat "$1" | "$2" "$3" - --name "$4"', "sh", source,
                      procs.ROOT / "send", relay.address, source.name]  # fmt: skip
        seconds = run_pair(
            sender,
            lambda code: [procs.ROOT / "receive", relay.address, code, outdir],
            ctx.timeout(size),
            err,
        )
        if shape == "ferry-dir":
            for part in sorted(quarters(source).iterdir()):
                _check(ctx, part, outdir / part.parent.name / part.name)
        else:
            _check(ctx, source, outdir / source.name)
    return Sample(seconds, size, sampler.peak_skmem(), sampler.rss_growth())


def plain_once(ctx: Context, source: Path) -> Sample:
    outdir = Path(tempfile.mkdtemp(prefix="plain-recv-", dir=ctx.workdir))
    size = source.stat().st_size
    target = outdir / source.name
    try:
        with (
            open(outdir.with_suffix(".log"), "wb") as err,
            plain_relay(ctx) as relay,
            Sampler(relay.port, relay.proc.pid) as sampler,
        ):
            seconds = run_pair(
                [*PLAIN, "send", relay.address, source],
                lambda _ready: [*PLAIN, "receive", relay.address, target],
                ctx.timeout(size),
                err,
            )
        _check(ctx, source, target)
        return Sample(seconds, size, sampler.peak_skmem(), sampler.rss_growth())
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


class NamespacedServers(compare.Servers):
    """compare.Servers whose clients run in the client namespace and reach 10.77.0.2."""

    def client(self, *argv: str | Path) -> list[str | Path]:
        return [
            "ip", "netns", "exec", CLIENT_NS, self.bin_dir / "wormhole",
            "--relay-url", f"ws://{RELAY_IP}:{self.mailbox}/v1",
            "--transit-helper", f"tcp:{RELAY_IP}:{self.transit}",
            *argv,
        ]  # fmt: skip


@contextlib.contextmanager
def wormhole_servers(ctx: Context, bin_dir: Path, tag: str) -> Iterator[NamespacedServers]:
    """magic-wormhole's mailbox server and transit relay in the relay namespace."""
    twist = bin_dir / "twist"
    db = ctx.workdir / f"mailbox-{tag}.sqlite"
    with (
        server(ctx, "mailbox", lambda port: [
            twist, "wormhole-mailbox", f"--port=tcp:{port}:interface={RELAY_IP}",
            f"--channel-db={db}",
        ]) as mailbox,
        server(ctx, "transit", lambda port: [
            twist, "transitrelay", f"--port=tcp:{port}:interface={RELAY_IP}",
        ]) as transit,
    ):  # fmt: skip
        yield NamespacedServers(bin_dir, mailbox.port, transit.port, transit.proc)


def wormhole_once(ctx: Context, servers: NamespacedServers, source: Path) -> Sample:
    compare.MIN_RATE = ctx.min_rate * 1e6  # the same hang floor as ferry's transfers
    with Sampler(servers.transit, servers.transit_proc.pid) as sampler:
        result = compare.transfer(servers, source, ctx.workdir)
    return Sample(result.seconds, result.size, sampler.peak_skmem(), sampler.rss_growth())


# -- the stalled receiver -----------------------------------------------------


@dataclass(frozen=True)
class Stall:
    rtt_ms: float
    size: int
    acked_at_stop: int
    stopped_after: float
    peak_skmem_stalled: int
    skmem_at_end_of_stall: int
    peak_skmem_overall: int
    rss_growth: int
    sender_exit: int | None


def stalled(ctx: Context, rtt_ms: float, source: Path) -> Stall:
    """ferry with a receiver that stops reading (SIGSTOP), held, then killed."""
    size = source.stat().st_size
    with _ferry_session(ctx, "stall-recv-") as (outdir, err, relay, sampler):
        started = time.monotonic()
        send = procs.spawn(
            in_ns(CLIENT_NS, [procs.ROOT / "send", relay.address, source]),
            stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
        with procs.running(send):
            code = procs.read_line(send, CODE_TIMEOUT)
            receive = procs.spawn(
                in_ns(CLIENT_NS, [procs.ROOT / "receive", relay.address, code, outdir]),
                stderr=err,
            )
            with procs.running(receive):
                acked, stop_at, end_at = _stop_and_hold(receive, sampler)
                os.killpg(receive.pid, signal.SIGKILL)
                sender_exit = procs.wait_all([send], 30.0)[0]
    at_end = [s.skmem for s in sampler.samples if s.at <= end_at]
    return Stall(
        rtt_ms, size, acked, stop_at - started,
        sampler.peak_skmem(stop_at, end_at), at_end[-1] if at_end else 0,
        sampler.peak_skmem(), sampler.rss_growth(), sender_exit,
    )  # fmt: skip


def _stop_and_hold(receive: procs.Popen, sampler: Sampler) -> tuple[int, float, float]:
    """SIGSTOP the receiver after STALL_AFTER bytes (or STALL_WAIT s); hold STALL_HOLD s."""
    deadline = time.monotonic() + STALL_WAIT
    while sampler.acked < STALL_AFTER and time.monotonic() < deadline:
        if receive.poll() is not None:
            raise TransferFailed(f"receiver exited ({receive.returncode}) before the stall")
        time.sleep(SAMPLE_INTERVAL)
    acked = sampler.acked
    os.killpg(receive.pid, signal.SIGSTOP)
    stop_at = time.monotonic()
    time.sleep(STALL_HOLD)
    return acked, stop_at, time.monotonic()


# -- the run ------------------------------------------------------------------


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median_mbps(self) -> float | None:
        return statistics.median(s.mbps for s in self.samples) if self.samples else None

    def median_seconds(self) -> float | None:
        return statistics.median(s.seconds for s in self.samples) if self.samples else None

    def worst(self, attribute: str) -> int | None:
        values = [getattr(s, attribute) for s in self.samples]
        present = [v for v in values if v is not None]
        return max(present) if present else None


@dataclass
class Results:
    cells: dict[tuple[float, int, str], Cell] = field(default_factory=dict)
    checks: list[delayline.Verification] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    wormhole: str = ""
    """Why magic-wormhole has no figures, if it has none."""
    host: Machine = field(default_factory=machine)
    """Taken when the run starts (load average at start)."""

    def cell(self, rtt: float, size: int, tool: str) -> Cell:
        return self.cells.setdefault((rtt, size, tool), Cell())


Runner = Callable[[Path], Sample]


def _attempt(cell: Cell, label: str, runner: Runner, source: Path) -> None:
    try:
        sample = runner(source)
    except (TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
        log(f"{label}: FAILED {exc}")
        cell.failures.append(str(exc))
        return
    cell.samples.append(sample)
    extra = f", relay skmem peak {sample.peak_skmem // 1024} KiB" if sample.peak_skmem else ""
    log(f"{label}: {sample.seconds:.2f} s, {sample.mbps:.1f} MB/s{extra}")


def measure_rtt(
    ctx: Context,
    results: Results,
    rtt: float,
    files: dict[int, Path],
    runs: int,
    bin_dir: Path | None,
    shapes: bool = False,
) -> None:
    """All sizes at one RTT: plain, ferry and wormhole interleaved, `runs` rounds each."""
    with contextlib.ExitStack() as stack:
        servers = None
        if bin_dir is not None:
            try:
                servers = stack.enter_context(wormhole_servers(ctx, bin_dir, f"{rtt:g}"))
            except (RuntimeError, TimeoutError, OSError) as exc:
                log(f"magic-wormhole servers did not start: {exc}")
                results.wormhole = results.wormhole or f"servers did not start: {exc}"[:100]
        runners: dict[str, Runner] = {
            "plain": lambda source: plain_once(ctx, source),
            "ferry": lambda source: ferry_once(ctx, source),
        }
        if servers is not None:
            running = servers
            runners["wormhole"] = lambda source: wormhole_once(ctx, running, source)
        if shapes:
            runners["ferry-dir"] = lambda source: ferry_shape_once(ctx, source, "ferry-dir")
            runners["ferry-stdin"] = lambda source: ferry_shape_once(ctx, source, "ferry-stdin")
        for size, source in files.items():
            for index in range(runs):
                for tool, runner in runners.items():
                    label = f"RTT {rtt:g} ms, {size // MIB} MiB, run {index + 1}/{runs}, {tool}"
                    _attempt(results.cell(rtt, size, tool), label, runner, source)


def run_all(args: argparse.Namespace, ctx: Context, results: Results) -> None:
    sizes = ([SMALL] if not args.no_small else []) + [n * MIB for n in args.sizes]
    files = {
        size: e2e.make_file(ctx.workdir / f"file-{size // MIB}MiB.bin", size) for size in sizes
    }
    bin_dir = None if args.no_wormhole else _wormhole_bin(results)
    rtts = list(args.rtts)
    if args.stall_rtt is not None and args.stall_rtt not in rtts:
        rtts.append(args.stall_rtt)
    for rtt in rtts:
        log(f"delay line up: RTT {rtt:g} ms, loss {args.loss:g}")
        with delayline.up(rtt, args.loss) as line:
            if not results.sysctls:
                results.sysctls = delayline.sysctls()
            check = delayline.verify(line)
            results.checks.append(check)
            log(check.summary())
            if rtt in args.rtts:
                measure_rtt(ctx, results, rtt, files, args.runs, bin_dir, args.shapes)
            if rtt == args.stall_rtt:
                _stall(ctx, results, rtt, args.stall_size * MIB, files)


def _wormhole_bin(results: Results) -> Path | None:
    try:
        return compare.ensure_venv()
    except compare.Unavailable as exc:
        log(f"magic-wormhole unavailable: {exc}")
        results.wormhole = f"not installed: {exc}"[:100]
        return None


def _stall(ctx: Context, results: Results, rtt: float, size: int, files: dict[int, Path]) -> None:
    source = files.get(size) or e2e.make_file(ctx.workdir / f"file-{size // MIB}MiB.bin", size)
    try:
        stall = stalled(ctx, rtt, source)
    except (TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
        log(f"stalled receiver at RTT {rtt:g} ms: FAILED {exc}")
        return
    results.stalls.append(stall)
    log(
        f"stalled receiver at RTT {rtt:g} ms: stopped after {stall.acked_at_stop / MIB:.1f} MiB, "
        f"relay skmem peak while stopped {stall.peak_skmem_stalled // 1024} KiB"
    )


# -- the report ---------------------------------------------------------------


def _kib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1024:,.0f}"


def _rate(cell: Cell | None, missing: str = "n/a") -> str:
    if cell is None:
        return missing
    median = cell.median_mbps()
    if median is None:
        return "fail" if cell.failures else missing
    text = f"{median:,.1f}" if median < 100 else f"{median:,.0f}"
    return text + (f" ({len(cell.failures)} failed)" if cell.failures else "")


def _ratio(ours: Cell | None, theirs: Cell | None) -> str:
    a = ours.median_mbps() if ours else None
    b = theirs.median_mbps() if theirs else None
    return "n/a" if a is None or b is None else f"{a / b:.2f}×"


def throughput_table(results: Results, rtts: list[float], sizes: list[int]) -> list[str]:
    lines = [
        "| RTT ms | size | plain MB/s | ferry MB/s | wormhole MB/s | ferry/plain | "
        "ferry/wormhole | ferry relay peak skmem KiB | ferry relay RSS growth KiB | "
        "plain relay peak skmem KiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rtt in rtts:
        for size in sizes:
            plain, ferry, worm = (results.cells.get((rtt, size, tool)) for tool in TOOLS)
            lines.append(
                f"| {rtt:g} | {size // MIB} MiB | {_rate(plain)} | {_rate(ferry)} | "
                f"{_rate(worm)} | {_ratio(ferry, plain)} | {_ratio(ferry, worm)} | "
                f"{_kib(ferry.worst('peak_skmem') if ferry else None)} | "
                f"{_kib(ferry.worst('rss_growth') if ferry else None)} | "
                f"{_kib(plain.worst('peak_skmem') if plain else None)} |"
            )
    return lines


def shapes_table(results: Results, rtts: list[float], sizes: list[int]) -> list[str]:
    lines = [
        "| RTT ms | size | plain MB/s | ferry file MB/s | ferry directory MB/s | "
        "ferry stdin MB/s | directory/file | stdin/file |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rtt in rtts:
        for size in sizes:
            plain, ferry, directory, stdin = (
                results.cells.get((rtt, size, tool)) for tool in ("plain", "ferry", *SHAPES)
            )
            lines.append(
                f"| {rtt:g} | {size // MIB} MiB | {_rate(plain)} | {_rate(ferry)} | "
                f"{_rate(directory)} | {_rate(stdin)} | {_ratio(directory, ferry)} | "
                f"{_ratio(stdin, ferry)} |"
            )
    return lines


def small_table(results: Results, rtts: list[float]) -> list[str]:
    lines = [
        "| RTT ms | plain s | ferry s | wormhole s | ferry in RTTs |",
        "|---:|---:|---:|---:|---:|",
    ]
    for rtt in rtts:
        seconds = [
            cell.median_seconds() if (cell := results.cells.get((rtt, SMALL, tool))) else None
            for tool in TOOLS
        ]
        text = ["n/a" if s is None else f"{s:.2f}" for s in seconds]
        ferry = seconds[1]
        rtts_used = "n/a" if ferry is None or rtt == 0 else f"{ferry / (rtt / 1000):.0f}"
        lines.append(f"| {rtt:g} | {' | '.join(text)} | {rtts_used} |")
    return lines


def report(args: argparse.Namespace, results: Results, command: str) -> str:
    host = results.host
    host.load_end = load_average()
    sizes = ([SMALL] if not args.no_small else []) + [n * MIB for n in args.sizes]
    lines = [
        "# ferry WAN benchmark",
        "",
        f"command: `{command}`",
        *host.lines(),
        f"loss: {args.loss:g} per segment; runs per cell: {args.runs} "
        "(rates: median; memory: largest peak)",
        "",
        "## Namespace sysctls",
        "",
        *[
            f"- {ns}: " + "; ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())
            for ns, values in results.sysctls.items()
        ],
        "",
        "## Delay line check",
        "",
        *[f"- {check.summary()}" for check in results.checks],
        "",
        "## Throughput and relay memory",
        "",
        *throughput_table(results, list(args.rtts), sizes),
    ]
    if args.shapes:
        lines += ["", "## ferry by shape: a file, a directory, stdin", "",
                  *shapes_table(results, list(args.rtts), sizes)]  # fmt: skip
    if SMALL in sizes:
        lines += ["", "## 1 MiB: seconds end to end", "", *small_table(results, list(args.rtts))]
    if results.stalls:
        lines += ["", "## Stalled receiver (ferry)", "", *stall_table(results.stalls)]
    notes = _failures(results)
    if notes:
        lines += ["", "## Failures", "", *notes]
    return "\n".join(lines) + "\n"


def stall_table(stalls: list[Stall]) -> list[str]:
    lines = [
        "| RTT ms | file | stopped after | relay skmem peak while stopped KiB | "
        "at end of stall KiB | peak over whole transfer KiB | relay RSS growth KiB | "
        "sender exit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stalls:
        lines.append(
            f"| {s.rtt_ms:g} | {s.size // MIB} MiB | {s.acked_at_stop / MIB:.1f} MiB, "
            f"{s.stopped_after:.1f} s | {_kib(s.peak_skmem_stalled)} | "
            f"{_kib(s.skmem_at_end_of_stall)} | {_kib(s.peak_skmem_overall)} | "
            f"{_kib(s.rss_growth)} | {s.sender_exit} |"
        )
    return lines


def _failures(results: Results) -> list[str]:
    notes = [f"- magic-wormhole: {results.wormhole}"] if results.wormhole else []
    for (rtt, size, tool), cell in results.cells.items():
        notes += [f"- RTT {rtt:g} ms, {size // MIB} MiB, {tool}: {f}" for f in cell.failures]
    return notes


def save(text: str, results: Results) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"wan-{stamp}.md"
    path.write_text(text)
    (RESULTS / "wan-latest.md").write_text(text)
    raw = {
        "cells": [
            {"rtt_ms": rtt, "size": size, "tool": tool, **asdict(cell)}
            for (rtt, size, tool), cell in results.cells.items()
        ],
        "checks": [asdict(check) for check in results.checks],
        "stalls": [asdict(stall) for stall in results.stalls],
        "sysctls": results.sysctls,
    }
    path.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    return path


# -- main ---------------------------------------------------------------------


def _numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtts", type=_numbers, default=[0, 20, 50, 100], help="ms, e.g. 0,50")
    parser.add_argument(
        "--sizes",
        type=lambda t: [int(n) for n in _numbers(t)],
        default=[64, 256],
        help="MiB, e.g. 64,256 (1 MiB is always added unless --no-small)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--loss", type=float, default=0.0, help="segment loss rate, e.g. 0.001")
    parser.add_argument(
        "--min-rate",
        type=float,
        default=0.5,
        help="MB/s below which a transfer is declared hung (sets its timeout)",
    )
    parser.add_argument("--no-small", action="store_true", help="skip the 1 MiB row")
    parser.add_argument("--no-wormhole", action="store_true", help="skip magic-wormhole")
    parser.add_argument(
        "--shapes", action="store_true",
        help="ferry also sends the same bytes as a directory of four quarters and via stdin",
    )  # fmt: skip
    parser.add_argument(
        "--stall-rtt", type=float, default=100.0, help="RTT of the stalled-receiver scenario, ms"
    )
    parser.add_argument(
        "--no-stall",
        dest="stall_rtt",
        action="store_const",
        const=None,
        help="skip the stalled-receiver scenario",
    )
    parser.add_argument("--stall-size", type=int, default=256, help="MiB")
    return parser


def _remove_stale_workdirs() -> None:
    """Test files a killed run left behind (only one run can use the namespaces at a time)."""
    for stale in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench.wan needs root (network namespaces, TUN devices): use sudo",
              file=sys.stderr)  # fmt: skip
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind (and clean up) as Ctrl-C
    command = " ".join(["python -m bench.wan", *(sys.argv[1:] if argv is None else argv)])
    _remove_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    ctx = Context(workdir, args.min_rate)
    results = Results()
    try:
        run_all(args, ctx, results)
    except KeyboardInterrupt:
        log("interrupted: namespaces removed; reporting what was measured")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, results, command)
    print(text, flush=True)
    log(f"saved {save(text, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
