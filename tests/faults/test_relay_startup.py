"""`./relay :PORT` listens before it imports the relay (cli/relay.py): a client that
connects during start-up waits in the backlog and is served like any other."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry_testing import procs
from ferry_testing.procs import HOST, ROOT

pytestmark = pytest.mark.timeout(60)

HEAVY = ("asyncio", "logging", "argparse", "dataclasses", "typing", "ferry.config")


def test_the_entry_point_listens_before_importing_anything_heavy() -> None:
    code = (
        "import json, socket, sys\n"
        "from ferry.cli.relay import listen_early\n"
        "early = listen_early(['127.0.0.1:0', '--quiet'])\n"
        "port = early.sockets[0].getsockname()[1]\n"
        "with socket.create_connection(('127.0.0.1', port), timeout=5):\n"
        "    pass\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    env = procs.clean_env({"PYTHONPATH": str(ROOT / "src")})
    # -S: no site module, whose .pth files may import anything before us.
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("argv", [["--quiet", ":0"], [":0", "--help"], ["nonsense:port"], []])
def test_the_entry_point_leaves_unclear_command_lines_to_the_parser(argv: list[str]) -> None:
    from ferry.cli.relay import listen_early

    assert listen_early(argv) is None


def test_a_client_connecting_during_start_up_gets_its_nameplate(tmp_path: Path) -> None:
    port = procs.free_port()  # the test must know the port before the relay says it
    ready = tmp_path / "ready"
    log = tmp_path / "relay.log"
    with open(log, "wb") as err:
        proc = procs.spawn([ROOT / "relay", f"{HOST}:{port}", "--ready-file", ready], stderr=err)
    with procs.running(proc):
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                sock = socket.create_connection((HOST, port), timeout=5)
                break
            except OSError:
                time.sleep(0.002)
        with sock:
            served_before_ready = not ready.exists()
            sock.sendall(b"FERRY 1 SEND\n")
            sock.settimeout(30)
            answer = sock.recv(128)
        assert answer.startswith(b"NAMEPLATE "), answer
        assert served_before_ready, "the relay was ready before it accepted: not a start-up test"
        assert ready.read_text() == f"{HOST}:{port}\n"
    assert "Traceback" not in log.read_text()


def test_the_shim_starts_python_without_the_site_module(tmp_path: Path) -> None:
    # site (site-packages, .pth files) is most of a bare interpreter's start-up,
    # and the relay needs the standard library only.
    with procs.relay(tmp_path) as relay:
        argv = Path(f"/proc/{relay.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:4] == [b"-S", b"-m", b"ferry.cli.relay"], argv


def test_without_site_the_cluster_extra_is_still_found() -> None:
    # --cluster imports redis from site-packages: load_site_packages() puts them back.
    code = (
        "import sys\n"
        "from ferry.cli.relay_serve import load_site_packages\n"
        "assert sys.flags.no_site\n"
        "load_site_packages()\n"
        "import redis.asyncio\n"
    )
    env = procs.clean_env({"PYTHONPATH": str(ROOT / "src")})
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr


def test_an_interpreter_given_in_ferry_python_runs_as_given(tmp_path: Path) -> None:
    # A wrapper or a site hook (the platform shims of the tests) keeps working.
    env = procs.clean_env({"FERRY_PYTHON": sys.executable})
    with procs.relay(tmp_path, env=env) as relay:
        argv = Path(f"/proc/{relay.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[0] == sys.executable.encode() and argv[1:3] == [b"-m", b"ferry.cli.relay"], argv
