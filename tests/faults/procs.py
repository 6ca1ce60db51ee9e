"""Real relay, send and receive processes for fault tests: start, watch, always kill.

Everything runs on 127.0.0.1 (attackers bind other loopback addresses,
127.0.0.2 and up, to look like other hosts). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fd_limit(n: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


class RelayProcess:
    """`./relay 127.0.0.1:PORT --metrics 127.0.0.1:MPORT FLAGS...` with its log in a file."""

    def __init__(self, workdir: Path, *flags: str, preexec: Callable[[], None] | None = None):
        self.workdir = workdir
        self.flags = flags
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = self.metrics_port = 0
        self.log_path = workdir / f"relay-{id(self)}.log"

    def start(self) -> RelayProcess:
        for _ in range(5):
            self.port, self.metrics_port = free_port(), free_port()
            argv = [
                str(ROOT / "relay"),
                f"127.0.0.1:{self.port}",
                "--metrics",
                f"127.0.0.1:{self.metrics_port}",
                *self.flags,
            ]
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=self.preexec
                )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if "listening on" in self.log():
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            self.kill()
        raise RuntimeError(f"relay did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match, status
        return int(match.group(1))

    def metrics(self) -> dict[str, float]:
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5) as sock:
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

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)


@contextlib.contextmanager
def relay_process(
    workdir: Path, *flags: str, preexec: Callable[[], None] | None = None
) -> Iterator[RelayProcess]:
    # The attackers in these tests are loopback addresses: count them as remote hosts.
    relay = RelayProcess(workdir, "--limit-loopback", *flags, preexec=preexec).start()
    try:
        yield relay
    finally:
        relay.kill()
        assert "Traceback" not in relay.log(), relay.log()


class Client:
    """A ./send or ./receive process with stdout and stderr in files."""

    def __init__(self, workdir: Path, name: str, argv: list[str]) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "ferry.cli.main", *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    async def code(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.out.read_text()
            if text.endswith("\n"):
                return text.strip()
            if self.proc.poll() is not None:
                raise AssertionError(f"send exited {self.proc.returncode}: {self.stderr()}")
            await asyncio.sleep(0.02)
        raise AssertionError("no code printed")

    async def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while (rc := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s: {self.stderr()}")
            await asyncio.sleep(0.02)
        return rc

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def clients() -> Iterator[list[Client]]:
    started: list[Client] = []
    try:
        yield started
    finally:
        for client in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(client.proc.pid, signal.SIGCONT)
            client.reap()


def send(started: list[Client], workdir: Path, port: int, path: Path, name: str = "send") -> Client:
    client = Client(workdir, name, ["send", f"127.0.0.1:{port}", str(path)])
    started.append(client)
    return client


def receive(
    started: list[Client], workdir: Path, port: int, code: str, out: Path, name: str = "receive"
) -> Client:
    client = Client(workdir, name, ["receive", f"127.0.0.1:{port}", code, str(out)])
    started.append(client)
    return client


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        file.truncate(size)
    return path


def one_line_error(text: str, program: str) -> None:
    lines = [line for line in text.splitlines() if line.startswith(f"{program}: error:")]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text


def figure(name: str, value: str) -> None:
    """Record an observed figure: printed (pytest -s) and appended to FERRY_FIGURES if set."""
    line = f"FIGURE {name}: {value}"
    print(line, file=sys.stderr)
    target = os.environ.get("FERRY_FIGURES")
    if target:
        with open(target, "a") as file:
            file.write(line + "\n")
