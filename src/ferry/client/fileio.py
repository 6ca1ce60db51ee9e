"""A transfer's file bytes through a descriptor: write, flush, hash what was kept.

One home for what the single-file receiver (receiver.py, partials.py), the
tree's staging (staging.py) and the sender's resume proofs (sources.py) do
alike, so a failure reads the same whichever path met it:

- write_all / fsync: every byte of a received file, then the file flushed to
  stable storage (platform.full_fsync); an OSError becomes one LocalFileError
  naming the file (write_error), a full disk or quota its own NoSpace, which
  the sender is told apart (peer.abort_for);
- fsync_directory / fsync_path / fsync_opened: best-effort flushes of what
  a rename or a tree's files made (a directory only where the system can
  open one: platform.CAN_OPEN_DIRECTORIES);
- hash_prefix: the SHA-256 of a file's first bytes (what a receiver kept from
  an earlier try, or what a sender proves it has), fed to the resume proof
  on the way, HASH_BLOCK bytes at a time.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
from collections.abc import Callable

from ferry import platform
from ferry.errors import LocalFileError, NoSpace

HASH_BLOCK = 1024 * 1024
"""Bytes read at a time to hash a file's kept bytes."""


def write_error(exc: OSError, name: str) -> LocalFileError:
    """The error for a failed write (or fsync) of a received file; a full disk is its own."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"cannot write {name}: out of disk space ({exc.strerror})")
    return LocalFileError(f"cannot write {name}: {exc.strerror}")


def write_all(fd: int, data: memoryview, name: str) -> None:
    """All of data to fd; an error names the file (`name`, already escaped for display)."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        raise write_error(exc, name) from None


def fsync(fd: int, name: str) -> None:
    """Flush a received file to stable storage; an error names it, as write_all's does
    (a full disk can first show here, where delayed allocation meets it)."""
    try:
        platform.full_fsync(fd)
    except OSError as exc:
        raise write_error(exc, name) from None


def fsync_directory(path: str | os.PathLike[str], follow: bool = True) -> None:
    """Best effort: make the entries of a directory (a rename into it) durable; with
    follow false, path itself (not a link's target).

    POSIX only: Windows cannot open a directory, and NTFS journals renames."""
    if platform.CAN_OPEN_DIRECTORIES:
        flags = os.O_RDONLY | platform.DIRECTORY | (0 if follow else platform.NOFOLLOW)
        fsync_opened(lambda: platform.open_fd(path, flags))


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Best effort: flush a file by its name (never following a link)."""
    fsync_opened(lambda: platform.open_fd(path, os.O_RDONLY | platform.NOFOLLOW))


def fsync_opened(opener: Callable[[], int]) -> None:
    """Best effort: the descriptor opener returns, flushed fully and closed; any OSError
    (opening included) is ignored."""
    try:
        fd = opener()
    except OSError:
        return
    try:
        platform.full_fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def hash_prefix(fd: int, length: int, proof: hmac.HMAC) -> tuple[hashlib._Hash, int]:
    """The SHA-256 of the next `length` bytes read from fd, each fed to `proof` too, and
    how many bytes there were (fewer than length: the file ended first). An OSError
    is the caller's to name."""
    digest = hashlib.sha256()
    done = 0
    while done < length:
        block = os.read(fd, min(length - done, HASH_BLOCK))
        if not block:
            break
        digest.update(block)
        proof.update(block)
        done += len(block)
    return digest, done
