"""The receiver's output directory: checked before the relay is contacted, made only
when something is stored there.

A receive that stores nothing (the relay is unreachable, a wrong code, a
text message, `-`) leaves no directory behind: check_directory() only
looks, and the receiver calls make() once an offer of files arrives; a
directory made for an attempt that then stored nothing is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from ferry.errors import LocalFileError
from ferry.names import display_name


def check_directory(path: str) -> Path:
    """DIR as given, if it is (or can be made) a directory we can write into."""
    directory = Path(path)
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    shown = display_name(path)
    if not existing.is_dir():
        if existing == directory:
            raise LocalFileError(f"{shown} exists and is not a directory")
        blocking = display_name(str(existing))
        raise LocalFileError(f"cannot create the directory {shown}: {blocking} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write into" if existing == directory else "create the directory"
        raise LocalFileError(f"cannot {verb} {shown}: {_why_not_writable(existing)}")
    return directory


def prepare_directory(path: str) -> Path:
    """Create the output directory if needed; check it is a writable directory."""
    directory = check_directory(path)
    make(directory)
    return directory


def make(directory: Path) -> list[Path]:
    """Create directory (and missing parents); the ones created, outermost first."""
    missing: list[Path] = []
    parent = directory
    while not os.path.lexists(parent) and parent != parent.parent:
        missing.insert(0, parent)
        parent = parent.parent
    shown = display_name(str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LocalFileError(f"{shown} exists and is not a directory") from None
    except OSError as exc:
        raise LocalFileError(f"cannot create the directory {shown}: {_reason(exc)}") from None
    return missing


def remove_if_empty(created: list[Path]) -> None:
    """Undo make() for an attempt that stored nothing (what is not empty stays)."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _why_not_writable(directory: Path) -> str:
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return (exc.strerror or type(exc).__name__).lower()
