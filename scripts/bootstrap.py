"""Create the project's virtual environment (.venv) once, safely.

Run by the ./send and ./receive shims on first use and by `make setup`.
Standard library only. A file lock serialises parallel first runs; a stamp
file written last marks a finished install, so an interrupted run is simply
redone. All output goes to stderr: stdout belongs to the programs (send
prints its code there).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
CREATED = VENV / ".ferry-created"
STAMPS = {False: VENV / ".ferry-ready", True: VENV / ".ferry-dev-ready"}


def is_fresh(stamp: Path) -> bool:
    pyproject = ROOT / "pyproject.toml"
    return stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime


def ensure(dev: bool) -> None:
    with open(ROOT / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_fresh(STAMPS[dev]):
            return  # another process finished while we waited
        if not CREATED.exists():  # absent, or half-made by an interrupted run: start over
            print(
                "ferry: setting up the Python environment in .venv (first run only)",
                file=sys.stderr,
            )
            shutil.rmtree(VENV, ignore_errors=True)
            venv.EnvBuilder(with_pip=True).create(VENV)
            CREATED.touch()
        target = f"{ROOT}[dev]" if dev else str(ROOT)
        python = VENV / "bin" / "python"
        cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*cmd, "-e", target], check=True, stdout=sys.stderr)
        for wanted in {False, dev}:
            STAMPS[wanted].touch()


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run by whatever python3 the machine has
        sys.exit(f"ferry needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}")
    try:
        ensure(dev="--dev" in sys.argv[1:])
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"ferry: could not set up .venv: {exc}")


if __name__ == "__main__":
    os.umask(0o022)
    main()
