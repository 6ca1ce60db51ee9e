"""Real transfers with the clients (and on macOS the relay) made to look like Windows or
macOS (ferry_testing/platform_shim.py): every transfer kind takes that system's code path.

Each test runs under both shims. The shim's log (FERRY_TESTING_SHIM_LOG) shows the
system's own mechanism ran: msvcrt.locking and signal.signal on Windows, F_FULLFSYNC,
renameatx_np and TCP_KEEPALIVE on macOS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry import units
from ferry.errors import EXIT_INTERRUPTED, EXIT_PEER_GONE, EXIT_USAGE
from ferry_testing import platform_shim
from ferry_testing.files import RESUME_GLOB, leftovers
from ferry_testing.procs import Relay, clean_env
from ferry_testing.waiting import wait_until

from .harness import (
    Registry,
    Result,
    Sender,
    _unique,
    assert_exact_one_line_error,
    invocation,
    run_program,
    start_relay,
)

# Bytes a text-mode descriptor would change: CRLF, a lone CR, ^Z (EOF on Windows), NUL.
AWKWARD_BYTES = b"line\r\nlone\rctrl-z\x1aafter\x00" * 50

RELAY_WITH_SITE = {"FERRY_PYTHON": "python3"}
"""The shim is loaded by site (sitecustomize): ./relay starts the interpreter it picks
itself with -S, one given in FERRY_PYTHON as it is."""

pytestmark = [pytest.mark.timeout(90), pytest.mark.parametrize("system", platform_shim.SYSTEMS)]


class Shimmed:
    """The relay and the client environment for one system's shim."""

    def __init__(self, procs: Registry, logdir: Path, system: str, relay: Relay) -> None:
        self.procs = procs
        self.logdir = logdir
        self.system = system
        self.log = _unique(logdir, f"shim-{system}", ".log")
        self.env = platform_shim.env(system, self.log, base=clean_env())
        self.relay = relay

    def calls(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def send(self, *args: str, stdin: bytes | None = None, close: bool = True) -> Sender:
        """./send RELAY ARGS under the shim, its code read; `stdin` is written (and the
        pipe closed unless `close` is false) once the process runs."""
        argv, cwd = invocation("send")
        stderr_path = _unique(self.logdir, "send", ".err")
        with open(stderr_path, "wb") as err:
            proc = self.procs.popen(
                [*argv, str(self.relay), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=err,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                env=self.env,
            )  # fmt: skip
        sender = Sender(proc, stderr_path)
        sender.read_code()
        pipe = proc.stdin
        if pipe is not None and stdin is not None:
            data = stdin

            def feed() -> None:  # read only once a receiver accepted: meanwhile, on a thread
                with contextlib.suppress(OSError):
                    pipe.write(data)
                    pipe.flush()
                    if close:
                        pipe.close()

            threading.Thread(target=feed, daemon=True).start()
        return sender

    def receive(self, *args: str, input: bytes | None = None) -> Result:
        argv, cwd = invocation("receive")
        return run_program(self.procs, [*argv, str(self.relay), *args], cwd, 60, self.env, input)


@pytest.fixture(scope="module")
def macos_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """./relay under the macOS shim, shared by the module's macos cases. Its shim calls
    go to a log of its own, so a test's log holds only its own clients' calls."""
    registry = Registry()
    logdir = tmp_path_factory.mktemp("macos-relay")
    env = dict(
        platform_shim.env("macos", logdir / "relay-shim.log", base=clean_env()), **RELAY_WITH_SITE
    )
    try:
        yield start_relay(registry, logdir, env=env)
    finally:
        registry.kill_all()


@pytest.fixture
def shim(request: pytest.FixtureRequest, procs: Registry, logdir: Path, system: str) -> Shimmed:
    """The clients under the shim; the relay under it on macOS, and the shared plain
    relay for Windows (the relay refuses Windows: there, only the clients are shimmed)."""
    relay: Relay = request.getfixturevalue("macos_relay" if system == "macos" else "shared_relay")
    assert relay.alive(), f"the relay exited:\n{relay.log()}"
    return Shimmed(procs, logdir, system, relay)


def assert_system_mechanisms(shim: Shimmed, *extra: str) -> None:
    calls = shim.calls()
    expected = {"windows": ["signal.signal 2"], "macos": ["TCP_KEEPALIVE"]}[shim.system]
    for needle in [*expected, *extra]:
        assert needle in calls, f"{needle!r} not in the shim's log:\n{calls}"


def test_a_file_arrives_byte_for_byte(shim: Shimmed, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_bytes(AWKWARD_BYTES)
    sender = shim.send(str(src))
    result = shim.receive(sender.code, str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "notes.txt").read_bytes() == AWKWARD_BYTES
    assert leftovers(tmp_path / "out") == []
    mechanism = {"windows": "msvcrt.locking", "macos": "F_FULLFSYNC"}[shim.system]
    assert_system_mechanisms(shim, mechanism)


def test_several_files_and_a_tree_arrive_whole(shim: Shimmed, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "tree" / "sub" / "deeper").mkdir(parents=True)
    (src / "tree" / "empty").mkdir()
    files = {
        "tree/a.txt": AWKWARD_BYTES,
        "tree/sub/b.bin": os.urandom(300_000),
        "tree/sub/deeper/c": b"",
        "one.txt": b"one\r\n",
        "two.bin": os.urandom(1000),
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    sender = shim.send(str(src / "tree"), str(src / "one.txt"), str(src / "two.bin"))
    out = tmp_path / "out"
    result = shim.receive(sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel
    assert (out / "tree" / "empty").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["one.txt", "tree", "two.bin"]
    mechanism = {"windows": "msvcrt.locking", "macos": "renameatx_np flags=4"}[shim.system]
    assert_system_mechanisms(shim, mechanism)

    # --merge: the new files go into the existing directories (renamed through directory
    # descriptors on POSIX, by checked paths on Windows), the old ones stay.
    (src / "tree" / "sub" / "new.txt").write_bytes(b"new\r\n")
    (src / "tree" / "sub" / "b.bin").unlink()
    (src / "tree" / "a.txt").unlink()
    (src / "tree" / "sub" / "deeper" / "c").unlink()
    sender = shim.send(str(src / "tree"))
    result = shim.receive(sender.code, str(out), "--merge")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / "tree" / "sub" / "new.txt").read_bytes() == b"new\r\n"
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel
    assert leftovers(out) == []


def test_stdin_is_streamed_and_stored_under_its_name(shim: Shimmed, tmp_path: Path) -> None:
    data = AWKWARD_BYTES + os.urandom(400_001)
    sender = shim.send("-", stdin=data)
    result = shim.receive(sender.code, str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "stdin").read_bytes() == data
    assert_system_mechanisms(shim)


def test_a_file_goes_to_stdout(shim: Shimmed, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(AWKWARD_BYTES + os.urandom(200_000))
    sender = shim.send(str(src))
    argv, cwd = invocation("receive")
    proc = subprocess.run(
        [*argv, str(shim.relay), sender.code, "-"], capture_output=True, timeout=60,
        env=shim.env, cwd=cwd, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == src.read_bytes()
    assert sender.wait(30) == 0, sender.stderr()


def test_a_text_is_printed_and_ask_reads_the_answer(shim: Shimmed, tmp_path: Path) -> None:
    sender = shim.send("--text", "hello, wörld")
    # --ask: the answer comes from stdin (a thread on Windows) while the connection is
    # watched (select() polling on Windows).
    result = shim.receive(sender.code, str(tmp_path / "out"), "--ask", input=b"y\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, wörld\n"
    assert sender.wait(30) == 0, sender.stderr()


def test_a_cut_stream_resumes_where_it_stopped(shim: Shimmed, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = os.urandom(600_000)
    first = data[:300_000]
    sender = shim.send("-", stdin=first, close=False)  # then silence: the stream hangs
    receiver = _start(shim, sender.code, out)
    assert wait_until(lambda: _partial_size(out) >= 300_000, 30), sender.stderr()
    sender.proc.kill()  # the cut
    assert receiver.wait(30) == EXIT_PEER_GONE
    kept = _partial_size(out)
    assert kept == 300_000

    sender = shim.send("-", stdin=data)
    result = shim.receive(sender.code, str(out), "-v")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert f"resuming stdin after the {units.size(kept)} kept" in result.stderr
    assert (out / "stdin").read_bytes() == data
    assert list(out.glob(RESUME_GLOB)) == []


def test_ctrl_c_stops_a_waiting_sender_with_one_line(shim: Shimmed, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"a")
    sender = shim.send(str(src))
    time.sleep(0.5)  # the handlers are installed before the code is printed; be sure
    os.kill(sender.pid, signal.SIGINT)
    assert sender.wait(30) == EXIT_INTERRUPTED
    assert_exact_one_line_error(sender.stderr(), "send", "interrupted")
    assert_system_mechanisms(shim)


def test_the_relay_on_windows_refuses_in_one_line_and_on_macos_copies(
    shim: Shimmed, procs: Registry
) -> None:
    if shim.system == "macos":
        assert "copy pump: this system has no splice" in shim.relay.log()
        return
    _, repo = invocation("relay", "rel")
    env = dict(
        shim.env, **RELAY_WITH_SITE,
        PYTHONPATH=os.pathsep.join([shim.env["PYTHONPATH"], str(repo / "src")]),
    )  # fmt: skip
    for args in (["./relay", ":0"], ["python3", "-m", "ferry", "relay", ":0"]):
        result = run_program(procs, args, repo, 30, env)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert result.stderr == "relay: error: the relay runs on Linux or macOS\n"


def _start(shim: Shimmed, code: str, out: Path) -> subprocess.Popen[bytes]:
    argv, cwd = invocation("receive")
    return shim.procs.popen(
        [*argv, str(shim.relay), code, str(out)], cwd=cwd, env=shim.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _partial_size(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob(RESUME_GLOB)) if out.exists() else 0
