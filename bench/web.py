"""Browser legs, measured with a real browser: headless Chromium against ./send and ./receive.

    python -m bench.web [--size MIB] [--runs N] [--relay-root DIR] [--stall SECONDS]
    python -m bench.web --decoder [--relay-root DIR]

Starts ./relay on 127.0.0.1 (or DIR/relay: another checkout's relay and the
web app it serves, for old-versus-new runs with the same harness) and
Chromium (/usr/bin/chromium) through Playwright, as tests/e2e/test_e2e_browser.py
does. Per run, one file of --size MiB, three directions in turn:

    cli -> cli        ./send -> ./receive, the zero-copy reference
    cli -> browser    ./send -> the page opened at http://RELAY/#CODE, Save
    browser -> cli    the page's file input -> ./receive (SHA-256 compared)

The page saves through showSaveFilePicker, a streaming path (the service
worker, which the page prefers, is removed so that it does); automation
cannot answer the native picker, so an init script stands in a writable
that counts the bytes and stamps the first and last (no disk, no copy kept:
the figure is the transfer's, not the disk's; drive.js still waits on every
write as it does on a real file). Printed per direction, as ranges over the
runs (min-max, median):

    MB/s          10^6 bytes per second over the whole transfer: from
                  spawning ./send (cli -> cli, cli -> browser) or handing
                  the file to the page (browser -> cli) until both ends
                  finished (exit 0, or the page's status turning "done",
                  stamped by the page itself)
    data MB/s     cli -> browser: first to last byte handed to the sink
    relay CPU     CPU seconds the relay spent on the run
    browser CPU   CPU seconds of all Chromium's processes over the run (the
                  page, the network service, the browser; robust to a busy
                  machine where the wall-clock rates are not)
    link to first byte   cli -> browser: from page.goto(link) to the first
                  byte saved, the Save click included (automation clicks
                  as soon as the button is enabled)

Then the stall: a browser receiver whose page stops reading for --stall
seconds (its main thread is kept busy, so Chromium stops taking the
WebSocket's bytes off the socket, as with a page that hangs). The relay's
memory for that transfer is sampled with ss meanwhile, counted as
tests/faults/test_web_legs.py does: its TCP sockets (r+w+f+bl), the
bridge's socketpair (r+t) and the user-space buffers (two pump pipes and
bridge.BRIDGE_HOLD's read and frame buffers). The transfer then completes.

--decoder prints only the relay's cost of unframing and unmasking what a
browser sends (FrameDecoder, in this process), for this checkout and
--relay-root's, interleaved: the one browser-leg figure a busy machine
does not blur much.

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sockmem import process_unix_sockets, server_sockets

from bench import e2e, probe
from ferry.relay import bridge
from ferry_testing import procs
from ferry_testing.chromium import ARGS, CHROMIUM

MIB = 1 << 20
PUMP_BUFFER = 64 * 1024
"""RelayConfig.pump_buffer's default: one pipe per direction of the CLI leg."""
BUDGET = 4 * MIB

# The page's streaming save path with a counting writable in place of the picker.
COUNTING_SINK = """
delete Navigator.prototype.serviceWorker;
delete window.showDirectoryPicker;
window.__bench = { bytes: 0, first: null, last: null };
const stamp = () => performance.timeOrigin + performance.now();
window.showSaveFilePicker = async () => ({
  createWritable: async () => ({
    write: async (data) => {
      const b = window.__bench;
      if (b.first === null) b.first = stamp();
      b.bytes += data.byteLength;
      b.last = stamp();
    },
    close: async () => { window.__bench.closed = stamp(); },
    abort: async () => {},
  }),
});
document.addEventListener('DOMContentLoaded', () => {
  const status = document.querySelector('[data-testid=status]');
  new MutationObserver(() => {
    const b = window.__bench;
    if (b.done == null && /done$/.test(status.textContent)) b.done = stamp();
  }).observe(status, { childList: true, characterData: true, subtree: true });
});
"""


@dataclass
class Samples:
    rate: list[float] = field(default_factory=list)
    data_rate: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    browser_cpu: list[float] = field(default_factory=list)
    first_byte: list[float] = field(default_factory=list)


def _span(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    low, high, mid = min(values), max(values), statistics.median(values)
    if len(values) == 1:
        return format(mid, fmt)
    return f"{format(low, fmt)}-{format(high, fmt)} (median {format(mid, fmt)})"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, argv[0], CPU seconds with its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                exe = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        cpu = sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
        table[int(name)] = (int(fields[1]), exe, cpu)
    return table


def browser_cpu() -> float:
    """CPU seconds of the Chromium processes under this one (exited ones included:
    the browser process reaped them, so they are in its cutime and cstime)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            _, exe, cpu = table[child]
            total += cpu if "chromium" in exe else 0.0
            todo.append(child)
    return total


@contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=list(ARGS), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def _page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    context.add_init_script(COUNTING_SINK)
    page = context.new_page()
    page.set_default_timeout(600_000)
    try:
        yield page
    finally:
        context.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _spawn_send(relay: procs.Relay, source: Path, err: Any) -> tuple[procs.Popen, str]:
    argv: list[str | Path] = [procs.ROOT / "send", relay.address, source]
    send = procs.spawn(argv, stdout=subprocess.PIPE, stderr=err)
    return send, procs.read_line(send, e2e.CODE_TIMEOUT)


def _wait_done(page: Any, timeout: float) -> None:
    """Until the page's status ends in "done". Playwright's poll can see it seconds
    late on a busy machine, so times come from the page's own stamp (window.__bench.done)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('[data-testid=status]').textContent;"
        " if (/^failed/.test(s)) throw new Error(s); return /done$/.test(s); }",
        timeout=timeout * 1000,
        polling=50,
    )


def _timeout(size: int) -> float:
    return max(120.0, size / e2e.MIN_RATE)


def cli_to_cli(relay: procs.Relay, source: Path, work: Path) -> float:
    outdir = Path(tempfile.mkdtemp(prefix="recv-", dir=work))
    with open(work / "clients.log", "ab") as err:
        started = time.perf_counter()
        send, code = _spawn_send(relay, source, err)
        with procs.running(send):
            receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir], stderr=err)
            with procs.running(receive):
                codes = procs.wait_all([receive, send], _timeout(source.stat().st_size))
                finished = time.perf_counter()
    if codes != [0, 0]:
        raise e2e.TransferFailed(f"cli -> cli exit codes {codes}; see {work / 'clients.log'}")
    e2e._check_received(source, outdir / source.name, work / "clients.log")
    (outdir / source.name).unlink()
    outdir.rmdir()
    return finished - started


@dataclass(frozen=True)
class BrowserReceipt:
    seconds: float
    data_seconds: float
    first_byte: float
    """Seconds from page.goto(link) to the first byte handed to the sink."""


def cli_to_browser(
    relay: procs.Relay,
    browser: Any,
    source: Path,
    work: Path,
    during: Callable[[Any], None] | None = None,
) -> BrowserReceipt:
    """One file from ./send to a page; during(page), if given, runs once bytes flow."""
    size = source.stat().st_size
    with _page(browser) as page, open(work / "clients.log", "ab") as err:
        started = time.time()
        send, code = _spawn_send(relay, source, err)
        with procs.running(send):
            opened_wall = time.time()
            page.goto(f"http://{relay.address}/#{code}")
            save = page.get_by_role("button", name="Save")
            save.wait_for(state="visible")
            page.wait_for_function(
                "() => { const b = [...document.querySelectorAll('button')]"
                ".find((e) => e.textContent.trim() === 'Save'); return b && !b.disabled; }"
            )
            save.click()
            if during is not None:
                page.wait_for_function("() => window.__bench.bytes > 0", polling=10)
                during(page)
            codes = procs.wait_all([send], _timeout(size))
            send_exited = time.time()
            _wait_done(page, _timeout(size))
        got = page.evaluate("() => window.__bench")
    if codes != [0] or got["bytes"] != size:
        raise e2e.TransferFailed(f"cli -> browser: send {codes}, {got['bytes']} of {size} bytes")
    return BrowserReceipt(
        seconds=max(send_exited, got["done"] / 1000) - started,
        data_seconds=(got["last"] - got["first"]) / 1000,
        first_byte=got["first"] / 1000 - opened_wall,
    )


def browser_to_cli(relay: procs.Relay, browser: Any, source: Path, work: Path) -> float:
    outdir = Path(tempfile.mkdtemp(prefix="recv-", dir=work))
    size = source.stat().st_size
    with _page(browser) as page, open(work / "clients.log", "ab") as err:
        page.goto(f"http://{relay.address}/")
        started = time.time()
        page.get_by_test_id("file-input").set_input_files(str(source))
        page.wait_for_function(
            "() => /^\\d+-/.test(document.querySelector('[data-testid=code]')?.textContent ?? '')",
            polling=10,
        )
        code = page.get_by_test_id("code").inner_text()
        receive = procs.spawn([procs.ROOT / "receive", relay.address, code, outdir], stderr=err)
        with procs.running(receive):
            codes = procs.wait_all([receive], _timeout(size))
        receive_exited = time.time()
        _wait_done(page, 60)
        finished = max(receive_exited, float(page.evaluate("() => window.__bench.done")) / 1000)
    if codes != [0]:
        raise e2e.TransferFailed(f"browser -> cli: receive exit {codes}; see {work}/clients.log")
    if _sha256(outdir / source.name) != _sha256(source):
        raise e2e.TransferFailed("browser -> cli: the copy differs")
    (outdir / source.name).unlink()
    outdir.rmdir()
    return finished - started


@dataclass
class StallPeak:
    tcp: int = 0
    pair: int = 0

    @property
    def user_space(self) -> int:
        return 2 * PUMP_BUFFER + bridge.USER_HOLD

    @property
    def total(self) -> int:
        return self.tcp + self.pair + self.user_space


def stalled_browser(
    relay: procs.Relay, browser: Any, source: Path, work: Path, seconds: float
) -> tuple[StallPeak, BrowserReceipt]:
    """A browser receiver whose page stops reading for `seconds`: the relay's peak memory."""
    peak = StallPeak()

    def stall(page: Any) -> None:
        # The main thread busy: no WebSocket message is taken, so Chromium stops
        # reading the socket once its own small window is full.
        page.evaluate(
            "(ms) => { setTimeout(() => {"
            " const end = Date.now() + ms; while (Date.now() < end); }, 0); }",
            seconds * 1000,
        )
        until = time.monotonic() + seconds - 0.5
        while time.monotonic() < until:
            tcp = sum(s.held for s in server_sockets(relay.port))
            pair = sum(s.held_unix for s in process_unix_sockets(relay.pid))
            if tcp + pair > peak.tcp + peak.pair:
                peak.tcp, peak.pair = tcp, pair
            time.sleep(0.1)

    receipt = cli_to_browser(relay, browser, source, work, during=stall)
    return peak, receipt


def _websocket_module(root: Path) -> Any:
    """ferry.protocol.websocket as found in checkout `root` (its own copy of the module)."""
    path = root / "src" / "ferry" / "protocol" / "websocket.py"
    name = f"_bench_websocket_{len(sys.modules)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def decoder_rates(roots: list[Path], rounds: int = 15) -> dict[Path, list[float]]:
    """MiB/s of each checkout's FrameDecoder on 1 MiB of masked 64 KiB frames (what
    the relay does with every byte a browser sends), the checkouts interleaved."""
    modules = {root: _websocket_module(root) for root in roots}
    payload = os.urandom(64 * 1024)
    rates: dict[Path, list[float]] = {root: [] for root in roots}
    for _ in range(rounds):
        for root, ws in modules.items():
            frame = ws.encode_frame(ws.Opcode.BINARY, payload, mask=b"\x12\x34\x56\x78")
            best = float("inf")
            for _ in range(3):
                decoder = ws.FrameDecoder()
                started = time.perf_counter()
                for _ in range(16):
                    decoder.receive_data(frame)
                    while decoder.next_event() is not None:
                        pass
                best = min(best, time.perf_counter() - started)
            rates[root].append(1 / best)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs per direction, interleaved")
    parser.add_argument(
        "--stall", type=float, default=8.0, help="seconds the page reads nothing (0: no stall)"
    )
    parser.add_argument("--stall-size", type=int, default=256, help="file size for the stall, MiB")
    parser.add_argument("--relay-root", type=Path, help="run DIR/relay (and its web app) instead")
    parser.add_argument(
        "--decoder",
        action="store_true",
        help="only the relay's WebSocket decoding rate (this checkout and --relay-root's)",
    )
    args = parser.parse_args(argv)
    size = args.size * MIB
    root = args.relay_root.resolve() if args.relay_root else procs.ROOT
    if args.decoder:
        for checkout, rates in decoder_rates(sorted({procs.ROOT, root})).items():
            print(f"FrameDecoder, 64 KiB masked frames, {checkout}: {_span(rates, '.0f')} MiB/s")
        return 0
    samples = {name: Samples() for name in ("cli -> cli", "cli -> browser", "browser -> cli")}
    with tempfile.TemporaryDirectory(prefix="ferry-bench-web-") as tmp, _browser() as browser:
        work = Path(tmp)
        source = e2e.make_file(work / "payload.bin", size)
        relay = procs.start_relay(work, command=(root / "relay",), cwd=root)
        try:
            for run in range(args.runs):
                for name, row in samples.items():
                    _say(f"run {run + 1}/{args.runs}: {name}")
                    before, browser_before = probe.cpu_seconds(relay.pid), browser_cpu()
                    if name == "cli -> cli":
                        seconds = cli_to_cli(relay, source, work)
                    elif name == "browser -> cli":
                        seconds = browser_to_cli(relay, browser, source, work)
                    else:
                        receipt = cli_to_browser(relay, browser, source, work)
                        seconds = receipt.seconds
                        row.data_rate.append(size / receipt.data_seconds / 1e6)
                        row.first_byte.append(receipt.first_byte * 1000)
                    row.cpu.append(probe.cpu_seconds(relay.pid) - before)
                    if name != "cli -> cli":
                        row.browser_cpu.append(browser_cpu() - browser_before)
                    row.rate.append(size / seconds / 1e6)
            peak = None
            if args.stall > 0:
                stall_source = e2e.make_file(work / "stall.bin", args.stall_size * MIB)
                _say(f"stall: {args.stall_size} MiB, the page reads nothing for {args.stall:.0f} s")
                peak, _ = stalled_browser(relay, browser, stall_source, work, args.stall)
        finally:
            relay.stop()
    where = "this checkout" if args.relay_root is None else str(root)
    print(f"{args.size} MiB, {args.runs} runs interleaved, loopback, relay from {where}")
    print(" | ".join(("direction", "MB/s", "data MB/s", "relay CPU s", "browser CPU s")))
    for name, row in samples.items():
        spans = (
            (row.rate, ".1f"),
            (row.data_rate, ".1f"),
            (row.cpu, ".2f"),
            (row.browser_cpu, ".2f"),
        )
        print(" | ".join([name, *(_span(values, fmt) for values, fmt in spans)]))
    first_byte = _span(samples["cli -> browser"].first_byte, ".0f")
    print(f"link to first byte saved (cli -> browser): {first_byte} ms")
    if peak is None:
        return 0
    if peak.tcp == 0:
        print("stalled browser: the transfer ended before the stall; raise --stall-size")
        return 1
    print(
        f"stalled browser ({args.stall:.0f} s): relay held at most {peak.total // 1024} KiB of the "
        f"{BUDGET // 1024} KiB budget ({peak.tcp // 1024} KiB TCP, {peak.pair // 1024} KiB "
        f"socketpair, {peak.user_space // 1024} KiB pipes and bridge buffers)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
