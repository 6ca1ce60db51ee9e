"""Helpers shared by the test suites (tests/) and the benchmarks (bench/); not part of ferry.

It lives at the repository root, beside both, so that bench/ can use it
without importing from tests/ (and neither ships in the wheel). Both run
from the repository root: pytest puts the root on sys.path (tests/ is a
package), and `python -m bench.run` runs from it.
"""
