"""A first run without the package index ends quickly, in one line, with exit code 11;
with the packages already on the machine it runs on them instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ferry import __version__, errors
from tests.setup.checkout import (
    BASE_PYTHON,
    EXIT_SETUP,
    NO_INDEX,
    ROOT,
    SETTING_UP,
    copy_checkout,
    has_pip,
    offline_env,
    refusing_port,
    run,
    runtime_packages,
    silent_port,
    system_has_runtime_packages,
)

pytestmark = pytest.mark.timeout(120)

needs_no_system_packages = pytest.mark.skipif(
    system_has_runtime_packages(), reason="the system Python has the packages: no failure to see"
)


@needs_no_system_packages
def test_first_run_with_the_index_refusing_connections_prints_one_line_and_exits_11(
    tmp_path: Path,
) -> None:
    checkout = copy_checkout(tmp_path / "ferry")
    with refusing_port() as port:
        result = run([checkout / "send", "127.0.0.1:9", checkout / "pyproject.toml"],
                     offline_env(port))  # fmt: skip
    assert result.returncode == EXIT_SETUP, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [SETTING_UP, NO_INDEX]
    assert result.seconds < 15


@needs_no_system_packages
def test_first_run_with_an_index_that_never_answers_ends_within_the_bound(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "ferry")
    with silent_port() as port:
        result = run([checkout / "receive", "127.0.0.1:9", "7-guitar-orbit-velvet", tmp_path],
                     offline_env(port, FERRY_SETUP_TIMEOUT="3"), timeout=60)  # fmt: skip
    assert result.returncode == EXIT_SETUP, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [SETTING_UP, NO_INDEX]
    assert 3 <= result.seconds < 10


def test_first_run_without_an_index_uses_the_packages_already_installed(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "ferry")
    packages = runtime_packages(tmp_path / "site")
    with refusing_port() as port:
        env = offline_env(port, PYTHONPATH=str(packages))
        first = run([checkout / "send", "--version"], env)
        second = run([checkout / "send", "--version"], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"send {__version__}\n"
    assert first.stderr.splitlines()[0] == SETTING_UP
    assert re.fullmatch(
        r"ferry: the package index is unreachable; using the installed cryptography \S+, "
        r"spake2 \S+, tqdm \S+, segno \S+, zstandard \S+ "
        r"\(`make setup` installs the locked versions\)",
        first.stderr.splitlines()[1],
    ), first.stderr
    assert (second.returncode, second.stdout, second.stderr) == (0, first.stdout, "")


@pytest.mark.slow  # builds a venv and installs every package in it
@needs_no_system_packages
def test_a_venv_without_pip_gets_one_from_ensurepip_when_python3_has_no_pip(
    tmp_path: Path,
) -> None:
    checkout = copy_checkout(tmp_path / "ferry")
    no_pip = tmp_path / "python3-without-pip"  # -S: no site-packages, so no pip
    no_pip.write_text(f'#!/bin/sh\nexec "{BASE_PYTHON}" -S "$@"\n')
    no_pip.chmod(0o755)
    with refusing_port() as port:
        run([checkout / "send", "--version"], offline_env(port))  # leaves a pip-less .venv
        assert not has_pip(checkout / ".venv")
        result = run([checkout / "send", "--version"], offline_env(port, FERRY_PYTHON=str(no_pip)))
    # It got as far as asking the index, with a pip of its own.
    assert result.returncode == EXIT_SETUP, result.stderr
    assert result.stderr.splitlines() == [SETTING_UP, NO_INDEX]
    assert has_pip(checkout / ".venv")


def test_exit_code_11_is_ferrys_and_documented() -> None:
    used = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert EXIT_SETUP not in used
    bootstrap = (ROOT / "scripts" / "bootstrap.py").read_text()
    assert re.search(rf"^EXIT_SETUP = {EXIT_SETUP}\b", bootstrap, re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^\| {EXIT_SETUP} \| .*`\.venv`", readme, re.MULTILINE)


def test_the_index_message_names_the_runtime_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = [re.match(r"[A-Za-z0-9._-]+", spec).group() for spec in declared]  # type: ignore[union-attr]
    names = list(dict.fromkeys(found))  # one name per package, whatever its markers
    assert f"install {', '.join(names[:-1])} and {names[-1]};" in NO_INDEX
