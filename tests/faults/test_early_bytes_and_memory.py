"""The relay's memory before pairing and in all: real ./relay, sockets measured with ss.

A client that pushes bytes from the moment it connects, or right behind its first
line while its claim waits, must not make the relay hold more than the documented
pre-pairing size (docs/OPERATIONS.md): the listener sets no buffers (so a
connection not yet accepted keeps the kernel's small default), every accepted
socket is shrunk at once, and one that already sent more than a client may
before pairing is refused. --max-memory refuses new transfers `busy` before the
sum of per-transfer budgets passes it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.config import KIB, MIB, RelayConfig
from ferry.errors import EXIT_USAGE
from ferry.protocol import rendezvous as rv
from ferry.relay.buffers import SKB_SLACK, plan
from ferry_testing import procs
from ferry_testing.procs import Relay
from tests.relay import harness
from tests.sockmem import server_sockets

pytestmark = pytest.mark.timeout(120)

BUDGET = 4 * MIB
PRE_PAIRING = plan(RelayConfig()).control + SKB_SLACK
"""What one connection may hold before pairing: its receive buffer (32 KiB as the
kernel counts it) and the one segment a queue may take past its limit."""
NOT_ACCEPTED = 128 * KIB + SKB_SLACK
"""What a connection the relay has not accepted yet may hold: the kernel's default
receive buffer (net.ipv4.tcp_rmem's middle value) and one segment past it."""


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    started = procs.start_relay(tmp_path)
    try:
        yield started
    finally:
        started.kill()


def line_from(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def flood(sock: socket.socket, seconds: float = 1.0) -> int:
    """Push zeros without blocking for a while; the bytes the kernel took."""
    sock.setblocking(False)
    pushed, chunk, until = 0, b"\0" * 65536, time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            pushed += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    return pushed


def held(relay: Relay) -> list[int]:
    return [s.held for s in server_sockets(relay.port)]


def connect(relay: Relay) -> socket.socket:
    return socket.create_connection((relay.host, relay.port), timeout=10)


@pytest.mark.parametrize("who", ["receiver", "sender-data"])
def test_bytes_pushed_from_connect_behind_a_claim_are_never_held(relay: Relay, who: str) -> None:
    control = connect(relay)
    control.sendall(rv.encode(rv.SendRequest(standby=who == "sender-data")))
    assigned = rv.parse_relay_line(line_from(control))
    assert isinstance(assigned, rv.NameplateAssigned)
    if who == "receiver":  # a claim that waits for a join that never comes
        first = rv.encode(rv.ReceiveRequest(assigned.nameplate))
    else:  # a standby data connection, parked until a receiver comes
        ticket = rv.parse_relay_line(line_from(control))
        assert isinstance(ticket, rv.StandbyTicket)
        first = rv.encode(rv.JoinRequest(assigned.nameplate, ticket.ticket))
    # A busy relay accepts late: stopped, it leaves connections in the kernel's queue
    # while their bytes arrive, the line and megabytes behind it at once.
    socks = []
    os.kill(relay.pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            early = socket.socket()
            early.connect((relay.host, relay.port))
            socks.append(early)
            early.setblocking(False)
            early.send(first)
            flood(early, 0.3)
        waiting = held(relay)
    finally:
        os.kill(relay.pid, signal.SIGCONT)
    # Not accepted yet: the kernel's default receive buffer (128 KiB), not the budget.
    assert len(waiting) == 4 and max(waiting) <= NOT_ACCEPTED, waiting
    time.sleep(0.5)
    peak = 0
    for _ in range(5):
        for sock in socks:
            flood(sock, 0.05)
        peak = max(peak, max(held(relay), default=0))
    for sock in [*socks, control]:
        sock.close()
    assert peak <= PRE_PAIRING, f"a {who} connection held {peak // KIB} KiB before pairing"


def test_max_memory_refuses_new_transfers_before_the_budgets_pass_it(tmp_path: Path) -> None:
    started = procs.start_relay(tmp_path, "--max-memory", str(3 * BUDGET))
    socks: list[socket.socket] = []
    try:
        said = []
        for n in range(4):
            control = connect(started)
            control.sendall(rv.encode(rv.SendRequest()))
            assigned = rv.parse_relay_line(line_from(control))
            assert isinstance(assigned, rv.NameplateAssigned)
            claim = connect(started)
            socks += [control, claim]
            claim.sendall(harness.claim(assigned.nameplate))  # a claim pairs with its PAKE record
            if n < 3:  # admitted: its sender is told INCOMING, and the claim waits for the join
                assert line_from(control).startswith(b"INCOMING "), n
                said.append(_nothing_yet(claim))
            else:
                said.append(line_from(claim))
        assert said[:3] == [b"", b"", b""], said
        assert said[3].startswith(b"ERROR busy ") and b"memory" in said[3], said
    finally:
        for sock in socks:
            sock.close()
        started.kill()
    assert "all transfers together hold at most 12 MiB (--max-memory)" in started.log()


def _nothing_yet(sock: socket.socket) -> bytes:
    """b"" when the relay has sent sock nothing (and not closed it), else what it sent."""
    sock.setblocking(False)
    try:
        return sock.recv(4096, socket.MSG_PEEK) or b"<closed>"
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def test_max_memory_below_one_budget_is_a_usage_error() -> None:
    argv = [*procs.module_program("relay"), "127.0.0.1:0", "--max-memory", "1000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=procs.clean_env())
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "max_memory" in done.stderr, done.stderr
