"""Sweep the DATA record size: 1 GiB end to end for each size, runs interleaved.

    .venv/bin/python -m bench.records [--sizes 65536,131072,262144,1048576] [--runs 5]

Prints the median MB/s (min-max) per record size. The sender takes the size from
FERRY_RECORD_SIZE; ClientConfig.record_size is the default this sweep chose.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench import e2e
from ferry_testing import procs

GIB = 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="65536,131072,262144,1048576")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="ferry-records-") as tmp:
        workdir = Path(tmp)
        source = e2e.make_file(workdir / "records.bin", args.mib * 1024 * 1024)
        with procs.relay(workdir, "-q") as relay:
            for _ in range(args.runs):
                for size in sizes:  # interleaved: a busy spell hits every size alike
                    os.environ["FERRY_RECORD_SIZE"] = str(size)
                    result = e2e.transfer(relay, source, workdir)
                    rates[size].append(result.size / result.seconds / 1e6)
    print(f"{'record':>9}  {'MB/s median':>11}  {'min-max':>13}  runs")
    for size, values in rates.items():
        low, high = min(values), max(values)
        median = statistics.median(values)
        print(f"{size // 1024:>7} K  {median:>11.0f}  {low:>6.0f}-{high:<6.0f}  {len(values)}")


if __name__ == "__main__":
    main()
