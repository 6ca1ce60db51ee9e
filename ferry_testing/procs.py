"""Start the real ./relay, ./send and ./receive as processes, watch them, always stop them.

Theory of operation. Every process is started in a new session, so its own
process group, and stopped through the group: stop() sends SIGTERM, waits a
bounded time, then SIGKILLs; kill() SIGKILLs at once. Either also reaps.

The relay is started on port 0 with --ready-file: the kernel picks a free
port and the relay writes the address it bound, once it accepts connections
and handles SIGTERM. Waiting for that file is the whole start-up handshake,
so there is no window in which another process can take a guessed port, and
no probe connection shows up in the relay's counters or logs. With
metrics=True the /metrics endpoint listens on port 0 too and its port is
read from the relay's "metrics on http://HOST:PORT/metrics" log line, which
is written before the ready file.

Every wait here has a deadline; a failed start raises StartFailed (with the
relay's log) or TimeoutError.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
"""Seconds a relay may take to write its ready file (generous on a loaded 2-core machine)."""
STOP_TIMEOUT = 5.0
"""Seconds stop() waits after SIGTERM before it SIGKILLs."""
POLL_INTERVAL = 0.01

Popen = subprocess.Popen[bytes]
Argv = Sequence[str | Path]
StdStream = int | IO[bytes] | None

_METRICS_LINE = re.compile(r"metrics on http://(?:\[[^\]]*\]|[^\s:/]+):(\d+)/metrics")
_serial = itertools.count(1)


class StartFailed(RuntimeError):
    """The relay exited before it was ready."""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any FERRY_* setting that could change behaviour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.pop("PYTHONWARNINGS", None)
    if extra:
        env.update(extra)
    return env


def spawn(
    argv: Argv,
    *,
    cwd: Path | None = None,
    stdin: StdStream = subprocess.DEVNULL,
    stdout: StdStream = subprocess.DEVNULL,
    stderr: StdStream = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Popen:
    """Start a program in a new session (its own process group); stdin closed by default."""
    return subprocess.Popen(
        [str(arg) for arg in argv],
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        preexec_fn=preexec_fn,
        start_new_session=True,
    )


def signal_group(proc: Popen, sig: int) -> None:
    """Send sig to proc's process group; nothing if the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def kill(proc: Popen, timeout: float = 10.0) -> None:
    """SIGKILL proc's group and reap proc. Idempotent."""
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def stop(proc: Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the group, wait up to timeout, then SIGKILL; reap; close proc's pipes."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    kill(proc)  # also any stray left in the group
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def running(proc: Popen) -> Iterator[Popen]:
    """Stop proc (and its group) on the way out, whatever happened."""
    try:
        yield proc
    finally:
        stop(proc)


def read_first_line(fd: int, timeout: float, pid: int = 0) -> tuple[bytes, bytes]:
    """Read fd until a LF: (the line without it, whatever was read after it).

    Raises TimeoutError, or EOFError when the pipe closes before a whole line."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no line from pid {pid} within {timeout:.0f}s (got {data!r})")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError(f"pid {pid} closed its output after {data!r}")
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def read_line(proc: Popen, timeout: float, stream: str = "stdout") -> str:
    """One line from proc's stdout (or stderr) pipe, within timeout, stripped.

    Bytes read past the line are dropped, so call it only while the program
    writes nothing after the line wanted (or whole lines, one per call)."""
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None, f"{stream} is not a pipe"
    line, _ = read_first_line(pipe.fileno(), timeout, proc.pid)
    return line.decode("utf-8", "replace").strip()


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


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port)."""
    host, _, port = text.strip().rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


# -- the relay ----------------------------------------------------------------


@dataclass
class Relay:
    """A started relay process; `host` is where clients connect (not necessarily the bind)."""

    proc: Popen
    bound: tuple[str, int]
    """The address the relay wrote to its ready file."""
    host: str
    log_path: Path
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        """The relay's python (./relay and `ip netns exec` exec it: the Popen pid)."""
        return self.proc.pid

    @property
    def port(self) -> int:
        return self.bound[1]

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    def at(self, host: str) -> str:
        """The relay's address as reached through host (e.g. localhost or ::1)."""
        return format_address(host, self.port)

    def __str__(self) -> str:
        return self.address

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        stop(self.proc, timeout)

    def kill(self) -> None:
        kill(self.proc)

    def metrics(self) -> dict[str, float]:
        """GET /metrics: every sample by name (labels included), ferry_relay_ prefix dropped."""
        assert self.metrics_port is not None, "started without metrics=True"
        with socket.create_connection((HOST, self.metrics_port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.partition(b"\r\n\r\n")[2].decode()
        values: dict[str, float] = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name.removeprefix("ferry_relay_")] = float(value)
        return values

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match, status
        return int(match.group(1))


def start_relay(
    workdir: Path,
    *flags: str,
    listen: str = f"{HOST}:0",
    host: str | None = None,
    command: Argv = (ROOT / "relay",),
    metrics: bool = False,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = START_TIMEOUT,
) -> Relay:
    """Run `command listen --ready-file F [--metrics 127.0.0.1:0] flags...` until it is ready.

    listen must end in port 0 (the point); host is where clients connect,
    by default the bound host (127.0.0.1 when the relay bound all interfaces).
    The log (stderr) goes to workdir/relay-N.log. The caller stops the relay
    (relay.stop(), or use relay() instead)."""
    serial = f"{os.getpid()}-{next(_serial)}"
    log_path = workdir / f"relay-{serial}.log"
    ready = workdir / f"relay-{serial}.ready"
    argv = [*command, listen, "--ready-file", ready, *flags]
    if metrics:
        argv += ["--metrics", f"{HOST}:0"]
    with open(log_path, "wb") as log_file:
        proc = spawn(argv, cwd=cwd, stderr=log_file, env=env, preexec_fn=preexec_fn)
    try:
        bound = _wait_ready(proc, ready, log_path, timeout)
        metrics_port = _metrics_port(log_path) if metrics else None
    except BaseException:
        kill(proc)
        raise
    if host is None:
        host = HOST if bound[0] in ("0.0.0.0", "::", "") else bound[0]
    return Relay(proc, bound, host, log_path, metrics_port)


@contextlib.contextmanager
def relay(workdir: Path, *flags: str, **options: object) -> Iterator[Relay]:
    """start_relay(...) for the block; stopped (SIGTERM, then SIGKILL) on the way out."""
    started = start_relay(workdir, *flags, **options)  # type: ignore[arg-type]
    try:
        yield started
    finally:
        started.stop()


def _wait_ready(proc: Popen, ready: Path, log_path: Path, timeout: float) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            # Written to a temporary name and renamed: it exists only whole.
            return split_address(ready.read_text())
        if proc.poll() is not None:
            raise StartFailed(
                f"the relay exited with {proc.returncode} before it was ready; its log:\n"
                + log_path.read_text(errors="replace")
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"the relay was not ready after {timeout:.0f}s: {log_path}")
        time.sleep(POLL_INTERVAL)


def _metrics_port(log_path: Path) -> int:
    match = _METRICS_LINE.search(log_path.read_text(errors="replace"))
    if match is None:
        raise StartFailed(f"no 'metrics on' line in the relay's log {log_path}")
    return int(match.group(1))


# -- other servers --------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port on host that was free a moment ago.

    Only for third-party servers that cannot report the port they bound
    (magic-wormhole's, in bench/compare.py) and for a port where nothing
    listens; ferry's relay is started on port 0 instead (start_relay)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_listening(proc: Popen, port: int, timeout: float, host: str = HOST) -> None:
    """Return once something accepts on host:port; raise if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartFailed(f"pid {proc.pid} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout:.0f}s")


# -- send and receive ---------------------------------------------------------------


def program(name: str) -> list[str]:
    """argv of one of the three launchers, by absolute path."""
    return [str(ROOT / name)]


def module_program(name: str) -> list[str]:
    """argv of send or receive through the project's venv, skipping the launcher's checks."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "ferry.cli.main", name]
