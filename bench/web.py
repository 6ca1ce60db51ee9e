"""Throughput with a browser leg: real ./send and ./receive, one of them over a WebSocket.

    python -m bench.web [--size MIB] [--runs N]

Starts ./relay on 127.0.0.1, and ferry_testing.wsclient's shim (--whole-frames),
which carries a client's TCP bytes as masked WebSocket frames to the relay's
/ws, as a browser does. Three directions, each the same file, compared by
SHA-256 (bench.e2e checks the copy):

    cli -> cli        both legs TCP (the zero-copy pipe), the baseline
    cli -> browser    the receiver's leg through the bridge
    browser -> cli    the sender's leg through the bridge

Prints MB/s (10^6 bytes per second, from spawning ./send until both exited)
and the relay's CPU seconds. The shim is one more Python process and hop
(it masks what it sends and reads the relay's frames), so the browser rows
are a lower bound for the relay's bridge; a browser does that work itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import e2e, probe
from ferry_testing import procs

MIB = 1 << 20


def _start_shim(relay: procs.Relay) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(procs.ROOT), str(procs.ROOT / "src")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry_testing.wsclient", str(relay.port), "--whole-frames"],
        cwd=procs.ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line, _ = procs.read_first_line(proc.stdout.fileno(), 20, proc.pid)
    return proc, f"127.0.0.1:{int(line)}"


def _run(relay: procs.Relay, sender_at: str, receiver_at: str, source: Path, work: Path) -> float:
    """Seconds for one transfer, the sender and receiver reaching the relay where told."""
    outdir = Path(tempfile.mkdtemp(prefix="recv-", dir=work))
    errors = work / "client-stderr.log"
    timeout = max(60.0, source.stat().st_size / e2e.MIN_RATE)

    with open(errors, "wb") as err:
        started = time.perf_counter()
        send = procs.spawn(
            [procs.ROOT / "send", sender_at, source], stdout=subprocess.PIPE, stderr=err
        )
        with procs.running(send):
            code = procs.read_line(send, e2e.CODE_TIMEOUT)
            receive = procs.spawn([procs.ROOT / "receive", receiver_at, code, outdir], stderr=err)
            with procs.running(receive):
                codes = procs.wait_all([receive, send], timeout)
                finished = time.perf_counter()
    if codes != [0, 0]:
        raise e2e.TransferFailed(f"receive/send exit codes {codes}; see {errors}")
    e2e._check_received(source, outdir / source.name, errors)
    for path in outdir.iterdir():
        path.unlink()
    outdir.rmdir()
    return finished - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--runs", type=int, default=1, help="runs per direction (best kept)")
    args = parser.parse_args(argv)
    size = args.size * MIB
    with tempfile.TemporaryDirectory(prefix="ferry-bench-web-") as tmp:
        work = Path(tmp)
        source = e2e.make_file(work / "payload.bin", size)
        relay = procs.start_relay(work)
        shim, shim_at = _start_shim(relay)
        try:
            rows = [
                ("cli -> cli", relay.address, relay.address),
                ("cli -> browser", relay.address, shim_at),
                ("browser -> cli", shim_at, relay.address),
            ]
            print(f"{args.size} MiB, best of {args.runs}, loopback")
            for name, sender_at, receiver_at in rows:
                best = float("inf")
                cpu = 0.0
                for _ in range(args.runs):
                    before = probe.cpu_seconds(relay.pid)
                    seconds = _run(relay, sender_at, receiver_at, source, work)
                    if seconds < best:
                        best, cpu = seconds, probe.cpu_seconds(relay.pid) - before
                rate = size / best / 1e6
                print(f"  {name:15s} {rate:7.1f} MB/s  ({best:.2f} s, relay CPU {cpu:.2f} s)")
        finally:
            procs.kill(shim)
            relay.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
