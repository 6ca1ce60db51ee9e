"""Figures for "send anything": many small files, a directory of large files, stdin.

    .venv/bin/python -m bench.anything              # 3 runs of each, about 3 minutes on 2 cores
    .venv/bin/python -m bench.anything --runs 5 --small-files 10000
    .venv/bin/python -m bench.anything --only small --wormhole --runs 5   # vs magic-wormhole

Every run is real ./send and ./receive processes through ./relay on loopback,
timed from spawning ./send until both exited (as bench/e2e.py does):

- small files: N files of 1 KiB in nested directories (100 per directory),
  one `./send R DIR`; target ≤ 5 s for 10,000. With --wormhole, runs of
  `wormhole send DIR` / `wormhole receive` (bench/compare.py: its own
  mailbox server and transit relay on loopback, --no-listen, the same
  timing) alternate with ferry's on the same tree; target: magic-wormhole's
  median time ≥ 2 × ferry's. Every received tree, from either tool, is
  checked file by file against the source (outside the timing) and kept
  until the section ends (remove_outdirs says why);
- directory vs file: a directory of four 256 MiB files against one 1 GiB
  file, runs interleaved; target: the directory at ≥ 90 % of the file's MB/s;
- stdin vs file: `cat FILE | ./send R -` against `./send R FILE` (1 GiB),
  interleaved; target ≥ 80 %. (cat, not /dev/urandom: generating random
  bytes would measure the kernel's generator, not ferry.)
- resume: a 1 GiB transfer whose receiver is SIGKILLed once its partial
  (or a tree's staging) holds about half (the sender is SIGSTOPped first,
  so the cut is exact), then sent and received again; the share of the
  bytes the relay carried the second time (its log's bytes_to_receiver);
  target ≤ 55 %. The same for the directory of four quarters (cut in the
  third file) and for `cat FILE | ./send R -`.

--only small or --only big runs the first section or the other three alone.
Everything is written under $TMPDIR (default /tmp): TMPDIR=/dev/shm puts
the trees on tmpfs, to tell the filesystem's share from the tools'.
Medians with min–max; MB is 10^6 bytes. Results go to docs/PERFORMANCE.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench import compare
from bench.e2e import make_file
from ferry_testing import procs

MIB = 1024 * 1024
GIB = 1024 * MIB
TIMEOUT = 300.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def spawn_send(
    relay: procs.Relay, send_args: Sequence[str | Path], stdin_from: Path | None
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes] | None]:
    """./send RELAY ARGS..., its stdin `cat stdin_from` if given (then also that process)."""
    feeder = None
    if stdin_from is not None:
        feeder = procs.spawn(["cat", stdin_from], stdout=subprocess.PIPE)
    send = procs.spawn(
        [procs.ROOT / "send", relay.address, *send_args], stdout=subprocess.PIPE,
        stdin=feeder.stdout if feeder is not None else subprocess.DEVNULL,
    )  # fmt: skip
    if feeder is not None and feeder.stdout is not None:
        feeder.stdout.close()  # ./send holds it now
    return send, feeder


def run_pair(relay: procs.Relay, send_args: Sequence[str | Path], outdir: Path,
             stdin_from: Path | None = None, exist_ok: bool = False) -> float:  # fmt: skip
    """Seconds from spawning ./send until ./send and ./receive both exited 0."""
    outdir.mkdir(exist_ok=exist_ok)
    started = time.perf_counter()
    send, feeder = spawn_send(relay, send_args, stdin_from)
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


def resume_share(
    relay: procs.Relay, send_args: Sequence[str | Path], size: int, outdir: Path,
    stdin_from: Path | None = None,
) -> float:  # fmt: skip
    """Percent of the bytes through the relay when a transfer cut at half resumes.

    send_args: one file, a directory, or "-" with stdin_from (a stream)."""
    outdir.mkdir()
    send, feeder = spawn_send(relay, send_args, stdin_from)
    with procs.running(send):
        code = procs.read_line(send, 30)
        receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir])
        with procs.running(receive):
            deadline = time.monotonic() + TIMEOUT
            while _kept_size(outdir) < size // 2:
                if time.monotonic() > deadline or receive.poll() is not None:
                    raise RuntimeError("the transfer was not cut at half")
                time.sleep(0.002)
            os.kill(send.pid, signal.SIGSTOP)
            receive.kill()
            receive.wait(30)
            os.kill(send.pid, signal.SIGCONT)
        procs.wait_all([send], 60)
    if feeder is not None:
        procs.kill(feeder)
    kept = _kept_size(outdir)
    lines_before = relay.log().count("role=receiver")
    started = time.perf_counter()
    run_pair(relay, send_args, outdir, stdin_from=stdin_from, exist_ok=True)
    log(f"resume: kept {kept} bytes, finished in {time.perf_counter() - started:.2f} s")
    deadline = time.monotonic() + 30
    while relay.log().count("role=receiver") <= lines_before and time.monotonic() < deadline:
        time.sleep(0.05)
    moved = int(re.findall(r"role=receiver .*?bytes_to_receiver=(\d+)", relay.log())[-1])
    shutil.rmtree(outdir, ignore_errors=True)
    return 100.0 * moved / size


def _kept_size(outdir: Path) -> int:
    """Bytes a receive keeps for resuming in outdir: partial files and tree stagings."""
    files: list[Path] = []
    for kept in outdir.glob(".ferry-resume-*"):
        if kept.is_dir():
            files += (Path(d) / n for d, _, names in os.walk(kept) for n in names)
        else:
            files.append(kept)
    total = 0
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def small_tree(root: Path, count: int) -> Path:
    """count files of 1 KiB, 100 per directory, 10 directories per directory; no two alike."""
    top = root / "small"
    block = os.urandom(1024)
    for i in range(count):
        directory = top / f"d{i // 1000:02d}" / f"e{i // 100 % 10}"
        if i % 100 == 0:
            directory.mkdir(parents=True)
        (directory / f"f{i:05d}.bin").write_bytes(i.to_bytes(8, "big") + block[8:])
    return top


def tree_files(top: Path) -> dict[str, Path]:
    """Every regular file under top, by its path relative to top."""
    found: dict[str, Path] = {}
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(top))] = path
    return found


def check_tree(source: Path, received: Path) -> None:
    """Raise RuntimeError unless received holds exactly source's files, byte for byte."""
    want, got = tree_files(source), tree_files(received)
    if want.keys() != got.keys():
        missing, extra = len(want.keys() - got.keys()), len(got.keys() - want.keys())
        raise RuntimeError(
            f"{received}: {len(got)} files, not {len(want)} ({missing} missing, {extra} extra)"
        )
    differ = [name for name, path in want.items() if path.read_bytes() != got[name].read_bytes()]
    if differ:
        raise RuntimeError(f"{received}: {len(differ)} files differ, e.g. {differ[0]}")


def tree_size(top: Path) -> int:
    return sum(path.stat().st_size for path in tree_files(top).values())


def small_vs_wormhole(
    relay: procs.Relay, tree: Path, work: Path, runs: int
) -> dict[str, list[float]] | None:
    """Seconds per run, ferry and magic-wormhole interleaved; None if wormhole is unavailable."""
    try:
        bin_dir = compare.ensure_venv()
    except compare.Unavailable as exc:
        log(f"magic-wormhole unavailable: {exc}")
        return None
    size = tree_size(tree)
    with compare.servers(bin_dir, work) as servers:

        def wormhole() -> float:
            outdir = Path(tempfile.mkdtemp(prefix="out-wormhole-", dir=work))
            return compare.transfer(servers, tree, work, check_tree, size, outdir).seconds

        return interleaved(runs, {"small": small_arm(relay, tree, work), "wormhole": wormhole})


def small_arm(relay: procs.Relay, tree: Path, work: Path) -> Callable[[], float]:
    """One `./send R DIR` of the tree: seconds; the copy is checked and kept (see below)."""

    def arm() -> float:
        outdir = Path(tempfile.mkdtemp(prefix="out-ferry-", dir=work))
        seconds = run_pair(relay, [tree], outdir, exist_ok=True)
        check_tree(tree, outdir / tree.name)
        return seconds

    return arm


def remove_outdirs(work: Path) -> None:
    """The received trees, once the small-files runs are over, never between them.

    Deleting 10,000 files makes the next 10,000 creations on the same
    filesystem slower for minutes: on ext4 without a journal (this
    sandbox's disk), each new inode's search starts at its group's first
    free inode and skips every one deleted in the last 60 s (360 s while
    its inode-table block is dirty), one buffer-cache look-up each
    (find_inode_bit -> recently_deleted): 0.27–0.44 ms per file created,
    measured. A tree deleted between runs would charge that to whichever
    tool runs next; other work deleting files on the machine still can."""
    for path in work.glob("out-*"):
        shutil.rmtree(path)


def interleaved(runs: int, arms: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, arm in arms.items():
            times[name].append(arm())
            log(f"{name}: {times[name][-1]:.2f} s")
    return times


def show(name: str, values: list[float], unit: str, target: str, digits: int = 1) -> None:
    print(f"{name:<34} {statistics.median(values):>8.{digits}f}  "
          f"{min(values):.{digits}f}–{max(values):.{digits}f}  n={len(values)}  "
          f"{unit:<5} {target}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.anything", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=GIB, help="bytes in the large transfers")
    parser.add_argument(
        "--only", choices=("small", "big"),
        help="small: the many-small-files tree alone; big: file, directory, stdin and resume",
    )  # fmt: skip
    parser.add_argument(
        "--wormhole", action="store_true",
        help="also send the small-files tree with magic-wormhole (bench/compare.py), interleaved",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-anything-"))
    (work / "logged").mkdir()
    small: dict[str, list[float]] | None = None
    wormhole_missing = False
    rate: dict[str, list[float]] = {}
    resumed: dict[str, list[float]] = {}
    try:
        with procs.relay(work, "-q") as relay:
            if args.only != "big":
                log(f"making {args.small_files} files of 1 KiB")
                tree = small_tree(work / "src", args.small_files)
                if args.wormhole:
                    small = small_vs_wormhole(relay, tree, work, args.runs)
                    wormhole_missing = small is None
                if small is None:
                    small = interleaved(args.runs, {"small": small_arm(relay, tree, work)})
                shutil.rmtree(work / "src")
                remove_outdirs(work)
            if args.only != "small":
                rate, resumed = big_section(relay, work, args.runs, args.big)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmachine: {os.cpu_count()} CPUs; {args.runs} runs each; MB = 10^6 bytes")
    if small is not None:
        name = f"{args.small_files} x 1 KiB files, end to end"
        show(name, small["small"], "s", "target ≤ 5 s", digits=2)
        if "wormhole" in small:
            show_wormhole(small["small"], small["wormhole"])
        elif wormhole_missing:
            print("magic-wormhole: not measured (unavailable, see the log above)")
    if rate:
        show_big(rate, resumed, args.big)
    return 0


def big_section(
    relay: procs.Relay, work: Path, runs: int, big_size: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """MB/s of the file, directory and stdin runs; the resume shares (%)."""
    counter = iter(range(1_000_000))

    def out() -> Path:
        return work / f"out-{next(counter)}"

    log(f"making a {big_size // MIB} MiB file and a directory of four quarters")
    big = make_file(work / "big.bin", big_size)
    quarters = work / "quarters"
    quarters.mkdir()
    for i in range(4):
        make_file(quarters / f"q{i}.bin", big_size // 4)

    def timed(send_args: list[str | Path], stdin: Path | None = None) -> Callable[[], float]:
        def arm() -> float:
            target = out()
            try:
                return run_pair(relay, send_args, target, stdin)
            finally:
                shutil.rmtree(target, ignore_errors=True)

        return arm

    with procs.relay(work / "logged") as logged:  # outcome lines: bytes per pipe
        resumed = {
            "file": [resume_share(logged, [big], big_size, out()) for _ in range(runs)],
            "directory": [resume_share(logged, [quarters], big_size, out()) for _ in range(runs)],
            "stdin": [resume_share(logged, ["-"], big_size, out(), big) for _ in range(runs)],
        }
    big_runs = interleaved(runs, {
        "file": timed([big]), "directory": timed([quarters]), "stdin": timed(["-"], stdin=big),
    })  # fmt: skip
    rate = {name: [big_size / t / 1e6 for t in ts] for name, ts in big_runs.items()}
    return rate, resumed


def show_wormhole(ferry: list[float], wormhole: list[float]) -> None:
    show("magic-wormhole, the same tree", wormhole, "s", "", digits=2)
    ratio = statistics.median(wormhole) / statistics.median(ferry)
    pairs = [theirs / ours for ours, theirs in zip(ferry, wormhole, strict=True)]
    print(f"{'magic-wormhole / ferry':<34} {ratio:>8.2f}  ×      target ≥ 2 ×  "
          f"{'met' if ratio >= 2 else 'NOT met'}  (of the medians; "
          f"per interleaved pair {min(pairs):.2f}–{max(pairs):.2f})")  # fmt: skip


def show_big(rate: dict[str, list[float]], resumed: dict[str, list[float]], big_size: int) -> None:
    file_rate = statistics.median(rate["file"])
    show(f"{big_size // MIB} MiB file", rate["file"], "MB/s", "")
    show("directory of 4 quarters", rate["directory"], "MB/s", "")
    show("stdin (cat FILE | send -)", rate["stdin"], "MB/s", "")
    for name, shares in resumed.items():
        show(f"resume {name}: 2nd / all bytes", shares, "%", "target ≤ 55 %")
    for name, target in (("directory", 90), ("stdin", 80)):
        ratio = 100 * statistics.median(rate[name]) / file_rate
        print(f"{name + ' / file':<34} {ratio:>8.0f}  %      target ≥ {target} %  "
              f"{'met' if ratio >= target else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
