"""Helpers to drive the real ./relay, ./send and ./receive executables as subprocesses.

Everything here is black-box: programs are started exactly as a user would start
them, on 127.0.0.1 (or ::1); the relay on port 0 with --ready-file, so it never
races anyone for a port. Process start-up, stopping and the relay itself come from the
shared harness, ferry_testing.procs; every process is started in its own session so that
the whole process group can be killed, even when a test fails.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.errors import EXIT_RELAY_REFUSED
from ferry_testing import procs
from ferry_testing.files import part_size, sparse_file
from ferry_testing.procs import Relay, clean_env, free_port, kill, read_first_line, spawn
from ferry_testing.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

CODE_RE = re.compile(r"^\d+-[a-z]+(-[a-z]+)+$")

# Every wait in the suite is bounded; these are generous on a loaded 2-core machine.
CODE_TIMEOUT = 30.0
RUN_TIMEOUT = 90.0


def closed_port() -> int:
    """A port on 127.0.0.1 where a connection is refused (nothing listens)."""
    return free_port()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
            sock.listen(1)
            port = sock.getsockname()[1]
            with socket.create_connection(("::1", port), timeout=2):
                pass
        return True
    except OSError:
        return False


def invocation(name: str, invoke: str = "abs", cwd: Path | None = None) -> tuple[list[str], Path]:
    """argv and cwd that start one of the three programs in one of the ways a person does.

    invoke="abs": absolute path (procs.program), run from `cwd` (default: the repo root);
    invoke="rel": "./name" run from the repo root, exactly as the README shows;
    invoke="relpath": a relative path such as ../../work/main/name, run from `cwd`.
    """
    exe = REPO / name
    if invoke == "abs":
        return procs.program(name), cwd or REPO
    if invoke == "rel":
        return [f"./{name}"], REPO
    if invoke == "relpath":
        if cwd is None:
            raise ValueError("relpath needs a cwd")
        return [os.path.relpath(exe, cwd)], cwd
    raise ValueError(invoke)


class Registry:
    """Every process a test starts; all of them are killed at teardown, whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("env", clean_env())
        proc = spawn(argv, **kwargs)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in reversed(self.procs):
            kill(proc)
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


def start_relay(
    registry: Registry,
    logdir: Path,
    listen: str = "127.0.0.1:0",
    host: str = "127.0.0.1",
    extra_args: Iterable[str] = (),
    invoke: str = "rel",
    env: dict[str, str] | None = None,
) -> Relay:
    """Start ./relay on port 0 (listen's port must be 0) and return once it is ready."""
    argv, cwd = invocation("relay", invoke)
    relay = procs.start_relay(
        logdir, *extra_args, listen=listen, host=host, command=argv, cwd=cwd,
        env=env or clean_env(),
    )  # fmt: skip
    registry.procs.append(relay.proc)
    return relay


@dataclass
class Sender:
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    code: str = ""
    first_line: bytes = b""
    stdout_rest: bytes = b""
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_code(self, timeout: float = CODE_TIMEOUT) -> str:
        """Read the first stdout line (the code) within timeout."""
        assert self.proc.stdout is not None
        try:
            line, rest = read_first_line(self.proc.stdout.fileno(), timeout, self.pid)
        except (TimeoutError, EOFError) as exc:
            raise AssertionError(
                f"send printed no code line ({exc}; rc={self.proc.poll()}); "
                f"stderr: {self.stderr()!r}"
            ) from None
        self.first_line = line
        self.stdout_rest = rest
        self.code = line.decode("utf-8", "replace")
        return self.code

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        """Wait for exit (bounded); collect whatever else it printed on stdout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self.proc)
            raise AssertionError(
                f"send did not exit within {timeout}s; stderr: {self.stderr()!r}"
            ) from None
        assert self.proc.stdout is not None
        if not self.proc.stdout.closed:
            self.stdout_rest += self.proc.stdout.read()
            self.proc.stdout.close()
        self.returncode = rc
        return rc


def start_send(
    registry: Registry,
    logdir: Path,
    relay: Relay | str,
    path: Path | str,
    cwd: Path | None = None,
    extra_args: Iterable[str] = (),
    invoke: str = "abs",
    env: dict[str, str] | None = None,
    read_code: bool = True,
    stdin: int = subprocess.DEVNULL,
) -> Sender:
    """./send in the background; with stdin=subprocess.PIPE and path "-" the test feeds
    it (paced_stream()), so a transfer stays in flight exactly as long as the test wants."""
    argv, run_cwd = invocation("send", invoke, cwd)
    stderr_path = _unique(logdir, "send", ".err")
    with open(stderr_path, "wb") as err:
        proc = registry.popen(
            [*argv, str(relay), str(path), *extra_args],
            cwd=run_cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env or clean_env(),
        )
    sender = Sender(proc, stderr_path)
    if read_code:
        sender.read_code()
    return sender


class Result(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """A finished ./receive (or any program run to completion): a CompletedProcess with
    text stdout/stderr, plus `argv` and the wall time it took (`elapsed`, seconds)."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str, elapsed: float):
        super().__init__(argv, returncode, stdout, stderr)
        self.argv = argv
        self.elapsed = elapsed


def run_program(
    registry: Registry,
    argv: Sequence[str],
    cwd: Path,
    timeout: float = RUN_TIMEOUT,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> Result:
    started = time.monotonic()
    proc = registry.popen(
        argv,
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or clean_env(),
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"{argv} did not exit within {timeout}s; stdout {out!r}; stderr {err!r}"
        ) from None
    return Result(
        list(argv),
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


def run_receive(
    registry: Registry,
    relay: Relay | str,
    code: str | None,
    outdir: Path | str,
    cwd: Path | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = RUN_TIMEOUT,
    invoke: str = "abs",
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> Result:
    argv, run_cwd = invocation("receive", invoke, cwd)
    args = [str(relay)] + ([code] if code is not None else []) + [str(outdir), *extra_args]
    return run_program(registry, [*argv, *args], run_cwd, timeout, env, input)


def run_send_to_exit(
    registry: Registry,
    relay: Relay | str,
    path: Path | str,
    cwd: Path | None = None,
    extra_args: Iterable[str] = (),
    timeout: float = RUN_TIMEOUT,
) -> Result:
    """Run ./send when it is expected to fail before any receiver comes."""
    argv, run_cwd = invocation("send", "abs", cwd)
    return run_program(registry, [*argv, str(relay), str(path), *extra_args], run_cwd, timeout)


@dataclass
class Background:
    """A ./receive running in the background (for kill tests)."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self.proc)
            raise AssertionError(
                f"receive did not exit within {timeout}s; stderr {self.stderr()!r}"
            ) from None


def start_receive(
    registry: Registry,
    logdir: Path,
    relay: Relay | str,
    code: str,
    outdir: Path | str,
    extra_args: Iterable[str] = (),
) -> Background:
    argv, cwd = invocation("receive", "abs")
    out_path = _unique(logdir, "receive", ".out")
    err_path = out_path.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = registry.popen(
            [*argv, str(relay), code, str(outdir), *extra_args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return Background(proc, out_path, err_path)


class Terminal:
    """A program whose stdin, stdout and stderr are a pseudo-terminal, as a person runs it.

    A thread drains the terminal's other end all along (a full pty would block
    the program), so `screen()` is everything shown so far, with the terminal's
    CRLF turned back into LF; `type()` is what the person types (echoed too).
    """

    def __init__(
        self, registry: Registry, argv: Sequence[str], cwd: Path, stdout: int | None = None
    ) -> None:
        """stdout: the terminal too (None), or what subprocess.Popen takes (PIPE: read
        it from self.proc.stdout)."""
        import fcntl
        import pty
        import struct
        import termios
        import threading

        self.primary, secondary = pty.openpty()
        # A terminal has a size (a new pty's is 0 x 0): 24 rows of 120 columns.
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        try:
            self.proc = registry.popen(
                argv, cwd=cwd, stdin=secondary, stderr=secondary,
                stdout=secondary if stdout is None else stdout,
            )  # fmt: skip
        finally:
            os.close(secondary)  # the program holds the only copies now
        self._seen = bytearray()
        self._lock = threading.Lock()
        self._drain = threading.Thread(target=self._read, name="pty-drain", daemon=True)
        self._drain.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.primary, 4096)
            except OSError:  # EIO: every copy of the other end is closed
                return
            if not chunk:
                return
            with self._lock:
                self._seen += chunk

    def screen(self) -> str:
        with self._lock:
            return bytes(self._seen).decode("utf-8", "replace").replace("\r\n", "\n")

    def wait_for(self, text: str, timeout: float = CODE_TIMEOUT) -> str:
        """Wait until `text` is on the screen; the screen so far."""
        if not wait_until(lambda: text in self.screen(), timeout, interval=0.01):
            raise AssertionError(f"{text!r} not shown within {timeout}s: {self.screen()!r}")
        return self.screen()

    def type(self, keys: bytes) -> None:
        os.write(self.primary, keys)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        """The exit status once the program exited and everything it showed was read."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(self.proc)
            raise AssertionError(
                f"the program did not exit within {timeout}s; screen: {self.screen()!r}"
            ) from None
        self._drain.join(10)
        return status

    def close(self) -> None:
        kill(self.proc)
        self._drain.join(10)
        with contextlib.suppress(OSError):
            os.close(self.primary)


_serial = itertools.count(1)  # next() is atomic: run_cases starts programs from threads


def _unique(directory: Path, stem: str, suffix: str) -> Path:
    return directory / f"{stem}-{os.getpid()}-{next(_serial)}{suffix}"


# -- assertions ------------------------------------------------------------------------


def error_lines(stderr: str, prog: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{prog}: error:")]


def assert_one_line_error(stderr: str, prog: str, *needles: str) -> str:
    """stderr holds exactly one `prog: error: ...` line, as its last line, and no traceback.

    Other lines are allowed only if they are the program's own one-line warnings
    (`prog: ...`), e.g. the sender's "a receiver used a wrong code" notes.
    """
    assert "Traceback" not in stderr, f"traceback on stderr:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = error_lines(stderr, prog)
    assert len(errors) == 1, f"expected one '{prog}: error:' line, got:\n{stderr}"
    assert lines and lines[-1] == errors[0], f"the error is not the last line:\n{stderr}"
    for line in lines:
        assert line.startswith(f"{prog}: "), f"unexpected stderr line {line!r} in:\n{stderr}"
    message = errors[0]
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in {message!r}"
    return message


def assert_exact_one_line_error(stderr: str, prog: str, *needles: str) -> str:
    """stderr is exactly one line: `prog: error: ...`."""
    message = assert_one_line_error(stderr, prog, *needles)
    assert stderr.strip() == message, f"stderr is not just one line:\n{stderr}"
    return message


def dir_is_empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]


def wrong_words_code(code: str) -> str:
    """Same nameplate, different (valid) words."""
    from ferry.codes import words

    nameplate, *real = code.split("-")
    pool = [w for w in words() if w not in real]
    return "-".join([nameplate, *pool[: len(real)]])


def valid_words(n: int = 3) -> list[str]:
    from ferry.codes import words

    return list(words()[:n])


def wait_mid_transfer(directory: Path, total: int, timeout: float = 60) -> int:
    """Wait until the receiver's temporary file holds some bytes; return how many."""
    ok = wait_until(lambda: part_size(directory) > 0, timeout, interval=0.005)
    shown = sorted(p.name for p in directory.iterdir()) if directory.exists() else "-"
    assert ok, f"no temporary file grew in {directory}: {shown}"
    return part_size(directory)


def retry_while_claimed(run, *args: object, within: float = 10.0, **kwargs: object) -> Result:
    """Run a receive; while the relay still says the nameplate is in use, try again.

    After a wrong code the relay frees the nameplate only once it has noticed both ends of
    the failed pipe closing; a retry within those few milliseconds is told "already in
    use" (exit 5). A person never retypes that fast; the tests must not race it either.
    """
    deadline = time.monotonic() + within
    while True:
        result: Result = run(*args, **kwargs)
        claimed = result.returncode == EXIT_RELAY_REFUSED and "in use" in result.stderr
        if not claimed or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def run_in_bursts(
    pid: int, until: Callable[[], bool], timeout: float = 60, burst: float = 0.01
) -> None:
    """Let process pid run only in short bursts (SIGCONT, `burst` seconds, SIGSTOP) until
    `until()` holds, checked each time while it is stopped; it is left stopped.

    A throttle and an exact cut in one, whatever the machine's speed or load: a sender
    stepped this way cannot run past the check, so past it the receiver gets at most
    what was already in flight (socket buffers and the relay's budget, a few MiB).
    A small file then stands in for a big one. The caller SIGCONTs pid when done."""
    deadline = time.monotonic() + timeout
    os.kill(pid, signal.SIGSTOP)
    while not until():
        assert time.monotonic() < deadline, f"not reached within {timeout}s"
        os.kill(pid, signal.SIGCONT)
        time.sleep(burst)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(burst / 2)  # what is in flight lands


def run_cases(cases: Mapping[str, Callable[[], object]], workers: int = 4) -> None:
    """Run independent cases at once, each in a thread; fail with every case that failed.

    For a table of cases that each start their own processes (a ./receive against
    its own fake sender, say) and share nothing but a relay, which serves transfers
    independently: the cases' waits overlap instead of adding up. Each case keeps its
    own assertions; the failure names each failing case with its error."""
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(case): name for name, case in cases.items()}
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            if error is not None:
                detail = "".join(traceback.format_exception(error)[-3:])
                failures.append(f"[{futures[future]}] {detail}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(
        sorted(failures)
    )


@contextlib.contextmanager
def frozen_mid_transfer(
    relay: object, start_send: Any, start_receive: Any, tmp_path: Path, freeze: str
) -> Iterator[tuple[Path, Any, Any, Path]]:
    """A 1 GiB transfer caught mid-way, one side stopped (SIGSTOP) for the block's duration.

    Freezing one side guarantees the transfer cannot finish while the test
    kills or interrupts the other: no timing luck involved. Yields
    (source, sender, receiver, output directory); `freeze` is "sender" or "receiver".
    """
    gib = 1024**3
    src = sparse_file(tmp_path / "src" / "big.bin", gib)
    # Uncompressed: a sparse file's zeros compress 1,000-fold and would be across at once.
    sender = start_send(relay, src, extra_args=["--no-compress"])
    outdir = tmp_path / "out"
    receiver = start_receive(relay, sender.code, outdir)
    wait_mid_transfer(outdir, gib)
    frozen = {"sender": sender, "receiver": receiver}[freeze]
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        got = part_size(outdir)
        assert 0 < got < gib, f"transfer not in progress ({got} bytes)"
        yield src, sender, receiver, outdir
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)


PACE = 1 << 20
"""Bytes a paced stream writes per feed(): 8 records, enough to show in the receiver's partial."""


class PacedStream:
    """What a paced sender (`./send RELAY - --name NAME`, stdin a pipe) has been fed.

    "Mid-transfer" without gigabytes: the transfer stays open as long as the test
    holds stdin, whatever the machine's speed, and each feed() is one more MiB."""

    def __init__(self, sender: Sender) -> None:
        assert sender.proc.stdin is not None, "start_send(..., stdin=subprocess.PIPE)"
        self.sender = sender
        self.sent = 0

    def feed(self, size: int = PACE) -> None:
        assert self.sender.proc.stdin is not None
        self.sender.proc.stdin.write(os.urandom(size))
        self.sender.proc.stdin.flush()
        self.sent += size

    def end(self) -> None:
        """Close stdin: the sender's end of input, the transfer's last record."""
        assert self.sender.proc.stdin is not None
        self.sender.proc.stdin.close()


def paced_stream(start_send: Any, relay: object, name: str = "big.bin") -> PacedStream:
    """A ./send of stdin under `name` whose bytes the test feeds (PacedStream.feed)."""
    sender = start_send(relay, "-", extra_args=["--name", name], stdin=subprocess.PIPE)
    return PacedStream(sender)
