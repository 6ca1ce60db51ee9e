"""Kernel memory of a process's TCP sockets, as `ss -tm` reports it.

ss prints one skmem:(...) group per socket: r is the receive queue's memory
(rmem_alloc, truesize of queued skbs: payload plus kernel overhead), w the
send queue's (wmem_queued), f memory charged in advance (forward_alloc), bl
the backlog; rb and tb are the limits. A socket's held memory here is
r + w + f + bl, the figure the relay's per-transfer budget is stated in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_SKMEM = re.compile(r"skmem:\(([^)]*)\)")
_FIELD = re.compile(r"([a-z]+)(\d+)")


@dataclass(frozen=True)
class SocketMemory:
    fields: dict[str, int]

    @property
    def held(self) -> int:
        f = self.fields
        return f.get("r", 0) + f.get("w", 0) + f.get("f", 0) + f.get("bl", 0)

    @property
    def held_unix(self) -> int:
        """A Unix stream socket's: what it received plus what it sent and is queued."""
        return self.fields.get("r", 0) + self.fields.get("t", 0)


def parse_ss(text: str) -> list[SocketMemory]:
    """Every skmem group in `ss -tm` output, in order.

    The kernel keeps forward_alloc signed and ss prints it as unsigned 32-bit:
    a queue charged past its reservation shows f near 2**32; it is negative.
    """
    return [
        SocketMemory({name: _signed(int(value)) for name, value in _FIELD.findall(group)})
        for group in _SKMEM.findall(text)
    ]


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def server_sockets(port: int) -> list[SocketMemory]:
    """Memory of the established TCP sockets whose local port is `port` (a server's side)."""
    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed to measure socket memory; .ci/run installs it"
    out = subprocess.run(
        [ss, "-tmnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return parse_ss(out)


def process_sockets(pid: int) -> list[SocketMemory]:
    """Memory of every established TCP socket of process `pid`, accepted or connected."""
    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed to measure socket memory; .ci/run installs it"
    out = subprocess.run(
        [ss, "-tmnpH", "state", "established"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    # One socket per entry: its line names the owning process, its skmem group follows.
    entries = re.split(r"\n(?=\S)", out)
    return parse_ss("\n".join(entry for entry in entries if f"pid={pid}," in entry))


def process_unix_sockets(pid: int) -> list[SocketMemory]:
    """Memory of every connected Unix stream socket of process `pid` (`ss -xm`).

    A Unix stream socket's queued bytes are charged to the sender: its t
    (wmem_alloc) holds them, the receiving socket's r stays 0. So for these
    the held memory is r + t (`SocketMemory.held_unix`).
    """
    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed to measure socket memory; .ci/run installs it"
    out = subprocess.run(
        [ss, "-xmpH", "state", "established"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    entries = re.split(r"\n(?=\S)", out)
    return parse_ss("\n".join(entry for entry in entries if f"pid={pid}," in entry))
