"""Small files across a WAN: how long a receiver waits, against a plain relay's whole transfer.

    sudo .venv/bin/python -m bench.small                        # 64 KiB, 1 MiB, 10 MiB at 50 ms
    sudo .venv/bin/python -m bench.small --rtt 50 --runs 3 --old c3c274b

Theory of operation
-------------------
delayline.py's line at --rtt (both legs: clients in the client namespace,
every relay in the relay namespace). Per size, per run, three transfers are
interleaved, so a busy spell hits all three:

  plain  bench/plainrelay.py: a dumb relay with kernel autotuning; its time
         runs from spawning its sender until both clients exited (the whole
         transfer, its start-up included);
  old    --old's ./relay and clients, unpacked with `git archive`;
  new    this tree's ./relay and clients.

For old and new the time is the receiver's: from spawning `receive` (the
sender is already waiting with its code, as a person would have it) until
both the receiver and the sender exited. The ferry clients run as
`PYTHON -m ferry.cli.main send|receive ...` with PYTHONPATH at their tree's
src/, old and new alike, with this tree's .venv interpreter (the one
sys.executable is): the ./send and ./receive shims only add the same few
milliseconds of bash to both. Both trees' sources are compiled to bytecode
first (compileall), as a first run leaves them on a user's machine, so
neither pays for compiling (PYTHONDONTWRITEBYTECODE would otherwise make
every start compile ferry's modules). Every received file is checked
(SHA-256). The files are random bytes (nothing to gain from compression).

The table gives, per size, the median seconds and the range over --runs,
and new/plain, old/plain and new/old of the medians. The load average is
printed at the start and the end: on a shared machine the figures are
loaded ones.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from bench import delayline
from bench.delayline import CLIENT_NS, RELAY_IP, RELAY_NS, in_ns
from bench.report import load_average, unpack_ref
from ferry_testing import procs

KIB = 1024
TOOLS = ("plain", "old", "new")
CODE_TIMEOUT = 60.0
TRANSFER_TIMEOUT = 120.0
PLAIN: list[str | Path] = [sys.executable, procs.ROOT / "bench" / "plainrelay.py"]
DEFAULT_SIZES = "64,1024,10240"


class TransferFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"[small] {message}", file=sys.stderr, flush=True)


@dataclass
class Cells:
    seconds: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    failures: dict[tuple[int, str], int] = field(default_factory=dict)


def unpack(ref: str, into: Path) -> Path:
    """The tree of commit `ref` (its relay shim and src/), unpacked under `into`."""
    return unpack_ref(ref, into, "src", "relay")


def compile_tree(root: Path) -> None:
    """Bytecode for root/src, as a first run would leave it."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(root / "src")],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def client(*argv: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "ferry.cli.main", *argv]


def client_env(root: Path) -> dict[str, str]:
    return procs.clean_env({"PYTHONPATH": str(root / "src")})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pair(
    sender: Sequence[str | Path],
    receiver: Callable[[str], Sequence[str | Path]],
    env: dict[str, str] | None,
    err: Path,
) -> tuple[float, float]:
    """Sender first, the receiver once the sender printed its line: (seconds from the
    sender's spawn, seconds from the receiver's spawn) until both exited."""
    with open(err, "ab") as errors:
        started = time.perf_counter()
        send = procs.spawn(in_ns(CLIENT_NS, sender), stdout=subprocess.PIPE, stderr=errors, env=env)
        with procs.running(send):
            line = procs.read_line(send, CODE_TIMEOUT)
            receiving = time.perf_counter()
            receive = procs.spawn(in_ns(CLIENT_NS, receiver(line)), stderr=errors, env=env)
            with procs.running(receive):
                codes = procs.wait_all([receive, send], TRANSFER_TIMEOUT)
                finished = time.perf_counter()
    if codes != [0, 0]:
        tail = " | ".join(err.read_text(errors="replace").strip().splitlines()[-3:])
        raise TransferFailed(f"receive/send exit codes {codes}: {tail}")
    return finished - started, finished - receiving


@contextlib.contextmanager
def _scratch(workdir: Path, prefix: str) -> Iterator[Path]:
    outdir = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    try:
        yield outdir
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def plain_once(workdir: Path, source: Path, port: int) -> float:
    with _scratch(workdir, "plain-") as outdir:
        target = outdir / source.name
        relay = procs.spawn(in_ns(RELAY_NS, [*PLAIN, "relay", f"{RELAY_IP}:{port}"]))
        with procs.running(relay):
            delayline.wait_listening(RELAY_NS, port, procs.START_TIMEOUT, relay)
            address = f"{RELAY_IP}:{port}"
            whole, _ = _pair(
                [*PLAIN, "send", address, source],
                lambda _ready: [*PLAIN, "receive", address, target],
                None,
                outdir.with_suffix(".log"),
            )
        if not target.is_file() or _sha256(target) != _sha256(source):
            raise TransferFailed("the plain relay's copy differs")
        return whole


def ferry_once(workdir: Path, root: Path, source: Path) -> float:
    with _scratch(workdir, "ferry-") as outdir:
        command = in_ns(RELAY_NS, [root / "relay"])
        with procs.relay(workdir, command=command, listen=f"{RELAY_IP}:0") as relay:
            address = f"{RELAY_IP}:{relay.port}"
            _, receiver = _pair(
                client("send", address, source),
                lambda code: client("receive", address, code, outdir),
                client_env(root),
                outdir.with_suffix(".log"),
            )
        received = outdir / source.name
        if not received.is_file() or _sha256(received) != _sha256(source):
            raise TransferFailed(f"{source.name}: not received whole")
        return receiver


def measure(
    workdir: Path, cells: Cells, old: Path, sources: list[Path], runs: int, rtt: float
) -> None:
    port = 20000
    with delayline.up(rtt):
        for index in range(runs):
            for source in sources:
                size = source.stat().st_size
                for tool in TOOLS:
                    label = f"{size // KIB} KiB, run {index + 1}/{runs}, {tool}"
                    key = (size, tool)
                    try:
                        if tool == "plain":
                            port += 1
                            seconds = plain_once(workdir, source, port)
                        else:
                            root = old if tool == "old" else procs.ROOT
                            seconds = ferry_once(workdir, root, source)
                    except (TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
                        log(f"{label}: FAILED {exc}")
                        cells.failures[key] = cells.failures.get(key, 0) + 1
                        continue
                    cells.seconds.setdefault(key, []).append(seconds)
                    log(f"{label}: {seconds:.3f} s")


def _spread(values: list[float] | None) -> str:
    if not values:
        return "fail"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _ratio(a: list[float] | None, b: list[float] | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{statistics.median(a) / statistics.median(b):.2f}×"


def table(cells: Cells, sizes: list[int], old_ref: str) -> list[str]:
    lines = [
        f"| size | plain s (whole) | old ({old_ref}) s (receiver) | new s (receiver) | "
        "new/plain | old/plain | new/old | failures |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        plain, old, new = (cells.seconds.get((size, tool)) for tool in TOOLS)
        failed = sum(cells.failures.get((size, tool), 0) for tool in TOOLS)
        lines.append(
            f"| {size // KIB} KiB | {_spread(plain)} | {_spread(old)} | {_spread(new)} | "
            f"{_ratio(new, plain)} | {_ratio(old, plain)} | {_ratio(new, old)} | {failed} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.small", description=__doc__.split("\n")[0])
    parser.add_argument("--rtt", type=float, default=50.0, help="round trip, ms (default 50)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="KiB, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--old", default="c3c274b", help="git ref of the old ferry")
    args = parser.parse_args(argv)
    delayline.require_root()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sizes = [int(part) * KIB for part in args.sizes.split(",") if part.strip()]
    load_start = load_average()
    started = time.monotonic()
    cells = Cells()
    with tempfile.TemporaryDirectory(prefix="ferry-small-") as temp:
        workdir = Path(temp)
        old = unpack(args.old, workdir / "old")
        compile_tree(old)
        compile_tree(procs.ROOT)
        sources = []
        for size in sizes:
            source = workdir / f"file-{size // KIB}KiB.bin"
            source.write_bytes(os.urandom(size))
            sources.append(source)
        try:
            measure(workdir, cells, old, sources, args.runs, args.rtt)
        except KeyboardInterrupt:
            log("interrupted: reporting what was measured")
    command = "sudo .venv/bin/python -m bench.small " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command}")
    print(f"RTT {args.rtt:g} ms on both legs, {args.runs} runs, median (min-max) seconds")
    print(f"load average: start {load_start}, end {load_average()} ({os.cpu_count()} CPUs); "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    print("\n".join(table(cells, sizes, args.old)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
