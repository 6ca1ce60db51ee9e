"""Files the tests send and what a receiver leaves behind: one home for both.

A test file is sparse: random bytes in its first and last 4 KiB (so a
transfer that drops or reorders a block is caught by a content check) and a
hole between them (so a gigabyte costs no disk and no time to make). What a
receiver may leave in its output directory is its final file and, after a
cut transfer, a resumable partial: a regular file named .ferry-resume-*.part
with mode 0600. Anything else named .ferry-*.part is a leftover.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

TEMP_GLOB = ".ferry-*.part"
"""Every temporary name a receiver writes under (staging, partial, resumable partial)."""
RESUME_GLOB = ".ferry-resume-*.part"
"""A resumable partial: kept on purpose after a cut transfer."""
EDGE = 4096
"""Random bytes at each end of a sparse_file()."""


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` bytes: random first and last 4 KiB, a hole between (parents made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        if size <= 2 * EDGE:
            file.write(os.urandom(size))
            return path
        file.write(os.urandom(EDGE))
        file.truncate(size)
        file.seek(size - EDGE)
        file.write(os.urandom(EDGE))
    return path


def kept_partial(path: Path) -> bool:
    """A resumable partial a cut transfer keeps on purpose (regular file, mode 0600)."""
    info = path.lstat()
    return (
        path.match(RESUME_GLOB) and stat.S_ISREG(info.st_mode)
        and stat.S_IMODE(info.st_mode) == 0o600
    )  # fmt: skip


def leftovers(directory: Path) -> list[str]:
    """Names of ferry temporary files in directory that should not be there (sorted)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.glob(TEMP_GLOB) if not kept_partial(p))


def assert_nothing_stored(directory: Path, final_name: str | None = None) -> None:
    """No file under the final name and no temporary file but a kept partial in directory."""
    if final_name is not None:
        assert not (directory / final_name).exists(), f"{final_name} was stored"
    assert leftovers(directory) == [], f"temporary files left: {leftovers(directory)}"


def part_size(directory: Path) -> int:
    """Bytes in the receiver's temporary file(s) in directory (0 if none)."""
    total = 0
    for path in directory.glob(TEMP_GLOB):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def files_equal(a: Path, b: Path, chunk: int = 8 << 20) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(chunk)
            y = fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()
