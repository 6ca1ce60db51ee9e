"""Node.js for the tests of the browser core (web/): find it, install web/'s pinned packages.

Locally the tests that need node are skipped when it is missing; in CI
(CI=true) they must run, so a missing node fails them (.ci/run installs
Debian's nodejs and npm). web/node_modules is installed with `npm ci` from
web/package-lock.json (exact versions, integrity hashes) whenever what is
installed is not what the lock says.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

WEB: Final = Path(__file__).resolve().parent.parent / "web"
NPM_CI_TIMEOUT: Final = 300.0
MIN_NODE: Final = (20, 19)
"""@noble/curves and @noble/hashes 2.x declare node >= 20.19 (web/package-lock.json)."""


def _installed_matches_lock() -> bool:
    """True when web/node_modules holds the lock's packages (npm's hidden lockfile).

    The lock also names optional packages for other platforms (esbuild's binaries for
    macOS, Windows, ...), which npm leaves out here: those may be missing, but every
    package installed must be the locked version, and every required one installed.
    """
    hidden = WEB / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    lock: dict[str, Any] = json.loads((WEB / "package-lock.json").read_text()).get("packages", {})
    installed: dict[str, Any] = json.loads(hidden.read_text()).get("packages", {})
    for name, entry in lock.items():
        if not name:
            continue
        if name in installed:
            if installed[name].get("version") != entry.get("version"):
                return False
        elif not entry.get("optional", False):
            return False
    return all(name in lock for name in installed if name)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_node() -> str:
    """The node executable, with web/'s packages installed; skips (fails in CI) without node."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are required (apt-get install nodejs npm)")
    assert node is not None and npm is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    if (major, minor) < MIN_NODE:
        _missing(f"node {version.stdout.strip()} is older than {'.'.join(map(str, MIN_NODE))}")
    # `npm ci` first deletes web/node_modules: two test processes (pytest-xdist workers)
    # installing at once, or one installing while another runs node, break each other.
    # One installs under an exclusive lock; the others wait, then find it installed.
    with _install_lock():
        if not _installed_matches_lock():
            subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                cwd=WEB,
                check=True,
                timeout=NPM_CI_TIMEOUT,
                stdout=subprocess.DEVNULL,
            )
    return node


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """An exclusive lock on this checkout's web/node_modules, across processes."""
    key = hashlib.sha256(str(WEB).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"ferry-npm-ci-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
