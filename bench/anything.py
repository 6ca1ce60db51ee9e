"""Figures for "send anything" (issue 8): many small files, a directory of large files, stdin.

    .venv/bin/python -m bench.anything              # 3 runs of each, about 3 minutes on 2 cores
    .venv/bin/python -m bench.anything --runs 5 --small-files 10000

Every run is real ./send and ./receive processes through ./relay on loopback,
timed from spawning ./send until both exited (as bench/e2e.py does):

- small files: N files of 1 KiB in nested directories (100 per directory),
  one `./send R DIR`; target ≤ 5 s for 10,000;
- directory vs file: a directory of four 256 MiB files against one 1 GiB
  file, runs interleaved; target: the directory at ≥ 90 % of the file's MB/s;
- stdin vs file: `cat FILE | ./send R -` against `./send R FILE` (1 GiB),
  interleaved; target ≥ 80 %. (cat, not /dev/urandom: generating random
  bytes would measure the kernel's generator, not ferry.)
- resume: a 1 GiB transfer whose receiver is SIGKILLed once its partial
  holds about half (the sender is SIGSTOPped first, so the cut is exact),
  then sent and received again; the share of the file's bytes the relay
  carried the second time (its log's bytes_to_receiver); target ≤ 55 %.

Medians with min–max; MB is 10^6 bytes. Results go to docs/PERFORMANCE.md by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.e2e import make_file
from ferry_testing import procs

MIB = 1024 * 1024
GIB = 1024 * MIB
TIMEOUT = 300.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_pair(relay: procs.Relay, send_args: Sequence[str | Path], outdir: Path,
             stdin_from: Path | None = None, exist_ok: bool = False) -> float:  # fmt: skip
    """Seconds from spawning ./send until ./send and ./receive both exited 0."""
    outdir.mkdir(exist_ok=exist_ok)
    started = time.perf_counter()
    feeder = None
    if stdin_from is not None:
        feeder = procs.spawn(["cat", stdin_from], stdout=subprocess.PIPE)
    send = procs.spawn(
        [procs.ROOT / "send", relay.address, *send_args], stdout=subprocess.PIPE,
        stdin=feeder.stdout if feeder is not None else subprocess.DEVNULL,
    )  # fmt: skip
    if feeder is not None and feeder.stdout is not None:
        feeder.stdout.close()  # ./send holds it now
    try:
        with procs.running(send):
            code = procs.read_line(send, 30)
            receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir])
            with procs.running(receive):
                codes = procs.wait_all([receive, send], TIMEOUT)
                finished = time.perf_counter()
    finally:
        if feeder is not None:
            procs.kill(feeder)
    if codes != [0, 0]:
        raise RuntimeError(f"receive/send exit codes {codes}")
    return finished - started


def resume_share(relay: procs.Relay, source: Path, outdir: Path) -> float:
    """Percent of the file's bytes through the relay when a transfer cut at half resumes."""
    outdir.mkdir()
    size = source.stat().st_size
    send = procs.spawn([procs.ROOT / "send", relay.address, source], stdout=subprocess.PIPE)
    with procs.running(send):
        code = procs.read_line(send, 30)
        receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir])
        with procs.running(receive):
            deadline = time.monotonic() + TIMEOUT
            while _partial_size(outdir) < size // 2:
                if time.monotonic() > deadline or receive.poll() is not None:
                    raise RuntimeError("the transfer was not cut at half")
                time.sleep(0.002)
            os.kill(send.pid, signal.SIGSTOP)
            receive.kill()
            receive.wait(30)
            os.kill(send.pid, signal.SIGCONT)
        procs.wait_all([send], 60)
    kept = _partial_size(outdir)
    lines_before = relay.log().count("role=receiver")
    started = time.perf_counter()
    run_pair(relay, [source], outdir, exist_ok=True)
    log(f"resume: kept {kept} bytes, finished in {time.perf_counter() - started:.2f} s")
    deadline = time.monotonic() + 30
    while relay.log().count("role=receiver") <= lines_before and time.monotonic() < deadline:
        time.sleep(0.05)
    moved = int(re.findall(r"role=receiver .*?bytes_to_receiver=(\d+)", relay.log())[-1])
    shutil.rmtree(outdir, ignore_errors=True)
    return 100.0 * moved / size


def _partial_size(outdir: Path) -> int:
    return sum(p.stat().st_size for p in outdir.glob(".ferry-resume-*.part"))


def small_tree(root: Path, count: int) -> Path:
    top = root / "small"
    block = os.urandom(1024)
    for i in range(count):
        directory = top / f"d{i // 1000:02d}" / f"e{i // 100 % 10}"
        if i % 100 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{i:05d}.bin").write_bytes(block)
    return top


def interleaved(runs: int, arms: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, arm in arms.items():
            times[name].append(arm())
            log(f"{name}: {times[name][-1]:.2f} s")
    return times


def show(name: str, values: list[float], unit: str, target: str) -> None:
    print(f"{name:<34} {statistics.median(values):>8.1f}  "
          f"{min(values):.1f}–{max(values):.1f}  n={len(values)}  {unit:<5} {target}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.anything", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=GIB, help="bytes in the large transfers")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-anything-"))
    (work / "logged").mkdir()
    counter = iter(range(1_000_000))

    def out() -> Path:
        return work / f"out-{next(counter)}"

    try:
        with procs.relay(work, "-q") as relay:
            log(f"making {args.small_files} files of 1 KiB")
            tree = small_tree(work / "src", args.small_files)
            small = interleaved(args.runs, {"small": lambda: run_pair(relay, [tree], out())})
            shutil.rmtree(work / "src")
            for path in work.glob("out-*"):
                shutil.rmtree(path)

            log(f"making a {args.big // MIB} MiB file and a directory of four quarters")
            big = make_file(work / "big.bin", args.big)
            quarters = work / "quarters"
            quarters.mkdir()
            for i in range(4):
                make_file(quarters / f"q{i}.bin", args.big // 4)

            def timed(
                send_args: list[str | Path], stdin: Path | None = None
            ) -> Callable[[], float]:
                def arm() -> float:
                    target = out()
                    try:
                        return run_pair(relay, send_args, target, stdin)
                    finally:
                        shutil.rmtree(target, ignore_errors=True)

                return arm

            with procs.relay(work / "logged") as logged:  # outcome lines: bytes per pipe
                resumed = [resume_share(logged, big, out()) for _ in range(args.runs)]
            big_runs = interleaved(args.runs, {
                "file": timed([big]), "directory": timed([quarters]),
                "stdin": timed(["-"], stdin=big),
            })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {name: [args.big / t / 1e6 for t in ts] for name, ts in big_runs.items()}
    file_rate = statistics.median(rate["file"])
    print(f"\nmachine: {os.cpu_count()} CPUs; {args.runs} runs each; MB = 10^6 bytes")
    show(f"{args.small_files} x 1 KiB files, end to end", small["small"], "s", "target ≤ 5 s")
    show(f"{args.big // MIB} MiB file", rate["file"], "MB/s", "")
    show("directory of 4 quarters", rate["directory"], "MB/s", "")
    show("stdin (cat FILE | send -)", rate["stdin"], "MB/s", "")
    show("resume: second transfer / file", resumed, "%", "target ≤ 55 %")
    for name, target in (("directory", 90), ("stdin", 80)):
        ratio = 100 * statistics.median(rate[name]) / file_rate
        print(f"{name + ' / file':<34} {ratio:>8.0f}  %      target ≥ {target} %  "
              f"{'met' if ratio >= target else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
