"""Starting and always stopping the ferry programs as real processes.

Every process is started in its own session (so its own process group) and
stopped through the group: SIGTERM, a bounded wait, then SIGKILL. Only
loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

Popen = subprocess.Popen[bytes]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    argv: Sequence[str | Path],
    *,
    stdout: int | IO[bytes] = subprocess.DEVNULL,
    stderr: int | IO[bytes] = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> Popen:
    """Start a program in a new process group, stdin closed."""
    return subprocess.Popen(
        [str(arg) for arg in argv],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        env=env,
    )


def stop(proc: Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the process group: SIGTERM, wait up to timeout, then SIGKILL. Idempotent."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout)
    _signal_group(proc, signal.SIGKILL)  # strays left in the group, if any
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _signal_group(proc: Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def running(proc: Popen) -> Iterator[Popen]:
    """Stop proc (and its group) on the way out, whatever happened."""
    try:
        yield proc
    finally:
        stop(proc)


def read_line(proc: Popen, timeout: float, stream: str = "stdout") -> str:
    """One line from proc's stdout (or stderr) pipe, within timeout.

    Reads the pipe unbuffered, byte chunks at a time, so call it only while the
    program writes nothing after the line wanted (or only whole lines, each read
    by one call). Raises TimeoutError, or EOFError when the pipe closes first."""
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None, f"{stream} is not a pipe"
    fd = pipe.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no line from pid {proc.pid} within {timeout:.0f}s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError(f"pid {proc.pid} closed stdout (exit {proc.poll()})")
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def wait_all(procs: Sequence[Popen], timeout: float) -> list[int | None]:
    """Wait for every process until a shared deadline; None for those still running."""
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    return codes


def reap(proc: Popen, timeout: float) -> tuple[int | None, float, float]:
    """Wait for proc with wait4 to get its own CPU use: (exit code or None, user s, system s).

    Polls with WNOHANG until timeout; on success Popen is told the exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime, usage.ru_stime
        time.sleep(0.005)
    return None, 0.0, 0.0


@dataclass
class Relay:
    proc: Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        """The relay's python pid (./relay execs python, so it is the Popen pid)."""
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@contextlib.contextmanager
def relay(logdir: Path, extra: Sequence[str] = ()) -> Iterator[Relay]:
    """Run ./relay on a free loopback port until the block ends."""
    port = free_port()
    log = logdir / f"relay-{port}.log"
    with open(log, "wb") as log_file:
        proc = spawn([ROOT / "relay", f"{HOST}:{port}", "-q", *extra], stderr=log_file)
    with running(proc):
        wait_listening(proc, port, START_TIMEOUT)
        yield Relay(proc, port, log)


def wait_listening(proc: Popen, port: int, timeout: float) -> None:
    """Return once something accepts on HOST:port; raise if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout:.0f}s")
