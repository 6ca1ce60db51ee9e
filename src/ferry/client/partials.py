"""Resumable partial files: what an interrupted receive keeps, and how it is trusted again.

Rules (docs/PROTOCOL.md, "Resume"):
- a file offered by a sender that can resume is written to
  `DIR/.ferry-resume-<key>.part` (mode 0600), key = SHA-256 of the offered
  name and size, so a later receive of the same file into the same DIR
  finds it; an flock keeps two receivers off one partial;
- if the transfer is cut (connection lost, timeout, the sender gave up,
  interrupted, killed) the partial stays, holding only bytes that came in
  authenticated records; any other failure (integrity, a wrong digest, a
  local error) removes it;
- on the next receive, its bytes are hashed and offered (ANSWER
  resume_from + prefix_sha256); the sender resumes only if its own first
  bytes hash the same, else starts over (the partial is truncated), and a
  resumed file must match the sender's whole-content DIGEST before it is
  renamed into place: a changed source or a tampered partial never makes a
  wrong file, it starts over;
- --no-resume truncates an existing partial; partials untouched for
  PARTIAL_MAX_AGE are removed by the next receive into that DIR (with the
  resumable stagings of trees, client/staging.py, and whatever a killed
  receive left under a temporary name).

A stream (stdin, size unknown) resumes the same way, keyed by its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG

from ferry.errors import ConnectionLost, Interrupted, LocalFileError, TimedOut
from ferry.protocol.messages import UNKNOWN_SIZE

RESUME_PREFIX = ".ferry-resume-"
SUFFIX = ".part"
PARTIAL_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a partial may stay unused before a receive into its DIR removes it."""
_HASH_BLOCK = 1024 * 1024
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
    def open(cls, directory: Path, name: str, size: int, resume: bool) -> Partial:
        key = hashlib.sha256(f"{name}\0{size}".encode("utf-8", "replace")).hexdigest()[:32]
        path = directory / f"{RESUME_PREFIX}{key}{SUFFIX}"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise LocalFileError(f"cannot write into {directory}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise LocalFileError(f"{path} is not a partial file ferry made; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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

    def prefix_sha256(self) -> str:
        """SHA-256 of the kept bytes (read back from disk: what is there now counts)."""
        digest = hashlib.sha256()
        os.lseek(self.fd, 0, os.SEEK_SET)
        left = self.kept
        while left:
            block = os.read(self.fd, min(left, _HASH_BLOCK))
            if not block:
                raise LocalFileError(f"{self.path} shrank while it was read")
            digest.update(block)
            left -= len(block)
        self.digest = digest
        return digest.hexdigest()

    def start_at(self, offset: int) -> None:
        """The sender's START: append after the kept bytes, or start over."""
        if offset == 0:
            os.ftruncate(self.fd, 0)
            self.digest = None
        os.lseek(self.fd, offset, os.SEEK_SET)

    def finish(self) -> None:
        """Before the rename: the mode a new file gets (0644 less the umask)."""
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(self.fd, 0o644 & ~mask)

    def close(self, keep: bool) -> None:
        """Done with it: removed unless `keep` and it holds bytes (an empty one has nothing
        to resume)."""
        with contextlib.suppress(OSError):
            keep = keep and os.fstat(self.fd).st_size > 0
        os.close(self.fd)
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def remove_stale(directory: Path, now: float | None = None) -> None:
    """Remove what receives left unused for PARTIAL_MAX_AGE (skipping any a receive holds)."""
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        for path in [p for pattern in STALE_PATTERNS for p in directory.glob(pattern)]:
            with contextlib.suppress(OSError):
                info = path.lstat()
                if now - info.st_mtime < PARTIAL_MAX_AGE or S_ISLNK(info.st_mode):
                    continue
                if S_ISDIR(info.st_mode) and any(path.glob(".ferry-replaced-*")):
                    continue  # old files --overwrite could not put back: the user's
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if S_ISDIR(info.st_mode):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                finally:
                    os.close(fd)
