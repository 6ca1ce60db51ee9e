"""A receiving page paced by its disk: old and new web app side by side, in one run.

    python -m bench.webpace [--old REF] [--size MIB] [--fast-size MIB] [--disk-ms MS] [--runs N]

Theory of operation. Two relays on 127.0.0.1: ./relay of --old (default
main), unpacked with `git archive` (src/, so its web app too), and this
checkout's; both carry this checkout's ./send. Headless Chromium, as
bench/web.py drives it. Per run, old and new interleaved, each relay gets:

    fast sink    cli -> browser of --fast-size MiB through bench/web.py's
                 counting picker (no disk): MB/s over the whole transfer and
                 browser CPU seconds, to show what pacing costs the fast path
    slow disk    cli -> browser of --size MiB onto ferry_testing.chromium.slow_disk_script
                 (each write --disk-ms late: a disk slower than the network),
                 the page's live memory (V8 heap + ArrayBuffer backing stores,
                 after a full GC: ferry_testing.chromium.live_heap) sampled
                 as often as it can until the status says done: its peak,
                 and MB/s

Printed as ranges over the runs (min-max, median). Without pacing the slow
disk's peak is roughly the file minus what the disk took while the network
delivered the rest; paced (WebSocketStream, web/src/app/socket.js) it is
a few records. Progress on stderr, the table on stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import e2e
from bench.report import load_average, unpack_ref
from bench.web import _browser, _say, _span, _spawn_send, browser_cpu, cli_to_browser
from ferry_testing import procs
from ferry_testing.chromium import live_heap, slow_disk_script

MIB = 1 << 20
SIDES = ("old", "new")


@dataclass
class Row:
    fast_rate: list[float] = field(default_factory=list)
    fast_browser_cpu: list[float] = field(default_factory=list)
    slow_peak: list[float] = field(default_factory=list)
    slow_rate: list[float] = field(default_factory=list)


def slow_disk(
    relay: procs.Relay, browser: Any, source: Path, work: Path, disk_ms: int
) -> tuple[int, float]:
    """One file from ./send onto a page's slow disk: (peak live bytes, seconds)."""
    size = source.stat().st_size
    context = browser.new_context()
    context.add_init_script(slow_disk_script(disk_ms))
    try:
        page = context.new_page()
        page.set_default_timeout(600_000)
        session = context.new_cdp_session(page)
        with open(work / "clients.log", "ab") as err:
            started = time.monotonic()
            send, code = _spawn_send(relay, source, err)
            with procs.running(send):
                page.goto(f"http://{relay.address}/#{code}")
                page.get_by_role("button", name="Save").click()
                peak = 0
                status = page.get_by_test_id("status")
                while not re.search(r"done$|^failed", text := status.inner_text()):
                    peak = max(peak, live_heap(page, session))
                seconds = time.monotonic() - started
                codes = procs.wait_all([send], 120)
        disk = page.evaluate("() => window.__disk")
    finally:
        context.close()
    if codes != [0] or disk["bytes"] != size or not text.endswith("done"):
        raise e2e.TransferFailed(f"slow disk: send {codes}, {disk['bytes']} of {size}: {text}")
    return peak, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webpace", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--old", default="main", help="git ref of the old web app (default main)")
    parser.add_argument("--size", type=int, default=32, help="MiB onto the slow disk (default 32)")
    parser.add_argument("--fast-size", type=int, default=256, help="MiB to the fast sink")
    parser.add_argument("--disk-ms", type=int, default=25, help="the slow disk's delay per write")
    parser.add_argument("--runs", type=int, default=3, help="runs per side, interleaved")
    args = parser.parse_args(argv)
    size = args.size * MIB
    rows = {side: Row() for side in SIDES}
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="ferry-webpace-") as tmp, _browser() as browser:
        work = Path(tmp)
        old = unpack_ref(args.old, work / "old", "src", "relay")
        source = e2e.make_file(work / "payload.bin", size)
        fast_source = e2e.make_file(work / "fast.bin", args.fast_size * MIB)
        roots = {"old": old, "new": procs.ROOT}
        relays = {
            side: procs.start_relay(work, command=(root / "relay",), cwd=root)
            for side, root in roots.items()
        }
        try:
            for run in range(args.runs):
                for side in SIDES:
                    row, relay = rows[side], relays[side]
                    _say(f"run {run + 1}/{args.runs}, {side}: fast sink")
                    cpu = browser_cpu()
                    receipt = cli_to_browser(relay, browser, fast_source, work)
                    row.fast_browser_cpu.append(browser_cpu() - cpu)
                    row.fast_rate.append(args.fast_size * MIB / receipt.seconds / 1e6)
                    _say(f"run {run + 1}/{args.runs}, {side}: slow disk")
                    peak, seconds = slow_disk(relay, browser, source, work, args.disk_ms)
                    row.slow_peak.append(peak / MIB)
                    row.slow_rate.append(size / seconds / 1e6)
        finally:
            for relay in relays.values():
                relay.stop()
    command = "python -m bench.webpace " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: {command}")
    disk_rate = 128 * 1024 / args.disk_ms / 1e3
    print(
        f"{args.runs} runs interleaved, loopback; fast sink {args.fast_size} MiB; slow disk "
        f"{args.size} MiB, one write per {args.disk_ms} ms (about {disk_rate:.1f} MB/s with "
        "128 KiB records)"
    )
    print(f"load average: start {load_start}, end {load_average()} ({os.cpu_count()} CPUs)")
    print(f"| | old ({args.old}) | new |")
    print("|---|---|---|")
    cells = (
        ("fast sink: MB/s", "fast_rate", ".1f"),
        ("fast sink: browser CPU s", "fast_browser_cpu", ".2f"),
        ("slow disk: page peak MiB", "slow_peak", ".1f"),
        ("slow disk: MB/s", "slow_rate", ".1f"),
    )
    for label, name, fmt in cells:
        old_cell, new_cell = (_span(getattr(rows[side], name), fmt) for side in SIDES)
        print(f"| {label} | {old_cell} | {new_cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
