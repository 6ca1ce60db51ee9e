"""Resumable partial files: what an interrupted receive keeps, and how it is trusted again.

Rules (docs/PROTOCOL.md, "Resume"):
- a file offered by a sender that can resume is written to
  `DIR/.ferry-resume-<key>.part` (mode 0600), key = SHA-256 of the offered
  name and size, so a later receive of the same file into the same DIR
  finds it; a lock (platform.try_lock: flock, or msvcrt on Windows) keeps
  two receivers off one partial;
- if the transfer is cut (connection lost, timeout, the sender gave up,
  interrupted, killed) the partial stays, holding only bytes that came in
  authenticated records; any other failure (integrity, a wrong digest, a
  local error) removes it;
- on the next receive, the ANSWER offers resume_from (how many bytes are
  kept, nothing of what they are); the sender proves it has them (a MAC
  keyed by this session, crypto.resume_proof), which the receiver
  compares with its own MAC of the kept bytes: the transfer resumes only
  if they match, else starts over (the partial is truncated), and a
  resumed file must match the sender's whole-content DIGEST before it is
  renamed into place: a changed source or a tampered partial never makes a
  wrong file, it starts over;
- a partial is used only if it is this user's, mode 0600, a regular file
  with one link (ownership.owned_privately): in a shared DIR (/tmp) another user
  can create its predictable name first; such a file is left alone (never
  opened for writing, never removed), one line says so, and the transfer
  goes to a temporary file as if it could not resume;
- --no-resume truncates an existing partial; partials untouched for
  PARTIAL_MAX_AGE are removed by the next receive into that DIR (with the
  resumable stagings of trees, client/staging.py, and whatever a killed
  receive left under a temporary name), if this user owns them.

A stream (stdin, size unknown) resumes the same way, keyed by its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import shutil
import time
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG

from ferry import platform
from ferry.client import ownership
from ferry.client.fileio import hash_prefix
from ferry.errors import ConnectionLost, Interrupted, LocalFileError, TimedOut
from ferry.names import display_name
from ferry.protocol.messages import UNKNOWN_SIZE

log = logging.getLogger("ferry.receive")

RESUME_PREFIX = ".ferry-resume-"
SUFFIX = ".part"
PARTIAL_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a partial may stay unused before a receive into its DIR removes it."""
STALE_PATTERNS = (".ferry-*.part", ".ferry-resume-*.tree")
"""What remove_stale() looks at: partials, temporary files and stagings (all *.part),
and resumable tree stagings."""

CUT = (ConnectionLost, TimedOut, Interrupted, asyncio.CancelledError, KeyboardInterrupt)
"""Failures that keep what arrived for resuming: the transfer was cut, not wrong (an
ABORT from the sender says something was wrong)."""


class Partial:
    """An open, locked partial file; `kept` bytes of it can be offered for resuming."""

    def __init__(self, path: Path, fd: int, kept: int) -> None:
        self.path = path
        self.fd = fd
        self.kept = kept
        self.digest: hashlib._Hash | None = None
        """The running SHA-256 of a resumed file (None when it started over)."""

    @classmethod
    def open(cls, directory: Path, name: str, size: int, resume: bool) -> Partial | None:
        """The partial of this file, created or found; None if its name holds something
        that is not this user's private partial (it is left alone, and said so)."""
        path = partial_path(directory, name, size)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | platform.NOFOLLOW
            fd = platform.open_fd(path, flags, 0o600)
        except FileExistsError:
            found = _open_ours(path)
            if found is None:
                log.warning("%s", ignored_notice(path, "partial file"))
                return None
            fd = found
        except OSError as exc:
            raise LocalFileError(f"cannot write into {directory}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            try:
                platform.try_lock(fd)
            except BlockingIOError:
                raise LocalFileError(
                    "another receive is writing this file into the same directory"
                ) from None
            fits = size == UNKNOWN_SIZE or info.st_size <= size
            kept = info.st_size if resume and fits else 0
            if kept != info.st_size:
                os.ftruncate(fd, kept)
            return cls(path, fd, kept)
        except BaseException:
            os.close(fd)
            raise

    def hash_kept(self, proof: hmac.HMAC) -> str:
        """The kept bytes (read back from disk: what is there now counts) fed to `proof`
        and to the running SHA-256; proof's hex digest, to compare with the sender's."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.digest, read = hash_prefix(self.fd, self.kept, proof)
        if read < self.kept:
            raise LocalFileError(f"{self.path} shrank while it was read")
        return proof.hexdigest()

    def start_at(self, offset: int) -> None:
        """The sender's START: append after the kept bytes, or start over."""
        if offset == 0:
            os.ftruncate(self.fd, 0)
            self.digest = None
        os.lseek(self.fd, offset, os.SEEK_SET)

    def finish(self) -> None:
        """Before the rename: flushed to disk, the mode a new file gets (0644 less the
        umask), and closed (Windows renames no file that is open)."""
        platform.full_fsync(self.fd)
        platform.set_mode(self.fd, ownership.umasked(0o644))
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self, keep: bool) -> None:
        """Done with it: removed unless `keep` and it holds bytes (an empty one has nothing
        to resume)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                keep = keep and os.fstat(self.fd).st_size > 0
        self._close()
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def partial_path(directory: Path, name: str, size: int) -> Path:
    """Where the partial of an offered file (name and size, UNKNOWN_SIZE for a stream) is."""
    key = hashlib.sha256(f"{name}\0{size}".encode("utf-8", "replace")).hexdigest()[:32]
    return directory / f"{RESUME_PREFIX}{key}{SUFFIX}"


def _open_ours(path: Path) -> int | None:
    """An existing partial, open for writing, if it is this user's private regular file
    with one link (checked before it is opened, and again after); else None."""

    def ours(info: os.stat_result) -> bool:
        return S_ISREG(info.st_mode) and info.st_nlink == 1 and ownership.owned_privately(info)

    try:
        before = os.lstat(path)
        if not ours(before):
            return None
        fd = platform.open_fd(path, os.O_RDWR | platform.NOFOLLOW | platform.NONBLOCK)
    except OSError:
        return None
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or not ours(after):
        os.close(fd)  # swapped meanwhile
        return None
    return fd


def ignored_notice(path: Path, what: str) -> str:
    """The line that says a name of ours holds something we leave alone."""
    return (
        f"ignoring {display_name(str(path))}: not a {what} this user made (another owner, "
        "or open to others); it is left as it is, and this transfer cannot resume"
    )


def remove_stale(directory: Path, now: float | None = None) -> None:
    """Remove what receives left unused for PARTIAL_MAX_AGE (skipping any a receive holds)."""
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        for path in [p for pattern in STALE_PATTERNS for p in directory.glob(pattern)]:
            with contextlib.suppress(OSError):
                info = path.lstat()
                if now - info.st_mtime < PARTIAL_MAX_AGE or S_ISLNK(info.st_mode):
                    continue
                if not ownership.owned_by_us(info):
                    continue  # another user's, in a shared DIR: never ours to delete
                if S_ISDIR(info.st_mode) and any(path.glob(".ferry-replaced-*")):
                    continue  # old files --overwrite could not put back: the user's
                if S_ISDIR(info.st_mode):
                    fd = platform.open_directory_lock(path)
                else:
                    fd = platform.open_fd(path, os.O_RDONLY | platform.NOFOLLOW | platform.NONBLOCK)
                try:
                    platform.try_lock(fd)
                    if platform.REMOVES_OPEN_FILES:
                        _remove(path, info)
                finally:
                    os.close(fd)
                if not platform.REMOVES_OPEN_FILES:  # Windows: only once closed
                    _remove(path, info)


def _remove(path: Path, info: os.stat_result) -> None:
    if S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
