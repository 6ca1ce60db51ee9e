"""The same files through magic-wormhole, for comparison with ferry.

    .venv/bin/python -m bench.run --only compare       # 1 GiB and 64 MiB, ferry and wormhole
    .venv/bin/python -m bench.run --only compare --compare-sizes 64 --compare-runs 1
    .venv/bin/python -m bench.run --compare            # the same, after the ferry suite

A library for run.py's compare section (and wan.py): it has no command line
of its own, so it never imports run.py.

magic-wormhole, its mailbox server and its transit relay are installed from
PyPI into a separate venv, bench/.venv-compare (created on first use; it is
not part of ferry and should stay out of git). Both servers listen on
random loopback ports; both clients run with --no-listen, so no direct
connection is offered and every byte crosses the transit relay, as with
ferry's relay. Timing is the same as ferry's: from spawning the sender until
both clients exited, the receiver started as soon as the sender showed its
code. ferry and magic-wormhole runs alternate, so a busy spell on the machine
hits both.

transfer() also takes a directory (magic-wormhole 0.24 sends it as a zip
built as it goes, uncompressed; the receiver spools the whole zip, then
unpacks it); bench/anything.py uses it, with its own check of the received
tree, for the many-small-files comparison.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import probe
from bench.report import GIB, MB, Figure, size_label
from ferry_testing import procs

VENV = Path(__file__).resolve().parent / ".venv-compare"
PACKAGES = ("magic-wormhole", "magic-wormhole-mailbox-server", "magic-wormhole-transit-relay")
INSTALL_TIMEOUT = 900.0
CODE_TIMEOUT = 60.0
MIN_RATE = 2e6
_CODE_LINE = re.compile(r"Wormhole code is: (\S+)")


class Unavailable(Exception):
    """magic-wormhole could not be installed or started here."""


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def ensure_venv() -> Path:
    """bench/.venv-compare/bin with the three packages, created on first use."""
    bin_dir = VENV / "bin"
    if all((bin_dir / tool).exists() for tool in ("wormhole", "twist")):
        return bin_dir
    log(f"installing {', '.join(PACKAGES)} into {VENV} (once)")
    _run([sys.executable, "-m", "venv", str(VENV)])
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PACKAGES])
    return bin_dir


def _run(argv: list[str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{argv[0]}: {exc}") from exc
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise Unavailable(f"{' '.join(argv[:4])}... failed: {tail}")


@dataclass
class Servers:
    bin_dir: Path
    mailbox: int
    transit: int
    transit_proc: procs.Popen

    def client(self, *argv: str | Path) -> list[str | Path]:
        return [
            self.bin_dir / "wormhole",
            "--relay-url", f"ws://{procs.HOST}:{self.mailbox}/v1",
            "--transit-helper", f"tcp:{procs.HOST}:{self.transit}",
            *argv,
        ]  # fmt: skip


@contextlib.contextmanager
def servers(bin_dir: Path, workdir: Path) -> Iterator[Servers]:
    """The mailbox server and the transit relay, on free loopback ports, until the block ends."""
    mailbox, transit = procs.free_port(), procs.free_port()
    twist = bin_dir / "twist"
    db = workdir / "mailbox.sqlite"
    with open(workdir / "wormhole-servers.log", "wb") as out:
        mailbox_argv: list[str | Path] = [
            twist, "wormhole-mailbox", f"--port=tcp:{mailbox}:interface={procs.HOST}",
            f"--channel-db={db}",
        ]  # fmt: skip
        mailbox_proc = procs.spawn(mailbox_argv, stderr=out, stdout=out)
        with procs.running(mailbox_proc):
            transit_argv: list[str | Path] = [
                twist, "transitrelay", f"--port=tcp:{transit}:interface={procs.HOST}",
            ]  # fmt: skip
            transit_proc = procs.spawn(transit_argv, stderr=out, stdout=out)
            with procs.running(transit_proc):
                for port, proc in ((mailbox, mailbox_proc), (transit, transit_proc)):
                    procs.wait_listening(proc, port, procs.START_TIMEOUT)
                yield Servers(bin_dir, mailbox, transit, transit_proc)


@dataclass(frozen=True)
class Transfer:
    seconds: float
    code_ms: float
    relay_cpu: float
    size: int


Check = Callable[[Path, Path], None]
"""check(source, received): raise RuntimeError unless received is a whole copy of source."""


def same_size(source: Path, received: Path) -> None:
    size = source.stat().st_size
    if not received.is_file() or received.stat().st_size != size:
        raise RuntimeError(f"magic-wormhole did not deliver {size} bytes of {source.name}")


def transfer(
    servers: Servers,
    source: Path,
    workdir: Path,
    check: Check = same_size,
    size: int = 0,
    outdir: Path | None = None,
) -> Transfer:
    """One file (or directory) through magic-wormhole; raises RuntimeError (or OSError) on failure.

    The receiver writes into a fresh directory, so what arrives is there under
    source's name; check() looks at it outside the timing. size: the bytes
    moved, for a directory (default: source's size). outdir: an empty
    directory to receive into, left to the caller (default: a temporary one
    in workdir, deleted on return)."""
    if outdir is not None:
        return _transfer(servers, source, outdir, check, size or source.stat().st_size)
    outdir = Path(tempfile.mkdtemp(prefix="wormhole-recv-", dir=workdir))
    try:
        return _transfer(servers, source, outdir, check, size or source.stat().st_size)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _transfer(servers: Servers, source: Path, outdir: Path, check: Check, size: int) -> Transfer:
    cpu_before = probe.cpu_seconds(servers.transit_proc.pid)
    started = time.perf_counter()
    timeout = max(120.0, size / MIN_RATE)
    code_ms, finished = _run_pair(servers, source, outdir, started, timeout)
    relay_cpu = probe.cpu_seconds(servers.transit_proc.pid) - cpu_before
    check(source, outdir / source.name)
    return Transfer(finished - started, code_ms, relay_cpu, size)


def _run_pair(
    servers: Servers, source: Path, outdir: Path, started: float, timeout: float
) -> tuple[float, float]:
    send_argv = servers.client("send", "--no-listen", "--hide-progress", "--no-qr", source)
    send = procs.spawn(send_argv, stderr=subprocess.PIPE)
    with procs.running(send):
        code = _code_from(send)
        code_ms = (time.perf_counter() - started) * 1000.0
        receive_argv = servers.client(
            "receive", "--no-listen", "--hide-progress", "--accept-file", "-o", outdir, code
        )
        receive = procs.spawn(receive_argv)
        with procs.running(receive):
            codes = procs.wait_all([receive, send], timeout)
            finished = time.perf_counter()
    if codes != [0, 0]:
        raise RuntimeError(f"wormhole receive/send exit codes {codes} (None = timed out)")
    return code_ms, finished


def _code_from(send: procs.Popen) -> str:
    """Read the sender's stderr until 'Wormhole code is: CODE' (a few lines in)."""
    deadline = time.monotonic() + CODE_TIMEOUT
    for _ in range(50):
        remaining = deadline - time.monotonic()
        line = procs.read_line(send, max(0.1, remaining), stream="stderr")
        if match := _CODE_LINE.search(line):
            return match.group(1)
    raise RuntimeError("magic-wormhole send showed no code")


# -- figures -----------------------------------------------------------------


FerryRun = Callable[[Path], float]
"""One ferry transfer of a file, returning its MB/s."""


@dataclass
class Comparison:
    """Per size: ferry and magic-wormhole MB/s (runs interleaved) and their ratio."""

    ferry: dict[int, Figure]
    wormhole: dict[int, Figure]
    ratios: dict[int, Figure]
    code: Figure
    cpu: Figure

    def figures(self) -> list[Figure]:
        per_size = [[self.ferry[s], self.wormhole[s], self.ratios[s]] for s in self.wormhole]
        return [figure for trio in per_size for figure in trio] + [self.code, self.cpu]


def new_comparison(sizes: list[int]) -> Comparison:
    def each(name: str, unit: str) -> dict[int, Figure]:
        return {size: Figure(name.format(size=size_label(size)), unit) for size in sizes}

    return Comparison(
        ferry=each("ferry {size} end to end (vs wormhole)", "MB/s"),
        wormhole=each("magic-wormhole {size} end to end", "MB/s"),
        ratios=each("ferry ÷ magic-wormhole, {size}", "×"),
        code=Figure("magic-wormhole time to code", "ms"),
        cpu=Figure("magic-wormhole transit relay CPU", "CPU-s/GiB"),
    )


def measure(
    comparison: Comparison, workdir: Path, files: dict[int, Path], runs: int, ferry: FerryRun
) -> None:
    """Per file, `runs` rounds of one ferry and one magic-wormhole transfer, interleaved."""
    try:
        bin_dir = ensure_venv()
        with servers(bin_dir, workdir) as running:
            for size, source in files.items():
                for index in range(runs):
                    _ferry_once(comparison.ferry[size], ferry, source)
                    _wormhole_once(comparison, running, source, workdir)
                    log(f"{size_label(size)} round {index + 1}/{runs} done")
                _ratio(comparison, size)
    except (Unavailable, RuntimeError, TimeoutError, OSError) as exc:
        log(f"magic-wormhole unavailable: {exc}")
        for figure in comparison.figures():
            figure.skipped = figure.skipped or f"magic-wormhole unavailable: {str(exc)[:80]}"


def _ferry_once(figure: Figure, ferry: FerryRun, source: Path) -> None:
    try:
        figure.add(ferry(source))
    except (RuntimeError, TimeoutError, EOFError, OSError) as exc:
        log(f"{figure.name} failed: {exc}")
        figure.failures.append(str(exc))


def _wormhole_once(comparison: Comparison, running: Servers, source: Path, workdir: Path) -> None:
    size = source.stat().st_size
    rate = comparison.wormhole[size]
    try:
        result = transfer(running, source, workdir)
    except (RuntimeError, TimeoutError, EOFError, OSError) as exc:
        log(f"{rate.name} failed: {exc}")
        rate.failures.append(str(exc))
        return
    rate.add(result.size / result.seconds / MB)
    comparison.code.add(result.code_ms)
    comparison.cpu.add(result.relay_cpu / (result.size / GIB))
    log(f"{rate.name}: {rate.samples[-1]:.0f} MB/s")


def _ratio(comparison: Comparison, size: int) -> None:
    ours, theirs = comparison.ferry[size].median, comparison.wormhole[size].median
    ratio = comparison.ratios[size]
    if ours is None or theirs is None:
        ratio.skipped = "no ferry or magic-wormhole figure"
        return
    ratio.add(ours / theirs)
    ratio.note(f"of the medians: ferry {ours:.0f} vs magic-wormhole {theirs:.0f} MB/s")
