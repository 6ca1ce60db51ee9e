"""ferry's benchmark suite (`make bench`): prints one table of figures.

    .venv/bin/python -m bench.run                 # everything, about 5 minutes on 2 cores
    .venv/bin/python -m bench.run --quick         # small sizes, a smoke test (< 1 minute)
    .venv/bin/python -m bench.run --only e2e,memory --runs-large 5
    .venv/bin/python -m bench.run --compare       # also magic-wormhole (bench/compare.py)
    make bench BENCH_ARGS="--compare"             # flags through make ($BENCH_ARGS)

Run from the repository root (bench is a package; ferry_testing beside it).

Each figure is the median of several runs, with min–max. MB is 10^6 bytes;
files are sized in MiB/GiB. Method: docs/PERFORMANCE.md. Progress goes to
stderr, the table to stdout, and the figures as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import compare, e2e, loadgen, report, scenarios
from bench.report import GIB, KIB, MB, MIB, Figure, Target, size_label
from ferry_testing import procs

SECTIONS = ("e2e", "copy", "memory", "waiting", "concurrent", "buffers", "compare")
DEFAULT_SECTIONS = SECTIONS[:5]
RESULTS = Path(__file__).resolve().parent / "results"

# What a failed run can raise; anything else is a bug in the bench and propagates.
RUN_ERRORS = (
    e2e.TransferFailed, scenarios.Skipped, loadgen.LoadgenError, RuntimeError, TimeoutError,
    EOFError, OSError, subprocess.SubprocessError, ValueError,
)  # fmt: skip


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


RATE_TARGETS = {GIB: 600.0, 64 * MIB: 300.0}
"""End-to-end MB/s targets by file size (from the performance issue)."""


def rate_target(size: int) -> Target | None:
    return Target(">=", RATE_TARGETS[size]) if size in RATE_TARGETS else None


@dataclass
class Suite:
    args: argparse.Namespace
    workdir: Path
    figures: list[Figure] = field(default_factory=list)
    relay_warnings: list[str] = field(default_factory=list)
    files: dict[int, Path] = field(default_factory=dict)

    def figure(self, name: str, unit: str, target: Target | None = None) -> Figure:
        figure = Figure(name, unit, target)
        self.figures.append(figure)
        return figure

    def file(self, size: int) -> Path:
        """A source file of `size` bytes, made once per suite."""
        if size not in self.files:
            log(f"making a {size_label(size)} test file")
            self.files[size] = e2e.make_file(self.workdir / f"file-{size}.bin", size)
        return self.files[size]

    def collect_relay_logs(self) -> None:
        """Every relay ran with -q, so any line it logged is a warning or an error."""
        for path in sorted(self.workdir.glob("relay-*.log")):
            self.relay_warnings.extend(f"{path.stem}: {line}" for line in _lines(path))


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if line]
    except OSError:
        return []


def repeat(figure: Figure, runs: int, one: Callable[[int], None]) -> None:
    """Call one(i) runs times; a failed run becomes a note, the others still count."""
    for index in range(runs):
        try:
            one(index)
        except RUN_ERRORS as exc:
            log(f"{figure.name}: run {index + 1} failed: {exc}")
            figure.failures.append(str(exc))
            if isinstance(exc, scenarios.Skipped):
                figure.skipped = f"skipped: {exc}"
                return


# -- end to end ------------------------------------------------------------


def section_e2e(suite: Suite) -> None:
    args = suite.args
    large, small = args.large_mib * MIB, args.small_mib * MIB
    large_rate = suite.figure(f"{size_label(large)} end to end", "MB/s", rate_target(large))
    cpu = suite.figure(f"relay CPU, {size_label(large)} runs", "CPU-s/GiB", Target("<=", 0.6))
    small_rate = suite.figure(f"{size_label(small)} end to end", "MB/s", rate_target(small))
    to_code = suite.figure("time to code", "ms", Target("<=", 150))
    with procs.relay(suite.workdir, "-q") as relay:
        _warm_up(suite, relay)
        _transfers(suite, relay, suite.file(large), args.runs_large, large_rate, cpu)
        _transfers(suite, relay, suite.file(small), args.runs_small, small_rate, None)
        source = suite.file(small)
        repeat(to_code, args.runs_code, lambda _: to_code.add(e2e.time_to_code(relay, source)))
    _fixed_cost(suite, large, large_rate, small, small_rate)


def _fixed_cost(suite: Suite, big: int, big_rate: Figure, little: int, little_rate: Figure) -> None:
    """Split transfer time into a fixed cost and a streaming rate: t = fixed + size / rate.

    Fitted through the two medians (large and small file), so it has no spread."""
    if big_rate.median is None or little_rate.median is None or big <= little:
        return
    big_time, little_time = big / (big_rate.median * MB), little / (little_rate.median * MB)
    if big_time <= little_time:
        return
    rate = (big - little) / (big_time - little_time)
    fixed = suite.figure("fixed cost per transfer (fit)", "ms")
    streaming = suite.figure("streaming rate beyond it (fit)", "MB/s")
    fixed.add(max(0.0, little_time - little / rate) * 1000.0)
    streaming.add(rate / MB)
    fixed.note(
        f"t = fixed + size/rate through the {size_label(big)} and {size_label(little)} medians"
    )


def section_copy(suite: Suite) -> None:
    """Splice vs copy path, runs interleaved (splice, copy, splice, ...) so drift hits both."""
    large_size = suite.args.large_mib * MIB
    large, label = suite.file(large_size), size_label(large_size)
    arms = []
    for path, extra in (("splice", []), ("copy", ["--no-use-splice"])):
        rate = suite.figure(f"{label} end to end, {path} path", "MB/s", rate_target(large_size))
        cpu = suite.figure(f"relay CPU, {path} path", "CPU-s/GiB", Target("<=", 0.6))
        rate.note("interleaved with the other path")
        arms.append(Arm(extra, rate, cpu))
    _interleaved(suite, large, suite.args.runs_copy, arms)


@dataclass
class Arm:
    """One relay setting in an interleaved comparison."""

    relay_args: list[str]
    rate: Figure
    cpu: Figure


def _interleaved(suite: Suite, source: Path, runs: int, arms: list[Arm]) -> None:
    """Run one transfer per arm, round after round, each arm on its own relay."""
    with contextlib.ExitStack() as stack:
        relays = [
            stack.enter_context(procs.relay(suite.workdir, "-q", *arm.relay_args)) for arm in arms
        ]
        for relay in relays:
            _warm_up(suite, relay)
        for _ in range(runs):
            for relay, arm in zip(relays, arms, strict=True):
                _transfers(suite, relay, source, 1, arm.rate, arm.cpu)


def _warm_up(suite: Suite, relay: procs.Relay) -> None:
    """One untimed small transfer: page cache, .pyc files, the relay's first allocations."""
    try:
        e2e.transfer(relay, suite.file(suite.args.small_mib * MIB), suite.workdir)
    except RUN_ERRORS as exc:
        log(f"warm-up transfer failed: {exc}")


def _transfers(
    suite: Suite, relay: procs.Relay, source: Path, runs: int, rate: Figure, cpu: Figure | None
) -> None:
    def one(index: int) -> None:
        result = e2e.transfer(relay, source, suite.workdir)
        rate.add(result.size / result.seconds / MB)
        if cpu is not None:
            cpu.add(result.relay_cpu / (result.size / GIB))
        log(f"{rate.name} {len(rate.samples)}: {rate.samples[-1]:.0f} MB/s")

    repeat(rate, runs, one)


# -- relay under load ------------------------------------------------------


def section_memory(suite: Suite) -> None:
    for level in suite.args.levels:
        _memory_level(suite, level)


def _memory_level(suite: Suite, level: int) -> None:
    figure = suite.figure(f"relay memory per transfer @{level:,}", "KiB", Target("<=", 1024))
    samples: list[scenarios.MemorySample] = []

    def one(index: int) -> None:
        sample = scenarios.memory_per_transfer(suite.workdir, level)
        samples.append(sample)
        figure.add(sample.per_transfer / KIB)
        log(f"{figure.name} {index + 1}: {figure.samples[-1]:.0f} KiB, {sample.errors} errors")

    repeat(figure, suite.args.runs_memory, one)
    if samples:
        last, errors = samples[-1], sum(sample.errors for sample in samples)
        per = max(1, last.transfers)
        figure.note(
            f"RSS {last.rss / per / KIB:.0f} + sockets {last.sockets / per / KIB:.0f}"
            f" + pipes {last.pipes / per / KIB:.0f} KiB (last run); {errors} errors (all runs)"
        )


def section_waiting(suite: Suite) -> None:
    args = suite.args
    count, active = args.waiting, args.waiting_active
    register = suite.figure(f"{count:,} waiting senders: register", "s")
    rss = suite.figure(f"{count:,} waiting senders: relay RSS", "MiB")
    new_pairs = suite.figure(f"{count:,} waiting + {active:,} new transfers", "ok", _all(active))
    paired = suite.figure(f"{count:,} senders, {active:,} of them paired", "ok", _all(active))
    samples: list[scenarios.WaitingSample] = []

    def one(index: int) -> None:
        sample = scenarios.waiting_senders(suite.workdir, count, active)
        samples.append(sample)
        register.add(sample.seconds)
        rss.add(sample.rss / MIB)
        for figure, outcome in ((new_pairs, sample.new_pairs), (paired, sample.paired_waiting)):
            if outcome is not None:
                figure.add(outcome.ok)
                figure.note(_errors_note(outcome.errors))
        log(f"{count} waiting senders {index + 1}: {sample.seconds:.1f} s")

    repeat(register, args.runs_waiting, one)
    if samples:
        errors = sum(sum(sample.errors.values()) for sample in samples)
        dropped = sum(sample.dropped for sample in samples)
        register.note(f"{errors} errors, {dropped} dropped (all runs)")
        delta = statistics.median(sample.rss_delta for sample in samples)
        rss.note(f"{delta / count / KIB:.1f} KiB per waiting sender (median delta)")
    if not active:
        new_pairs.skipped = paired.skipped = "skipped: --waiting-active 0"


def _all(count: int) -> Target:
    return Target(">=", count)


def _errors_note(errors: dict[str, int]) -> str:
    return "; ".join(f"{count}× {text}" for text, count in errors.items()) or "0 errors"


def section_concurrent(suite: Suite) -> None:
    args = suite.args
    count, size = args.concurrent, args.concurrent_mib * MIB
    name = f"{count} × {size_label(size)} at once, aggregate"
    rate = suite.figure(name, "MB/s")
    cpu = suite.figure(f"relay CPU, {count} at once", "CPU-s/GiB", Target("<=", 0.6))

    def one(index: int) -> None:
        sample = scenarios.concurrent_throughput(suite.workdir, count, size)
        rate.add(sample.rate / MB)
        cpu.add(sample.relay_cpu / (sample.moved / GIB) if sample.moved else 0.0)
        rate.note(f"{sample.errors} errors" if sample.errors else "")
        log(f"{name} {index + 1}: {rate.samples[-1]:.0f} MB/s")

    repeat(rate, args.runs_concurrent, one)
    rate.note("loadgen pipes at full speed, no encryption")


def section_buffers(suite: Suite) -> None:
    """Relay transfer_budget sweep (not in the default run), runs interleaved across settings.

    On loopback; the budget matters most across a long path (make bench-wan).
    """
    size = suite.args.buffers_mib * MIB
    arms = []
    for kib in suite.args.budget_kib:
        label = f"transfer_budget {kib} KiB"
        rate = suite.figure(f"{label}: {size_label(size)} end to end", "MB/s")
        cpu = suite.figure(f"{label}: relay CPU", "CPU-s/GiB", Target("<=", 0.6))
        arms.append(Arm(["--transfer-budget", str(kib * KIB)], rate, cpu))
    _interleaved(suite, suite.file(size), suite.args.runs_buffers, arms)


def section_compare(suite: Suite) -> None:
    sizes = list(dict.fromkeys(mib * MIB for mib in suite.args.compare_sizes))
    comparison = compare.new_comparison(sizes)
    files = {size: suite.file(size) for size in sizes}
    with procs.relay(suite.workdir, "-q") as relay:
        _warm_up(suite, relay)

        def ferry(source: Path) -> float:
            result = e2e.transfer(relay, source, suite.workdir)
            return result.size / result.seconds / MB

        compare.measure(comparison, suite.workdir, files, suite.args.compare_runs, ferry)
    suite.figures.extend(comparison.figures())


SECTION_RUNNERS: dict[str, Callable[[Suite], None]] = {
    "e2e": section_e2e,
    "copy": section_copy,
    "memory": section_memory,
    "waiting": section_waiting,
    "concurrent": section_concurrent,
    "buffers": section_buffers,
    "compare": section_compare,
}


# -- command line ------------------------------------------------------------


def _csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _sections(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    return chosen


QUICK = {
    "large_mib": 64, "small_mib": 16, "runs_large": 1, "runs_small": 2, "runs_code": 3,
    "runs_memory": 1, "runs_waiting": 1, "runs_concurrent": 1, "runs_copy": 1,
    "levels": [1, 10, 100], "waiting": 500, "waiting_active": 50, "concurrent": 4,
    "concurrent_mib": 16, "compare_sizes": [16],
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n", 1)[0]
    )
    add = parser.add_argument
    add("--only", type=_sections, default=list(DEFAULT_SECTIONS), help=f"of {SECTIONS}")
    add("--compare", action="store_true", help="also time magic-wormhole (bench/compare.py)")
    add("--quick", action="store_true", help="small sizes and single runs (a smoke test)")
    add("--large-mib", type=int, default=1024, help="the large file (default 1024)")
    add("--small-mib", type=int, default=64, help="the small file (default 64)")
    add("--runs-large", type=int, default=11, help="large-file runs (default 11)")
    add("--runs-small", type=int, default=21, help="small-file runs (default 21)")
    add("--runs-code", type=int, default=10, help="time-to-code runs (default 10)")
    add("--runs-copy", type=int, default=9, help="splice/copy large-file pairs (default 9)")
    add("--runs-memory", type=int, default=4, help="runs per memory level (default 4)")
    add("--runs-waiting", type=int, default=3, help="waiting-senders runs (default 3)")
    add("--runs-concurrent", type=int, default=5, help="concurrent-transfer runs (default 5)")
    add("--levels", type=_csv_ints, default=[1, 100, 1000], help="active transfers to hold")
    add("--waiting", type=int, default=10_000, help="waiting senders (default 10000)")
    add("--waiting-active", type=int, default=1000, help="transfers beside them (default 1000)")
    add("--concurrent", type=int, default=20, help="concurrent transfers (default 20)")
    add("--concurrent-mib", type=int, default=256, help="MiB each moves (default 256)")
    add(
        "--compare-sizes",
        type=_csv_ints,
        default=None,
        help="MiB for compare (default large,small)",
    )
    add("--compare-runs", type=int, default=3, help="rounds per size (default 3)")
    add("--budget-kib", type=_csv_ints, default=[1024, 2048, 4096, 8192], help="buffers sweep")
    add("--buffers-mib", type=int, default=256, help="file for the buffers sweep (default 256)")
    add("--runs-buffers", type=int, default=3, help="runs per buffer size (default 3)")
    add("--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags from argv (default: the command line), then from $BENCH_ARGS (for make)."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given + shlex.split(os.environ.get("BENCH_ARGS", "")))
    if args.quick:
        explicit = parser.parse_args([])  # defaults: only override what the user left alone
        for name, value in QUICK.items():
            if getattr(args, name) == getattr(explicit, name):
                setattr(args, name, value)
    if args.compare and "compare" not in args.only:
        args.only.append("compare")
    if args.compare_sizes is None:
        args.compare_sizes = [args.large_mib, args.small_mib]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    host = report.machine()
    workdir = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir="/tmp"))
    suite = Suite(args, workdir)
    try:
        for name in args.only:
            log(f"section {name}")
            SECTION_RUNNERS[name](suite)
        suite.collect_relay_logs()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    host.load_end = report.load_average()
    _print(suite, host)
    _save(args.json, suite, host)
    return 0


def _print(suite: Suite, host: report.Machine) -> None:
    print()
    print("\n".join(host.lines()))
    print()
    print(report.table(suite.figures))
    if suite.relay_warnings:
        print(f"\nrelay warnings ({len(suite.relay_warnings)} lines, first 5):")
        print("\n".join("  " + line for line in suite.relay_warnings[:5]))


def _save(path: Path, suite: Suite, host: report.Machine) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.as_json(suite.figures, host), indent=2) + "\n")
    except OSError as exc:
        log(f"could not write {path}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
