"""Adaptive compression as a user sees it: files arrive identical whether they compress
or not, with and without --no-compress, and a sender whose receiver is slower than it
compresses what compresses (send -v says how much)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from ferry_testing.files import leftovers, sha256_file
from ferry_testing.procs import clean_env, kill

from .harness import RUN_TIMEOUT, invocation

MIB = 1024 * 1024
COMPRESSED = re.compile(r"compressed (\d+) of (\d+) records: (\d+) bytes of data took (\d+)")


def log_lines(size: int) -> bytes:
    """Text that compresses about 5:1 (a relay's log, numbered)."""
    line = b"%08d 2026-12-08T01:00:00Z ferry.relay INFO paired nameplate %d (%s)\n"
    parts = (line % (i, i % 997, b"sender" if i % 3 else b"receiver") for i in range(size))
    out = bytearray()
    for part in parts:
        out += part
        if len(out) >= size:
            return bytes(out[:size])
    raise AssertionError("unreachable")


def compressed_counts(stderr: str) -> tuple[int, int, int, int]:
    found = COMPRESSED.search(stderr)
    assert found, f"send -v did not say what it compressed: {stderr!r}"
    records, total, raw, wire = (int(n) for n in found.groups())
    return records, total, raw, wire


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["text", "random"])
@pytest.mark.parametrize("flag", [[], ["--no-compress"]], ids=["default", "no-compress"])
def test_a_file_arrives_identical_with_and_without_no_compress(
    relay, start_send, run_receive, tmp_path: Path, kind: str, flag: list[str]
) -> None:
    data = log_lines(12 * MIB) if kind == "text" else os.urandom(12 * MIB)
    source = tmp_path / f"{kind}.bin"
    source.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    sender = start_send(relay, source, extra_args=["-v", *flag])
    result = run_receive(relay, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert sha256_file(out / source.name) == hashlib.sha256(data).hexdigest()
    assert leftovers(out) == []
    records, total, raw, wire = compressed_counts(sender.stderr())
    assert raw == len(data) and total > 0
    if flag or kind == "random":  # nothing compressed: every byte went as it was
        assert records == 0 and wire == raw
    assert "Traceback" not in result.stderr + sender.stderr()


@pytest.mark.timeout(120)
def test_a_sender_held_back_by_its_receiver_compresses_and_the_bytes_arrive(
    relay, procs, start_send, tmp_path: Path
) -> None:
    """The receiver writes to a pipe the test reads at ~16 MB/s: the sender's writes wait
    (the queue is full), so it compresses; what comes out of the pipe is the file."""
    data = log_lines(32 * MIB)
    source = tmp_path / "app.log"
    source.write_bytes(data)
    sender = start_send(relay, source, extra_args=["-v"])
    argv, cwd = invocation("receive", "abs")
    receiving = procs.popen(
        [*argv, relay.address, sender.code, "-"],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=clean_env(),
    )  # fmt: skip
    assert receiving.stdout is not None and receiving.stderr is not None
    digest, got, deadline = hashlib.sha256(), 0, time.monotonic() + RUN_TIMEOUT
    try:
        while chunk := receiving.stdout.read1(256 * 1024):
            digest.update(chunk)
            got += len(chunk)
            time.sleep(0.015)  # ~16 MB/s at most: slower than the loopback path
            assert time.monotonic() < deadline, "the transfer took too long"
        assert receiving.wait(30) == 0, receiving.stderr.read().decode(errors="replace")
    finally:
        kill(receiving)
        receiving.stdout.close()
        receiving.stderr.close()
    assert sender.wait(60) == 0, sender.stderr()
    assert got == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()
    records, total, raw, wire = compressed_counts(sender.stderr())
    assert records > total // 2, sender.stderr()
    assert raw == len(data) and wire < raw // 2
