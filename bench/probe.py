"""Looking at a running relay from the outside: CPU time, RSS, kernel buffers.

Linux only (/proc and `ss`). Everything here reads; nothing changes the
process being measured.

Kernel socket memory. `ss -tmnp` prints, for each TCP socket, a skmem
block; we sum, over the sockets owned by the relay's pid:

    r  rmem_alloc    bytes (skb truesize) sitting in the receive queue
    w  wmem_queued   bytes (skb truesize) in the send queue, sent or not
    f  fwd_alloc     memory already charged to the socket but not yet used

r + w + f is what the kernel charges to the socket. t (wmem_alloc) is not
added: on TCP it counts skbs of the send queue that are in flight below the
socket, so it overlaps w. rb and tb are limits, not usage; their sum is kept
as `limit` so a report can show the ceiling next to the usage.

Kernel pipes (the splice path moves bytes socket -> pipe -> socket): the
bytes they hold are read with FIONREAD on a second descriptor opened through
/proc/<pid>/fd, once per pipe inode.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import re
import subprocess
import termios
import time
from dataclasses import dataclass

from ferry_testing.procs import Popen

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SS_TIMEOUT = 30.0
_SKMEM = re.compile(r"skmem:\(([^)]*)\)")
_SKMEM_FIELD = re.compile(r"([a-z]+)(\d+)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds the process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # Fields after the command name (which may hold spaces) start after ") ".
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of the process, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class SocketMemory:
    sockets: int
    used: int
    """Sum of r + w + f over the sockets, bytes."""
    limit: int
    """Sum of rb + tb over the sockets, bytes."""


def socket_memory(pid: int, port: int) -> SocketMemory:
    """Kernel memory of the relay's established TCP sockets on its listening port."""
    argv = ["ss", "-tmnpH", "state", "established", f"( sport = :{port} )"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=SS_TIMEOUT, check=True)
    return parse_ss(out.stdout, pid)


def parse_ss(text: str, pid: int) -> SocketMemory:
    """Sum skmem over sockets whose users:(...) names pid (skmem may be on the next line)."""
    sockets = used = limit = 0
    owned = False
    marker = f"pid={pid},"
    for line in text.splitlines():
        if "users:(" in line:
            owned = marker in line
        match = _SKMEM.search(line)
        if match is None or not owned:
            continue
        fields = {name: int(value) for name, value in _SKMEM_FIELD.findall(match.group(1))}
        sockets += 1
        used += fields.get("r", 0) + fields.get("w", 0) + fields.get("f", 0)
        limit += fields.get("rb", 0) + fields.get("tb", 0)
        owned = False
    return SocketMemory(sockets, used, limit)


def pipe_bytes(pid: int) -> int:
    """Bytes held in all kernel pipes the process has open (each pipe counted once)."""
    total = 0
    seen: set[str] = set()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        path = f"{fd_dir}/{name}"
        try:
            target = os.readlink(path)
        except OSError:
            continue  # closed meanwhile
        if not target.startswith("pipe:") or target in seen:
            continue
        seen.add(target)
        total += _fionread(path)
    return total


def _fionread(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        count = array.array("i", [0])
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Snapshot:
    rss: int
    sockets: SocketMemory
    pipes: int

    @property
    def total(self) -> int:
        return self.rss + self.sockets.used + self.pipes


def snapshot(pid: int, port: int) -> Snapshot:
    return Snapshot(rss_bytes(pid), socket_memory(pid, port), pipe_bytes(pid))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


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
