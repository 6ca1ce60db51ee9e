"""ferry's benchmarks: run from the repository root as modules, e.g. `python -m bench.run`.

run.py is the loopback suite (`make bench`), wan.py the delay-line WAN one
(`make bench-wan`, as root); docs/PERFORMANCE.md has the method and figures.
Processes are started through the shared harness, ferry_testing.procs.
"""
