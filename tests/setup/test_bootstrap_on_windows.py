"""scripts/bootstrap.py serves the POSIX shims: on Windows it imports (nothing POSIX-only at
import time) and says in one line what to use instead, exit 11."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.setup.checkout import EXIT_SETUP, ROOT

BOOTSTRAP = ROOT / "scripts" / "bootstrap.py"
POSIX_ONLY = ["fcntl", "termios", "resource", "pwd", "grp", "posix"]

IMPORT_WITHOUT_POSIX = f"""
import importlib.abc, importlib.util, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in {POSIX_ONLY!r}:
            raise ImportError(f"No module named {{name!r}} (as on Windows)")
for name in {POSIX_ONLY!r}:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Refuse())
spec = importlib.util.spec_from_file_location("bootstrap", {str(BOOTSTRAP)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("imported")
"""


def test_the_bootstrap_imports_without_posix_only_modules() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_POSIX], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "imported\n"), done.stderr


def test_on_windows_the_bootstrap_says_what_to_use_instead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("ferry_bootstrap_windows", BOOTSTRAP)
    assert spec is not None and spec.loader is not None
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    monkeypatch.setattr(bootstrap, "ON_WINDOWS", True)
    monkeypatch.setattr(bootstrap, "ensure", lambda **_: pytest.fail("set up .venv on Windows"))
    assert bootstrap.main([]) == EXIT_SETUP
    (line,) = capsys.readouterr().err.splitlines()
    assert "send.cmd" in line and "py -m pip install ." in line
