"""ferry as a package: the wheel and sdist build cleanly with what an index needs, and the
README's install quick start — `pipx install .`, then `ferry send` / `ferry receive` — moves
a file through a real ./relay, as does `python -m ferry` (what Windows users may type);
send.cmd and receive.cmd run the client the way the shims do."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from ferry import __version__
from ferry_testing import procs
from tests.setup.checkout import ROOT, copy_checkout, require_index

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # builds, installs with pipx
TRANSFER_TIMEOUT = 60.0


def test_the_wheel_and_sdist_build_cleanly_with_the_metadata_an_index_needs(
    tmp_path: Path,
) -> None:
    # Offline: hatchling comes from the dev lock, not from a build environment.
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp_path / "dist", ROOT],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert not re.search(r"(?i)warn|deprecat", output), output
    (wheel,) = (tmp_path / "dist").glob("ferry-*.whl")
    (sdist,) = (tmp_path / "dist").glob("ferry-*.tar.gz")
    assert wheel.name == f"ferry-{__version__}-py3-none-any.whl"

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"ferry-{__version__}.dist-info"
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {"ferry/wordlist.txt", "ferry/cli/main.py", "ferry/__main__.py"} <= names
    # The web app the relay serves, built and committed (make web).
    assert {"ferry/webapp/index.html", "ferry/webapp/app.js", "ferry/webapp/app.css"} <= names
    assert f"{info}/licenses/LICENSE" in names
    assert not any(name.startswith(("tests/", "bench/", "src/")) for name in names)
    assert re.search(r"(?m)^\[console_scripts\]\nferry = ferry\.cli\.main:main$", entry_points)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert str(metadata.get_payload()).startswith("# ferry")  # the README is the description
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {
        "Operating System :: MacOS",
        "Operating System :: Microsoft :: Windows",
        "Operating System :: POSIX :: Linux",
    } <= classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in range(11, 15)} <= (
        classifiers
    )
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("cryptography") and "darwin" in r for r in requires), requires

    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/ferry/wordlist.txt"} <= members
    assert {"requirements/runtime.txt", "send.cmd", "receive.cmd"} <= members


def quick_start_commands() -> list[list[str]]:
    """The commands of the README's install quick start, comments dropped."""
    text = (ROOT / "README.md").read_text()
    heading = "### Every platform: the `ferry` command\n"
    block = re.search(re.escape(heading) + r".*?\n\n((?:    [^\n]*\n)+)", text, re.S)
    assert block, "README.md has no install quick start"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_the_readme_install_quick_start_is_pipx_then_ferry_send_and_receive() -> None:
    commands = quick_start_commands()
    assert [command[:2] for command in commands] == [
        ["pipx", "install"], ["ferry", "send"], ["ferry", "receive"],
    ]  # fmt: skip


def transfer(send: list[str], receive: list[str], cwd: Path, env: dict[str, str]) -> Path:
    """Run send, pass its code to receive; both exit 0. The received file's path."""
    sender = procs.spawn(send, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with procs.running(sender):
        code = procs.read_line(sender, TRANSFER_TIMEOUT)
        assert re.fullmatch(r"\d+-[a-z]+-[a-z]+-[a-z]+", code), code
        received = subprocess.run(
            [code if arg == "CODE" else arg for arg in receive],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=TRANSFER_TIMEOUT,
        )  # fmt: skip
        assert received.returncode == 0, received.stderr
        assert sender.wait(TRANSFER_TIMEOUT) == 0
    return cwd / receive[-1]


def test_pipx_install_then_ferry_send_and_receive_move_a_file_through_the_relay(
    tmp_path: Path,
) -> None:
    require_index()  # pipx fetches the build backend and the dependencies
    checkout = copy_checkout(tmp_path / "clone")
    home = tmp_path / "home"
    env = procs.clean_env(
        {
            "PIPX_HOME": str(home / "pipx"),
            "PIPX_BIN_DIR": str(home / "bin"),
            "PIPX_MAN_DIR": str(home / "man"),
            "PATH": f"{home / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
            + os.environ.get("PATH", ""),
        }
    )
    work = tmp_path / "work"
    work.mkdir()
    payload = os.urandom(300_000)
    (work / "corgis.mp4").write_bytes(payload)
    install, send, receive = quick_start_commands()

    started = time.monotonic()
    installed = subprocess.run(
        install, cwd=checkout, env=env, capture_output=True, text=True, timeout=240
    )
    install_seconds = time.monotonic() - started
    assert installed.returncode == 0, installed.stdout + installed.stderr
    ferry = home / "bin" / "ferry"
    assert ferry.is_file()
    python = home / "pipx" / "venvs" / "ferry" / "bin" / "python"

    version = subprocess.run([ferry, "--version"], capture_output=True, text=True, env=env)
    assert version.stdout == f"ferry {__version__}\n"
    helped = subprocess.run([ferry, "send", "--help"], capture_output=True, text=True, env=env)
    assert helped.stdout.startswith("usage: ferry send ")
    assert "ferry receive RELAY CODE DIR" in " ".join(helped.stdout.split())

    with procs.relay(tmp_path) as relay:

        def localize(argv: list[str], out: str) -> list[str]:
            argv = [relay.address if arg == "localhost:9021" else arg for arg in argv]
            argv = ["CODE" if re.fullmatch(r"\d+-[a-z]+-[a-z]+-[a-z]+", a) else a for a in argv]
            return [*argv[:-1], out] if argv[1] == "receive" else argv

        got = transfer(localize(send, ""), localize(receive, "out"), work, env)
        assert (got / "corgis.mp4").read_bytes() == payload
        # What a Windows user may type instead: py -m ferry send / receive.
        module = [str(python), "-m", "ferry"]
        got = transfer(
            [*module, *localize(send, "")[1:]], [*module, *localize(receive, "by-module")[1:]],
            work, env,
        )  # fmt: skip
        assert (got / "corgis.mp4").read_bytes() == payload
    print(f"pipx install . took {install_seconds:.1f} s")


def test_the_windows_cmd_files_run_the_client_from_a_venv_made_from_the_lock() -> None:
    """They cannot run here: they exist, say the right program, and the shared body sets up
    .venv from the lock (hashes, wheels only) and runs the module the shims run."""
    for name in ("send", "receive"):
        text = (ROOT / f"{name}.cmd").read_bytes().decode()
        assert "\r\n" in text and "\n" not in text.replace("\r\n", "")  # CRLF throughout
        assert f'call "%~dp0scripts\\windows-client.cmd" {name} %*' in text
        assert "exit /b %ERRORLEVEL%" in text
    body = (ROOT / "scripts" / "windows-client.cmd").read_text()
    assert 'py -3 -m venv "%VENV%"' in body
    assert "sys.version_info < (3, 11)" in body
    install = next(line for line in body.splitlines() if " -m pip install " in line)
    for flag in ("--require-hashes", "--only-binary :all:", '-r "%LOCK%"'):
        assert flag in install
    assert 'set "LOCK=%ROOT%\\requirements\\runtime.txt"' in body
    assert 'set "PYTHONPATH=%ROOT%\\src"' in body
    assert '"%VENV%\\Scripts\\python.exe" -m ferry.cli.main %*' in body
    assert (ROOT / "src" / "ferry" / "cli" / "main.py").is_file()
    assert "exit /b 11" in body  # EXIT_SETUP, as scripts/bootstrap.py
