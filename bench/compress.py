"""Adaptive compression: old ferry vs new ferry vs a plain relay, on data that compresses
and data that does not, at 50 ms and on loopback; and the codec measurement behind it.

    .venv/bin/python -m bench.compress                   # 50 ms (needs root) and loopback
    .venv/bin/python -m bench.compress --where loopback  # no delay line, no root
    .venv/bin/python -m bench.compress --big             # also 1 GiB random on loopback
    .venv/bin/python -m bench.compress --codecs          # zlib vs zstd per 128 KiB record

Theory of operation
-------------------
Corpora, made once in a temporary directory:

  corpus  a tar of this Python's standard library (Lib/, without
          site-packages and __pycache__): text that compresses about 3:1;
  random  os.urandom bytes (--size MiB);
  zip     the same Lib/ files in a .zip, deflated: already compressed;
  image   the largest .jpg/.png Debian ships under /usr/share, if any.

Per place (`--where`: 50 = bench/delayline.py's line with a 50 ms round
trip on each leg; loopback = 127.0.0.1, no namespaces), per corpus, per run,
three transfers are interleaved so a busy spell hits all three:

  plain  bench/plainrelay.py: a dumb relay, no encryption, kernel autotuning;
  old    ferry at --old (default c3c274b, today's ferry): its src/ unpacked
         with `git archive` and run as `python -m ferry` (relay and clients)
         with this tree's .venv, which has every package it needs;
  new    this tree's ./relay, ./send, ./receive;
  raw    the same with ./send --no-compress: what compression itself changes
         (new/raw), apart from everything else that changed since --old.

Time is from spawning the sender until both clients exited (MB = 10^6
bytes); every received file's SHA-256 is checked. The table gives the
median MB/s (min-max over --runs) and new/old, new/plain. The load average
is printed at the start and the end: on a shared machine, compare the
columns of one run, not runs of different days.

--codecs times compressing and inflating the corpora in 128 KiB records
(the sender's record size) with zlib 1 and 6 (standard library) and zstd 1
and 3 (the `zstandard` package): the table that chose zstd 1 (ferry/codec.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import delayline, wan
from bench.delayline import CLIENT_NS, RELAY_IP, RELAY_NS, in_ns
from bench.report import MIB, load_average, unpack_ref
from ferry_testing import procs

TOOLS = ("plain", "old", "new", "raw")
OLD_DEFAULT = "c3c274b"
RECORD = 128 * 1024
Argv = list[str | Path]


def stdlib() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def _library_files() -> list[Path]:
    root = stdlib()
    files = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or "__pycache__" in parts or not path.is_file():
            continue
        if path.is_symlink():
            continue
        files.append(path)
    return files


def make_corpora(workdir: Path, random_mib: int) -> dict[str, Path]:
    root = stdlib()
    files = _library_files()
    corpora: dict[str, Path] = {}
    tar_path = workdir / "lib.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    corpora["corpus"] = tar_path
    random_path = workdir / "random.bin"
    with open(random_path, "wb") as out:
        for _ in range(random_mib):
            out.write(os.urandom(MIB))
    corpora["random"] = random_path
    zip_path = workdir / "lib.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in files:
            archive.write(path, arcname=str(path.relative_to(root)))
    corpora["zip"] = zip_path
    images = [
        p for p in Path("/usr/share").rglob("*")
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file() and not p.is_symlink()
    ]  # fmt: skip
    if images:
        largest = max(images, key=lambda p: p.stat().st_size)
        corpora["image"] = workdir / f"image{largest.suffix.lower()}"
        shutil.copyfile(largest, corpora["image"])
    return corpora


def unpack_old(ref: str, into: Path) -> Path:
    return unpack_ref(ref, into, "src")


class Place:
    """Where the programs run: in the delay line's namespaces, or on loopback."""

    def __init__(self, rtt_ms: float | None) -> None:
        self.rtt_ms = rtt_ms
        self.host = RELAY_IP if rtt_ms else "127.0.0.1"

    def __str__(self) -> str:
        return f"{self.rtt_ms:g} ms" if self.rtt_ms else "loopback"

    def client(self, argv: Argv) -> Argv:
        return list(in_ns(CLIENT_NS, argv)) if self.rtt_ms else argv

    def server(self, argv: Argv) -> Argv:
        return list(in_ns(RELAY_NS, argv)) if self.rtt_ms else argv


def _pair(
    place: Place,
    sender: Argv,
    receiver: Callable[[str], Argv],
    timeout: float,
    err: Path,
    env: dict[str, str] | None = None,
) -> float:
    with open(err, "ab") as log:
        started = time.perf_counter()
        send = procs.spawn(place.client(sender), stdout=subprocess.PIPE, stderr=log, env=env)
        with procs.running(send):
            line = procs.read_line(send, wan.CODE_TIMEOUT)
            receive = procs.spawn(place.client(receiver(line)), stderr=log, env=env)
            with procs.running(receive):
                codes = procs.wait_all([receive, send], timeout)
                finished = time.perf_counter()
    if codes != [0, 0]:
        tail = " | ".join(err.read_text(errors="replace").strip().splitlines()[-3:])
        raise wan.TransferFailed(f"receive/send exit codes {codes}: {tail}")
    return finished - started


def ferry_once(ctx: wan.Context, place: Place, tool: str, old: Path, source: Path) -> wan.Sample:
    size = source.stat().st_size
    outdir = Path(tempfile.mkdtemp(prefix=f"compress-{tool}-", dir=ctx.workdir))
    if tool == "old":
        python: Argv = [sys.executable, "-m", "ferry"]
        env = procs.clean_env({"PYTHONPATH": str(old / "src")})
        relay_cmd = place.server([*python, "relay"])
        send_cmd, receive_cmd = [*python, "send"], [*python, "receive"]
    else:
        env = procs.clean_env()
        relay_cmd = place.server([procs.ROOT / "relay"])
        send_cmd, receive_cmd = [procs.ROOT / "send"], [procs.ROOT / "receive"]
    flags = ["--no-compress"] if tool == "raw" else []
    listen = f"{'0.0.0.0' if place.rtt_ms else '127.0.0.1'}:0"
    try:
        with procs.relay(ctx.workdir, command=relay_cmd, listen=listen, env=env) as relay:
            address = f"{place.host}:{relay.port}"
            seconds = _pair(
                place,
                [*send_cmd, address, source, *flags],
                lambda code: [*receive_cmd, address, code, outdir],
                ctx.timeout(size),
                outdir.with_suffix(".log"),
                env,
            )
        received = outdir / source.name
        if not received.is_file() or wan._sha256(received) != ctx.digest(source):
            raise wan.TransferFailed(f"{source.name}: not received whole")
        return wan.Sample(seconds, size)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def plain_once(ctx: wan.Context, place: Place, source: Path) -> wan.Sample:
    size = source.stat().st_size
    outdir = Path(tempfile.mkdtemp(prefix="compress-plain-", dir=ctx.workdir))
    target = outdir / source.name
    port = procs.free_port() if not place.rtt_ms else next(ctx.ports)
    bind = f"{'0.0.0.0' if place.rtt_ms else '127.0.0.1'}:{port}"
    try:
        with open(outdir.with_suffix(".log"), "wb") as log:
            relay = procs.spawn(place.server([*wan.PLAIN, "relay", bind]), stderr=log)
        with procs.running(relay):
            if place.rtt_ms:
                delayline.wait_listening(RELAY_NS, port, procs.START_TIMEOUT, relay)
            else:
                procs.wait_listening(relay, port, procs.START_TIMEOUT)
            address = f"{place.host}:{port}"
            seconds = _pair(
                place,
                [*wan.PLAIN, "send", address, source],
                lambda _ready: [*wan.PLAIN, "receive", address, target],
                ctx.timeout(size),
                outdir.with_suffix(".log"),
            )
        if not target.is_file() or wan._sha256(target) != ctx.digest(source):
            raise wan.TransferFailed(f"{source.name}: not received whole")
        return wan.Sample(seconds, size)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


Cells = dict[tuple[str, str, str], list[wan.Sample]]


def measure(
    ctx: wan.Context, cells: Cells, place: Place, corpora: dict[str, Path], old: Path, runs: int
) -> None:
    for name, source in corpora.items():
        for index in range(runs):
            for tool in TOOLS:
                label = f"{place}, {name}, run {index + 1}/{runs}, {tool}"
                try:
                    if tool == "plain":
                        sample = plain_once(ctx, place, source)
                    else:
                        sample = ferry_once(ctx, place, tool, old, source)
                except (wan.TransferFailed, RuntimeError, TimeoutError, EOFError, OSError) as exc:
                    wan.log(f"{label}: FAILED {exc}")
                    continue
                cells.setdefault((str(place), name, tool), []).append(sample)
                wan.log(f"{label}: {sample.seconds:.2f} s, {sample.mbps:.1f} MB/s")


def _median(samples: list[wan.Sample] | None) -> float | None:
    return statistics.median(s.mbps for s in samples) if samples else None


def _spread(samples: list[wan.Sample] | None) -> str:
    if not samples:
        return "fail"
    rates = [s.mbps for s in samples]
    return f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}×"


def table(cells: Cells, rows: list[tuple[str, str, int]], old_ref: str) -> list[str]:
    lines = [
        f"| where | data | MiB | plain MB/s | old ({old_ref}) MB/s | new MB/s | "
        "new --no-compress MB/s | new/old | new/plain | new/raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for place, name, size in rows:
        plain, old, new, raw = (cells.get((place, name, tool)) for tool in TOOLS)
        lines.append(
            f"| {place} | {name} | {size / MIB:.1f} | {_spread(plain)} | {_spread(old)} | "
            f"{_spread(new)} | {_spread(raw)} | {_ratio(_median(new), _median(old))} | "
            f"{_ratio(_median(new), _median(plain))} | {_ratio(_median(new), _median(raw))} |"
        )
    return lines


def codecs_table(corpora: dict[str, Path], records: int = 256) -> list[str]:
    """Ratio and single-core speeds of each codec on `records` records of each corpus."""
    import zstandard

    def slices(path: Path) -> list[bytes]:
        data = path.read_bytes()
        step = max(RECORD, len(data) // records // RECORD * RECORD)
        return [data[i : i + RECORD] for i in range(0, len(data) - RECORD + 1, step)][:records]

    z1, z3 = zstandard.ZstdCompressor(level=1), zstandard.ZstdCompressor(level=3)
    inflate = zstandard.ZstdDecompressor()
    codecs: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
        "zlib 1": (lambda b: zlib.compress(b, 1), zlib.decompress),
        "zlib 6": (lambda b: zlib.compress(b, 6), zlib.decompress),
        "zstd 1": (z1.compress, inflate.decompress),
        "zstd 3": (z3.compress, inflate.decompress),
    }
    lines = [
        "| data | codec | ratio | compress MB/s | inflate MB/s |",
        "|---|---|---:|---:|---:|",
    ]
    for name, path in corpora.items():
        if name == "image":
            continue
        chunks = slices(path)
        total = sum(map(len, chunks))
        for codec, (pack, unpack) in codecs.items():
            started = time.process_time()
            packed = [pack(c) for c in chunks]
            packing = time.process_time() - started
            started = time.process_time()
            for p in packed:
                unpack(p)
            unpacking = time.process_time() - started
            lines.append(
                f"| {name} | {codec} | {total / sum(map(len, packed)):.2f} | "
                f"{total / packing / 1e6:,.0f} | {total / unpacking / 1e6:,.0f} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.compress", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--where", default="50,loopback", help="comma-separated: a round trip in ms, or loopback"
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds per corpus (default 3)")
    parser.add_argument("--size", type=int, default=64, help="MiB of random data (default 64)")
    parser.add_argument("--big", action="store_true", help="also 1 GiB random on loopback")
    parser.add_argument("--old", default=OLD_DEFAULT, help=f"git ref (default {OLD_DEFAULT})")
    parser.add_argument("--codecs", action="store_true", help="only the codec table")
    parser.add_argument("--data", default="", help="only these corpora (comma-separated)")
    parser.add_argument("--min-rate", type=float, default=0.5, help="MB/s that counts as hung")
    args = parser.parse_args(argv)
    places = [Place(None if w == "loopback" else float(w)) for w in args.where.split(",")]
    if any(p.rtt_ms for p in places) and not args.codecs:
        delayline.require_root()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    load_start = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferry-compress-") as temp:
        workdir = Path(temp)
        corpora = make_corpora(workdir, args.size)
        if args.data:
            corpora = {n: p for n, p in corpora.items() if n in args.data.split(",")}
        sizes = {name: path.stat().st_size for name, path in corpora.items()}
        if args.codecs:
            lines = codecs_table(corpora)
        else:
            old = unpack_old(args.old, workdir / "old")
            ctx = wan.Context(workdir, args.min_rate)
            cells: Cells = {}
            rows: list[tuple[str, str, int]] = []
            for place in places:
                if place.rtt_ms:
                    with delayline.up(place.rtt_ms):
                        measure(ctx, cells, place, corpora, old, args.runs)
                else:
                    measure(ctx, cells, place, corpora, old, args.runs)
                rows += [(str(place), name, sizes[name]) for name in corpora]
            if args.big:
                big = workdir / "random-1GiB.bin"
                with open(big, "wb") as out:
                    for _ in range(1024):
                        out.write(os.urandom(MIB))
                loopback = Place(None)
                measure(ctx, cells, loopback, {"random 1 GiB": big}, old, args.runs)
                rows.append((str(loopback), "random 1 GiB", big.stat().st_size))
            lines = table(cells, rows, args.old)
    command = ".venv/bin/python -m bench.compress " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command}")
    print(f"load average: start {load_start}, end {load_average()} ({os.cpu_count()} CPUs); "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    print("sizes: " + ", ".join(f"{n} {s / MIB:.1f} MiB" for n, s in sizes.items()))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
