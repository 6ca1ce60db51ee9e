"""Copies of the checkout in a temporary directory, and a package index that is not there.

The set-up tests run the real shims (./send) and scripts/bootstrap.py on a
copy, so they never touch the real .venv. Nothing here needs the network:
the "index" is a port on 127.0.0.1 that refuses connections or accepts and
never answers, and pip's configuration is ignored (PIP_CONFIG_FILE=/dev/null).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The interpreter .venv was made from: what `python3` is to the shims.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
CHECKOUT = [
    "send",
    "receive",
    "relay",
    "pyproject.toml",
    "Makefile",
    "scripts",
    "src",
    "requirements",
    "README.md",
    "LICENSE",
]
EXIT_SETUP = 11
NO_INDEX = (
    "ferry: first run needs the Python package index to install cryptography, spake2, tqdm, "
    "segno and zstandard; run `make setup` where it is reachable, or set PIP_INDEX_URL"
)
SETTING_UP = "ferry: setting up .venv from requirements/runtime.txt"


def copy_checkout(destination: Path) -> Path:
    """The files a user's clone has (no .venv, no caches)."""
    destination.mkdir(parents=True)
    for name in CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


def lock_pins(lock: Path) -> dict[str, str]:
    """{name: version} of the lock's lines for this machine (their marker holds here)."""
    from packaging.markers import Marker

    found = re.findall(
        r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)[ ]*(?:;([^\\]*))?", lock.read_text()
    )
    return {
        name: version
        for name, version, marker in found
        if not marker.strip() or Marker(marker).evaluate()
    }


def runtime_packages(destination: Path) -> Path:
    """A directory holding (links to) the runtime dependencies this test run has installed:
    stands for packages that are already on the machine."""
    destination.mkdir()
    for name in lock_pins(ROOT / "requirements" / "runtime.txt"):
        dist = importlib.metadata.distribution(name)
        tops = {Path(str(file)).parts[0] for file in dist.files or []}
        for top in tops - {".."}:
            link = destination / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))
    return destination


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def offline_env(port: int, **extra: str) -> dict[str, str]:
    """An environment whose only package index is 127.0.0.1:port."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": os.devnull,  # no mirrors or find-links from this machine's config
        "PIP_NO_CACHE_DIR": "1",
        "PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple",
        "FERRY_PYTHON": BASE_PYTHON,
    }
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run(argv: list[str | Path], env: dict[str, str], timeout: float = 60) -> Finished:
    """Run to completion; past the timeout the whole process group is killed (pip included)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(arg) for arg in argv], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n[killed after {timeout} s]"
    return Finished(proc.returncode, stdout, stderr, time.monotonic() - started)


def system_has_runtime_packages() -> bool:
    """Whether the base Python already has the runtime packages (then set-up never fails)."""
    probe = [BASE_PYTHON, "-c", "import cryptography, spake2, tqdm, segno, zstandard"]
    return (
        subprocess.run(probe, capture_output=True, env={"PATH": os.environ["PATH"]}).returncode == 0
    )


def has_pip(venv: Path) -> bool:
    result = subprocess.run([venv / "bin" / "python", "-c", "import pip"], capture_output=True)
    return result.returncode == 0


INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def require_index() -> None:
    """Skip the calling test when the package index is unreachable; with CI set, fail it."""
    import pytest

    try:
        with urllib.request.urlopen(f"{INDEX}/pip/", timeout=10) as response:
            response.read(1)
    except OSError as exc:
        unreachable = f"the package index {INDEX} is unreachable ({exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{unreachable}, and CI is set: this test must run in CI")
        pytest.skip(unreachable)
