"""A copied checkout runs its own code; .venv is rebuilt when what it was built from changes
(content, not modification times)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ferry import __version__
from tests.setup.checkout import copy_checkout, offline_env, refusing_port, run, runtime_packages

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A checkout whose first run has made .venv (offline, on packages already installed).

    Made once per module: the tests change their own copy of it (set_up)."""
    where = tmp_path_factory.mktemp("first-run")
    checkout = copy_checkout(where / "a")
    with refusing_port() as port:
        env = offline_env(port, PYTHONPATH=str(runtime_packages(where / "site")))
        first = run([checkout / "send", "--version"], env)
    assert first.returncode == 0, first.stderr
    return checkout, env


@pytest.fixture
def set_up(first_run: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The test's own copy of first_run's checkout, .venv included, already run once there."""
    made, env = first_run
    checkout = tmp_path / "a"
    shutil.copytree(made, checkout, symlinks=True)
    settled = run([checkout / "send", "--version"], env)
    assert settled.returncode == 0, settled.stderr
    return checkout, env


def test_a_copied_checkout_runs_its_own_code(
    set_up: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    original, env = set_up
    copy = tmp_path / "b"
    shutil.copytree(original, copy, symlinks=True)
    init = copy / "src" / "ferry" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "(.*)"', r'__version__ = "\1+copy"', init.read_text()))
    which = "import ferry, importlib.metadata as m; print(ferry.__file__, m.version('ferry'))"

    copied = run([copy / "send", "--version"], env)
    script = run([copy / ".venv" / "bin" / "ferry", "--version"], env)
    imported = run([copy / ".venv" / "bin" / "python", "-c", which], env)
    untouched = run([original / "send", "--version"], env)

    assert copied.stdout == f"send {__version__}+copy\n", copied.stderr
    assert script.stdout == f"ferry {__version__}+copy\n", script.stderr
    assert imported.stdout.split() == [str(init), f"{__version__}+copy"], imported.stderr
    assert untouched.stdout == f"send {__version__}\n", untouched.stderr


def test_the_shims_check_content_not_modification_times(
    set_up: tuple[Path, dict[str, str]],
) -> None:
    checkout, env = set_up
    false = shutil.which("false")
    assert false
    no_setup = {**env, "FERRY_PYTHON": false}  # a shim that wants set-up fails with this

    os.utime(checkout / "pyproject.toml")  # newer than the stamp, same content
    assert run([checkout / "send", "--version"], no_setup).returncode == 0

    lock = checkout / "requirements" / "runtime.txt"
    before = lock.stat()
    lock.write_text(lock.read_text() + "# changed\n")
    os.utime(lock, ns=(before.st_atime_ns, before.st_mtime_ns))  # changed, with an old mtime
    assert run([checkout / "send", "--version"], no_setup).returncode != 0

    redone = run([checkout / "send", "--version"], env)
    assert redone.returncode == 0, redone.stderr
    assert run([checkout / "send", "--version"], no_setup).returncode == 0


def test_the_venvs_ferry_script_follows_symlinks_without_gnu_readlink(
    set_up: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """macOS's readlink has no -f: the script finds its Python with plain readlink."""
    checkout, env = set_up
    tools = tmp_path / "bsd-tools"
    tools.mkdir()
    readlink = shutil.which("readlink")
    assert readlink
    (tools / "readlink").write_text(
        "#!/bin/sh\n"
        'case "$1" in -f|-e|-m) echo "readlink: illegal option -- ${1#-}" >&2; exit 1;; esac\n'
        f'exec {readlink} "$@"\n'
    )
    (tools / "readlink").chmod(0o755)
    link = tmp_path / "bin" / "ferry"  # ~/bin/ferry -> the checkout's, say
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(checkout / ".venv" / "bin" / "ferry", link.parent))
    bsd = {**env, "PATH": f"{tools}{os.pathsep}{env['PATH']}"}
    result = run([link, "--version"], bsd)
    assert (result.returncode, result.stdout) == (0, f"ferry {__version__}\n"), result.stderr
