"""Serial time of each test tier, old and new side by side, in one run.

    python -m bench.suite --old main [--new HEAD] [--tiers relay,unit] [--rounds 1]

Both refs are unpacked with `git archive` into a temporary directory (a fresh
clone's files: no .hypothesis database, no caches), with this checkout's .venv
and web/node_modules linked in. Each tier (tests/<tier>) runs with pytest
-m "not slow" -n 0 -p no:randomly, old and new alternately, so both see the
same load; the table gives the wall seconds of each and the test counts.

In the unpacked copies, tests/setup/test_installed_metadata.py's check that the
.pth names *this* checkout's src fails (the .venv is linked from here): it is
deselected.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import unpack_ref
from ferry_testing.procs import ROOT

TIERS = ("unit", "inproc", "relay", "faults", "cluster", "setup", "e2e")
LINKED = (".venv", "web/node_modules")
DESELECT = (
    "tests/setup/test_installed_metadata.py::test_the_pth_is_relative_and_names_this_checkouts_src"
)
SUMMARY = re.compile(r"^=*\s*(.*\b(?:passed|failed|error)\b.*?)\s*=*$")


def unpack(ref: str, where: Path) -> Path:
    unpack_ref(ref, where)
    for name in LINKED:
        if (ROOT / name).exists():
            (where / name).symlink_to(ROOT / name)
    return where


def run_tier(root: Path, tier: str) -> tuple[float, str]:
    """(wall seconds, pytest's summary line) of one tier, serially."""
    argv = [
        str(root / ".venv" / "bin" / "python"), "-m", "pytest", f"tests/{tier}",
        "-m", "not slow", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider", "-q",
        "--deselect", DESELECT,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    wall = time.monotonic() - started
    summary = next(
        (m.group(1) for line in reversed(done.stdout.splitlines()) if (m := SUMMARY.match(line))),
        f"exit {done.returncode}",
    )
    return wall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="main", help="git ref of the old suite (default main)")
    parser.add_argument("--new", default="HEAD", help="git ref of the new suite (default HEAD)")
    parser.add_argument("--tiers", default=",".join(TIERS), help="comma-separated tests/ dirs")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each (the best is kept)")
    args = parser.parse_args()
    tiers = [t for t in args.tiers.split(",") if t]
    rows = [
        f"| tier | old ({args.old}) s | new ({args.new}) s | new/old | old tests | new tests |",
        "|---|---|---|---|---|---|",
    ]
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory(prefix="ferry-suite-") as tmp:
        roots = [unpack(args.old, Path(tmp) / "old"), unpack(args.new, Path(tmp) / "new")]
        for tier in tiers:
            best: list[tuple[float, str]] = [(float("inf"), ""), (float("inf"), "")]
            for _ in range(args.rounds):
                for side, root in enumerate(roots):
                    result = run_tier(root, tier)
                    best[side] = min(best[side], result)
                    print(f"{tier} {('old', 'new')[side]}: {result[0]:.1f} s, {result[1]}",
                          file=sys.stderr, flush=True)  # fmt: skip
            (old_s, old_n), (new_s, new_n) = best
            totals[0] += old_s
            totals[1] += new_s
            rows.append(
                f"| {tier} | {old_s:.1f} | {new_s:.1f} | {new_s / old_s:.2f} | {old_n} | {new_n} |"
            )
    rows.append(f"| total | {totals[0]:.1f} | {totals[1]:.1f} | {totals[1] / totals[0]:.2f} | | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
