"""Relay start-up: how soon `./relay HOST:PORT` accepts, and how soon it answers.

    .venv/bin/python -m bench.startup --runs 20                # this tree against main
    .venv/bin/python -m bench.startup --old REF --runs 20      # against another commit

Theory of operation
-------------------
The old relay is `git archive REF src relay` unpacked in a temporary
directory; the new one is this tree. Runs alternate old, new, old, new, so a
busy spell on a shared machine hits both. Each run picks a free port on
127.0.0.1, spawns `RELAY/relay 127.0.0.1:PORT` and, from the moment before
the spawn:

  listen   the first TCP connect that succeeds (tried every millisecond;
           a refused connect means the port is not listening yet);
  answer   on that connection, `FERRY 1 SEND` sent at once and the relay's
           `NAMEPLATE n` line received: the relay really serves.

The new relay is also started with FERRY_PYTHON=python3, which ./relay
runs as given, site included, as it ran every interpreter before. Without
FERRY_PYTHON it prefers the checkout's .venv interpreter (a PATH shim such
as pyenv's can cost more than the relay's own start) and skips site (-S).

The relay is then stopped (SIGTERM, then SIGKILL after 10 s). The bare
interpreter start-up (`python3 -c pass`, `python3 -S -c pass`) is measured in
the same rounds: it is the floor neither relay can go below. The table gives
the median and the range (min-max) over --runs, in seconds, and the load
average before and after.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.report import unpack_ref
from ferry_testing import procs

ROOT = Path(__file__).resolve().parents[1]
HELLO = b"FERRY 1 SEND\n"
DEADLINE = 60.0


def unpack(ref: str, into: Path) -> Path:
    """The relay of commit `ref` (its shim and src/), unpacked under `into`."""
    return unpack_ref(ref, into, "src", "relay")


def one_start(root: Path, env_extra: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds to listen, seconds to the first answer) of one fresh relay."""
    port = procs.free_port()
    env = procs.clean_env(env_extra)
    started = time.monotonic()
    proc = procs.spawn([root / "relay", f"{procs.HOST}:{port}"], env=env)
    try:
        while True:
            if proc.poll() is not None or time.monotonic() - started > DEADLINE:
                raise RuntimeError(f"{root}/relay exited or never listened")
            try:
                sock = socket.create_connection((procs.HOST, port), timeout=DEADLINE)
                break
            except OSError:
                time.sleep(0.001)
        listening = time.monotonic() - started
        with sock:
            sock.sendall(HELLO)
            answer = sock.recv(128)
        answered = time.monotonic() - started
        if not answer.startswith(b"NAMEPLATE "):
            raise RuntimeError(f"{root}/relay answered {answer!r}")
        return listening, answered
    finally:
        procs.signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            procs.kill(proc)


def bare_python(*flags: str) -> float:
    started = time.monotonic()
    subprocess.run(["python3", *flags, "-c", "pass"], check=True)
    return time.monotonic() - started


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--old", default="main", help="git ref of the old relay (default: main)")
    parser.add_argument("--runs", type=int, default=20, help="starts of each relay (default: 20)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ferry-startup-") as temp:
        old = unpack(args.old, Path(temp))
        results: dict[str, list[tuple[float, float]]] = {"old": [], "new": [], "path": []}
        bare: dict[str, list[float]] = {"python3 -c pass": [], "python3 -S -c pass": []}
        for _ in range(args.runs):
            results["old"].append(one_start(old))
            results["new"].append(one_start(ROOT))
            results["path"].append(one_start(ROOT, {"FERRY_PYTHON": "python3"}))
            bare["python3 -c pass"].append(bare_python())
            bare["python3 -S -c pass"].append(bare_python("-S"))
    load_after = os.getloadavg()
    print(f"relay start-up, {args.runs} runs each, alternating; seconds, median (min-max)")
    cpus = os.cpu_count()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} ({cpus} CPUs)")
    print(f"{'':24} {'listen':>22} {'first answer':>22}")
    rows = (
        ("old", f"old ({args.old})"),
        ("new", "new (this tree)"),
        ("path", "new, FERRY_PYTHON=python3"),
    )
    for name, label in rows:
        listen = [r[0] for r in results[name]]
        answer = [r[1] for r in results[name]]
        print(f"{label:24} {spread(listen):>22} {spread(answer):>22}")
    for label, values in bare.items():
        print(f"{label:24} {spread(values):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
