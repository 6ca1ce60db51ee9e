"""What a hostile tree offer may cost the real ./receive: inodes and CPU time.

A sender holding the code (the fake, tests/e2e/fakes.py) offers trees that hold no
bytes at all but many entries, or manifests built to be slow to check. The receiver
refuses before it creates anything: entries are counted against the filesystem's
free inodes and blocks, the manifest's size is capped, and checking it is bounded
in time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.errors import EXIT_LOCAL_FILE, EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER
from ferry.protocol import messages
from ferry.protocol.manifest import Entry
from ferry_testing.files import leftovers

from .harness import assert_one_line_error
from .test_e2e_hostile_sender import run_against_fake
from .test_e2e_hostile_tree import tree_fake


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs with 300 inodes (needs root; skipped elsewhere)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=300", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        outdir = mount / "out"
        outdir.mkdir()
        yield outdir
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.timeout(120)
def test_an_empty_tree_of_more_entries_than_free_inodes_is_refused_before_any_mkdir(
    relay, run_receive, few_inodes: Path
) -> None:
    entries = [Entry(f"d{i}", True, 0, 0) for i in range(1000)]  # 0 bytes, 1000 dirs
    free_before = os.statvfs(few_inodes).f_favail
    fake = tree_fake(relay, entries)
    result = run_against_fake(relay, run_receive, fake, few_inodes)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_one_line_error(result.stderr, "receive", "not enough space", "1000 offered")
    assert fake.outcome == "refused", (fake.outcome, fake.error)
    assert fake.answer is not None and "not enough disk space" in fake.answer.message
    assert list(few_inodes.iterdir()) == [] and leftovers(few_inodes) == []
    assert os.statvfs(few_inodes).f_favail == free_before


@pytest.mark.timeout(120)
def test_a_manifest_built_to_be_slow_to_check_is_refused_in_seconds(
    relay, run_receive, tmp_path: Path
) -> None:
    # 100,000 entries 145 levels deep: 30 MB of manifest, each path 145 names to check.
    deep = "/".join(["a"] * 145)
    entries = [Entry(f"{deep}{i}", True, 0, 0) for i in range(100_000)]
    outdir = tmp_path / "out"
    outdir.mkdir()
    fake = tree_fake(relay, entries)
    started = time.monotonic()
    result = run_against_fake(relay, run_receive, fake, outdir)
    took = time.monotonic() - started
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert_one_line_error(result.stderr, "receive", "deeper than 64")
    assert took < 45, f"the receiver took {took:.0f}s"
    assert list(outdir.iterdir()) == []


@pytest.mark.timeout(120)
def test_a_manifest_over_the_size_cap_is_refused_unread(relay, run_receive, tmp_path) -> None:
    entries = [Entry(("n" * 900) + str(i), True, 0, 0) for i in range(40_000)]  # ~37 MB
    outdir = tmp_path / "out"
    outdir.mkdir()
    fake = tree_fake(relay, entries)
    result = run_against_fake(relay, run_receive, fake, outdir)
    assert result.returncode == EXIT_PEER_GONE, result.stderr
    assert_one_line_error(result.stderr, "receive", "larger than 32 MiB")
    assert list(outdir.iterdir()) == []


def test_the_offer_counts_each_entry_as_an_inode_and_a_block() -> None:
    from ferry.client.exchange import room_for

    def stats(blocks: int, inodes: int) -> os.statvfs_result:
        return os.statvfs_result((4096, 4096, 10**6, blocks, blocks, 10**4, inodes, inodes, 0, 255))

    assert room_for(stats(1000, 1000), 0, 500) is None
    assert "500 offered" in (room_for(stats(1000, 100), 0, 500) or "")
    assert "needed" in (room_for(stats(100, 1000), 0, 500) or "")  # 500 blocks > 100 free
    assert room_for(stats(1000, 0), 0, 500) is not None  # f_favail 0 of f_files 10**4
    unlimited = os.statvfs_result((4096, 4096, 10**6, 1000, 1000, 0, 0, 0, 0, 255))
    assert room_for(unlimited, 0, 500) is None  # no inode count (btrfs): bytes only
    assert room_for(stats(1000, 1000), messages.UNKNOWN_SIZE, 1) is None
