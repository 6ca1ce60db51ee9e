"""Real relay, send and receive processes for fault tests: start, watch, always kill.

Everything runs on 127.0.0.1 (attackers bind other loopback addresses,
127.0.0.2 and up, to look like other hosts). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ferry_testing import procs
from ferry_testing.procs import ROOT, Relay


def fd_limit(n: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


@contextlib.contextmanager
def relay_process(
    workdir: Path, *flags: str, preexec: Callable[[], None] | None = None
) -> Iterator[Relay]:
    """./relay 127.0.0.1:0 with /metrics (the shared harness), killed on the way out."""
    # The attackers in these tests are loopback addresses: count them as remote hosts.
    # One address may fill a pool here (the tests of the global caps); a test of the
    # per-network shares passes its own --fair-share-addresses (the last flag wins).
    relay = procs.start_relay(
        workdir, "--limit-loopback", "--fair-share-addresses", "1", *flags,
        metrics=True, preexec_fn=preexec,
    )  # fmt: skip
    try:
        yield relay
    finally:
        relay.kill()
    assert "Traceback" not in relay.log(), relay.log()


class Client:
    """A ./send or ./receive process with stdout and stderr in files."""

    def __init__(
        self, workdir: Path, name: str, argv: list[str], stdin: procs.StdStream = None
    ) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = procs.spawn(
                [*procs.module_program(argv[0]), *argv[1:]],
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=out,
                stderr=err,
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
        procs.kill(self.proc)


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


def send(
    started: list[Client],
    workdir: Path,
    port: int,
    path: Path | str,
    name: str = "send",
    stdin: procs.StdStream = None,
    options: tuple[str, ...] = (),
) -> Client:
    """./send [options] path (path "-" with stdin, a pipe's read end, say: a stream)."""
    client = Client(workdir, name, ["send", *options, f"127.0.0.1:{port}", str(path)], stdin)
    started.append(client)
    return client


def receive(
    started: list[Client], workdir: Path, port: int, code: str, out: Path, name: str = "receive"
) -> Client:
    client = Client(workdir, name, ["receive", f"127.0.0.1:{port}", code, str(out)])
    started.append(client)
    return client


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
