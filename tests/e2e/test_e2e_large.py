"""Big files: past 4 GiB (32-bit size/offset bugs), and the relay's memory while it pipes 1 GiB."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ferry_testing.files import leftovers, sha256_file

from .harness import cmdline, rss_kib

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def write_sparse(path: Path, size: int, regions: list[tuple[int, int]]) -> dict[int, bytes]:
    """A sparse file of `size` bytes with random bytes at the given (offset, length) regions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = {}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in regions:
            chunk = os.urandom(length)
            f.seek(offset)
            f.write(chunk)
            written[offset] = chunk
    return written


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_file_over_4_gib_arrives_identical(relay, start_send, run_receive, tmp_path):
    size = 4 * GIB + MIB
    src = tmp_path / "src" / "huge.bin"
    regions = [
        (0, 4096),
        (4 * GIB - 2048, 4096),  # straddles the 4 GiB boundary
        (4 * GIB + 12345, 777),
        (size - 4096, 4096),  # the very end
    ]
    written = write_sparse(src, size, regions)
    outdir = tmp_path / "out"
    received = outdir / "huge.bin"
    try:
        started = time.monotonic()
        sender = start_send(relay, src)
        result = run_receive(relay, sender.code, outdir, timeout=280)
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0, sender.stderr()
        print(f"\n4 GiB + 1 MiB transfer: {elapsed:.1f}s ({size / elapsed / MIB:.0f} MiB/s)")

        assert received.stat().st_size == size
        for offset, chunk in written.items():
            assert read_at(received, offset, len(chunk)) == chunk, f"region at {offset} differs"
        assert read_at(received, 4 * GIB - 1, 1) == read_at(src, 4 * GIB - 1, 1)
        assert sha256_file(received) == sha256_file(src)
        assert leftovers(outdir) == []
    finally:
        for path in (received, src):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = rss_kib(self.pid)
            if value is not None:
                self.samples.append(value)
            self._stop_event.wait(self.interval)

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join(5)
        return self.samples


@pytest.mark.own_relay
@pytest.mark.slow
@pytest.mark.timeout(200)
def test_relay_rss_grows_less_than_4_mib_during_1_gib_transfer(
    relay, start_send, run_receive, tmp_path
):
    # The ./relay shim execs python, so the Popen pid is the relay's python itself.
    argv = cmdline(relay.pid)
    assert any("python" in part for part in argv[:1]) and "ferry.cli.relay" in argv, argv

    size = GIB
    src = tmp_path / "src" / "gig.bin"
    written = write_sparse(src, size, [(0, MIB), (size // 2, MIB), (size - MIB, MIB)])
    outdir = tmp_path / "out"
    received = outdir / "gig.bin"

    time.sleep(0.3)
    baseline = max(rss_kib(relay.pid) or 0 for _ in range(3))
    sampler = RssSampler(relay.pid)
    sampler.start()
    try:
        started = time.monotonic()
        sender = start_send(relay, src)
        result = run_receive(relay, sender.code, outdir, timeout=180)
        elapsed = time.monotonic() - started
        assert sender.wait(60) == 0, sender.stderr()
    finally:
        samples = sampler.stop()
    try:
        assert result.returncode == 0, result.stderr
        assert samples, "no RSS sample"
        peak = max(samples)
        growth = peak - baseline
        print(
            f"\nrelay RSS: baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB "
            f"({growth / KIB:.2f} MiB) over {len(samples)} samples; 1 GiB in {elapsed:.1f}s"
        )
        assert received.stat().st_size == size
        for offset, chunk in written.items():
            assert read_at(received, offset, len(chunk)) == chunk
        assert growth < 4096, f"relay RSS grew by {growth} KiB during a 1 GiB transfer"
        assert relay.alive()
    finally:
        for path in (received, src):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
