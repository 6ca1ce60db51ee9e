"""requirements/runtime.txt installs everywhere a client runs: for each supported platform
and CPython 3.11, 3.13 and 3.14, every lock line whose marker holds there has a wheel whose
sha256 is in the lock.

pip evaluates markers for the machine it runs on, not for --platform, so each target gets
the lock's own lines (hashes and all) whose markers hold for it; then
`pip download --only-binary :all: --platform … --python-version … --implementation cp
--require-hashes --no-deps` fetches them, from the package index (PIP_INDEX_URL, else
PyPI), through pip's cache. Without the index it is skipped, unless CI is set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests.setup.checkout import INDEX, ROOT, require_index

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # downloads every platform's wheels
# The oldest supported CPython and the two newest. 3.12 is left out to keep this short
# (about 1.5 s of CPU per combination): cryptography's wheels are abi3 (cp311 and up), so
# only cffi's per-version cp312 wheels go unchecked.
PYTHONS = ["3.11", "3.13", "3.14"]


@dataclass(frozen=True)
class Target:
    name: str
    platforms: tuple[str, ...]  # pip expands macOS tags to older releases, not manylinux
    sys_platform: str
    machine: str

    def environment(self, python: str) -> dict[str, str]:
        windows = self.sys_platform == "win32"
        system = {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}[self.sys_platform]
        return {
            "os_name": "nt" if windows else "posix", "sys_platform": self.sys_platform,
            "platform_system": system, "platform_machine": self.machine,
            "platform_python_implementation": "CPython", "implementation_name": "cpython",
            "python_version": python, "python_full_version": f"{python}.0",
        }  # fmt: skip


def glibc(arch: str, newest: int = 28) -> tuple[str, ...]:
    """The manylinux tags a glibc 2.`newest` machine accepts (back to manylinux2014, 2.17)."""
    return (
        *(f"manylinux_2_{minor}_{arch}" for minor in range(newest, 16, -1)),
        f"manylinux2014_{arch}",
    )


TARGETS = [
    Target("Linux x86_64 (glibc 2.28+)", glibc("x86_64"), "linux", "x86_64"),
    Target("Linux aarch64 (glibc 2.28+)", glibc("aarch64"), "linux", "aarch64"),
    Target("macOS 11+ arm64", ("macosx_11_0_arm64",), "darwin", "arm64"),
    Target("macOS 11+ x86_64", ("macosx_11_0_x86_64",), "darwin", "x86_64"),
    Target("Windows x64", ("win_amd64",), "win32", "AMD64"),
    Target("Windows arm64", ("win_arm64",), "win32", "ARM64"),
]


def lock_entries(lock: Path) -> list[tuple[str, str, str]]:
    """(name, marker, the entry's full text with its hashes) of each pinned package."""
    text = re.sub(r"(?m)^\s*#.*\n", "", lock.read_text())
    entries = []
    for entry in re.split(r"\n(?=\S)", text.strip()):
        found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==[^\s;\\]+\s*(?:;([^\\]*))?", entry)
        assert found, f"{lock.name}: not a pin: {entry[:80]!r}"
        entries.append((found.group(1), (found.group(2) or "").strip(), entry))
    return entries


def download(target: Target, python: str, scratch: Path) -> tuple[int, str, list[str], float]:
    """pip download of the target's lock lines; (exit code, pip's output, wheels, seconds)."""
    # Without their markers: pip would evaluate them for this machine and skip, say, the
    # Windows-only lines without a word.
    entries = [
        re.sub(r"\s*;[^\\]*", " ", entry, count=1)
        for _, marker, entry in lock_entries(ROOT / "requirements" / "runtime.txt")
        if not marker or Marker(marker).evaluate(target.environment(python))
    ]
    where = scratch / f"{target.platforms[0]}-{python}"
    where.mkdir()
    (where / "requirements.txt").write_text("\n".join(entries) + "\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no local mirrors or find-links: the index's files
    platforms = [arg for platform in target.platforms for arg in ("--platform", platform)]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", *platforms,
         "--python-version", python, "--implementation", "cp", "--require-hashes",
         "--no-deps", "--disable-pip-version-check", "--quiet", "--index-url", INDEX,
         "-r", str(where / "requirements.txt"), "-d", str(where / "wheels")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    wheels = sorted(path.name for path in (where / "wheels").glob("*.whl"))
    return done.returncode, done.stdout + done.stderr, wheels, time.monotonic() - started


def test_the_runtime_lock_has_a_wheel_with_hashes_for_every_platform_and_python(
    tmp_path: Path,
) -> None:
    require_index()
    combinations = [(target, python) for target in TARGETS for python in PYTHONS]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda pair: download(pair[0], pair[1], tmp_path), combinations))
    failures = []
    for (target, python), (code, output, wheels, _) in zip(combinations, results, strict=True):
        wanted = {
            name
            for name, marker, _ in lock_entries(ROOT / "requirements" / "runtime.txt")
            if not marker or Marker(marker).evaluate(target.environment(python))
        }
        got = {re.sub(r"[-_.]+", "-", wheel.split("-")[0]).lower() for wheel in wheels}
        if code != 0 or got != wanted:
            failures.append(f"{target.name}, CPython {python}: {output.strip()[-400:]}")
    print(f"{len(combinations)} platform/Python downloads in {time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)
    windows = dict(zip(combinations, results, strict=True))[(TARGETS[4], "3.13")][2]
    assert any(wheel.startswith("colorama-") for wheel in windows), "tqdm needs it on Windows"
