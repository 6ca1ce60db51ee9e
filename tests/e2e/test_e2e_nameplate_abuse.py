"""Someone who knows only the nameplate cannot stop a transfer: the real programs.

A real ./relay and ./send; an attacker speaking raw rendezvous lines over
sockets, from one loopback address or from fifty (127.0.0.2 and up, bound
by hand), within the relay's per-address limits (--limit-loopback puts
loopback under them: at most one claim a second per address on average, a
burst of 60); then a real ./receive with the right code.

- Claims that present no well-formed PAKE message (garbage, another record
  type, an oversize header, an invalid point, a disconnect) cost the sender
  nothing: not an attempt, not a wrong code.
- Claim-and-hold (claim, stay silent, re-claim the instant the claim ends)
  and a flood of invalid points keep no one out: the honest receiver gets
  the file on its first run within 15 s. Claims on a nameplate are served
  first come, first served, so it waits behind the claims that were there
  before it (one per attacking address), each turned away in a moment.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferry.protocol.records import Header, RecordType
from ferry_testing.procs import Relay

from .harness import Sender

pytestmark = pytest.mark.timeout(120)

SILENT = b""
INVALID_POINT = Header(33, RecordType.PAKE, 0).encode() + b"B" + b"\xff" * 32
GARBAGE = b"\x00\x00\x00\x05\x63\x00hello"
WRONG_TYPE = Header(32, RecordType.CONFIRM, 0).encode() + bytes(32)
OVERSIZE = Header(1 << 31, RecordType.PAKE, 0).encode() + bytes(64)
LEAVE = b"<leave>"

HONEST_WITHIN = 15.0
"""Seconds the honest receiver's first run may take, attack or not."""


def _claim_once(relay: Relay, nameplate: str, early: bytes, source: str, stop: threading.Event
                ) -> bytes:  # fmt: skip
    """One claim from `source`; held until the relay (or the sender) ends it. What came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect((relay.host, relay.port))
        line = f"FERRY 1 RECV {nameplate}\n".encode()
        sock.sendall(line if early is LEAVE else line + early)
        if early is LEAVE:
            return b""
        sock.settimeout(0.2)
        answer = b""
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            answer += data[: 256 - len(answer)]
        return answer


@dataclass
class Attack:
    """Claimers, one thread per source address, until stopped."""

    relay: Relay
    nameplate: str
    early: bytes
    sources: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    claims: int = 0
    answers: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, source: str) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                answer = _claim_once(self.relay, self.nameplate, self.early, source, self.stop)
            except OSError as exc:
                answer = f"<{type(exc).__name__}>".encode()
            with self._lock:
                self.claims += 1
                self.answers.append(answer)
            # Re-claim at once when the claim was held a second or more, else keep
            # to one claim a second: within the relay's 60 look-ups a minute.
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def refusals(self, reason: str) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.startswith(f"ERROR {reason}".encode()))


@contextlib.contextmanager
def attacking(relay: Relay, nameplate: str, early: bytes, addresses: int) -> Iterator[Attack]:
    sources = [f"127.0.0.{2 + i}" for i in range(addresses)]
    attack = Attack(relay, nameplate, early, sources)
    threads = [threading.Thread(target=attack.run, args=(s,), daemon=True) for s in sources]
    for thread in threads:
        thread.start()
    try:
        yield attack
    finally:
        attack.stop.set()
        for thread in threads:
            thread.join(10)


def _hello(tmp_path: Path) -> Path:
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello, honest receiver\n" * 100)
    return source


def _nameplate(sender: Sender) -> str:
    return sender.code.split("-")[0]


def _assert_no_attempt_spent(sender: Sender) -> None:
    said = sender.stderr()
    assert "wrong code" not in said and "attempt(s) left" not in said, said


# -- claims without a valid PAKE message ---------------------------------------------------------


def test_ten_claims_without_a_valid_pake_message_leave_the_sender_waiting(
    relay, start_send, run_receive, tmp_path: Path
) -> None:
    source = _hello(tmp_path)
    sender = start_send(relay, source)
    nameplate = _nameplate(sender)
    stop = threading.Event()
    kinds = [INVALID_POINT, GARBAGE, INVALID_POINT, WRONG_TYPE, INVALID_POINT,
             OVERSIZE, INVALID_POINT, LEAVE, GARBAGE, INVALID_POINT]  # fmt: skip
    for early in kinds:
        _claim_once(relay, nameplate, early, "127.0.0.1", stop)
    time.sleep(0.5)  # what the sender makes of the last one
    assert sender.running(), sender.stderr()
    _assert_no_attempt_spent(sender)
    result = run_receive(relay, sender.code, tmp_path / "out", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "hello.txt").read_bytes() == source.read_bytes()
    assert sender.wait(30) == 0, sender.stderr()
    _assert_no_attempt_spent(sender)


# -- claim-and-hold, and floods, within the per-address limits ---------------------------------


@pytest.mark.parametrize(
    ("early", "addresses"),
    [
        pytest.param(SILENT, 1, id="silent-1"),
        pytest.param(SILENT, 50, id="silent-50"),
        pytest.param(INVALID_POINT, 1, id="invalid-point-1"),
        pytest.param(INVALID_POINT, 50, id="invalid-point-50"),
    ],
)
def test_an_attacker_holding_the_nameplate_keeps_no_honest_receiver_out(
    relay_factory, start_send, run_receive, tmp_path: Path, addresses: int, early: bytes
) -> None:
    relay = relay_factory(extra_args=["--limit-loopback"])
    source = _hello(tmp_path)
    sender = start_send(relay, source)
    with attacking(relay, _nameplate(sender), early, addresses) as attack:
        time.sleep(1.5)  # the attacker is in first, and holds what it can
        result = run_receive(relay, sender.code, tmp_path / "out", timeout=HONEST_WITHIN + 15)
        print(f"honest receiver: {result.elapsed:.2f} s, {attack.claims} claims")  # pytest -rP
        assert result.returncode == 0, (result.elapsed, result.stderr, sender.stderr())
        assert result.elapsed < HONEST_WITHIN, result.elapsed
    assert (tmp_path / "out" / "hello.txt").read_bytes() == source.read_bytes()
    assert sender.wait(30) == 0, sender.stderr()
    _assert_no_attempt_spent(sender)
    # Within the limits: the relay never had to refuse the attacker for its rate.
    assert attack.refusals("rate-limited") == 0, attack.answers
    assert attack.refusals("too-many-connections") == 0, attack.answers
    assert attack.claims >= addresses
