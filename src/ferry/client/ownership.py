"""Whose a receive's leftovers are, and the modes it gives what it makes.

Theory of operation. A receive's partials and stagings have names another
user can predict, and in a DIR others can write to (/tmp) that user can
create one first: only what is this user's and closed to others is used
again, or removed when stale (client/partials.py, client/staging.py).
What the receive makes gets the usual mode less the umask. Where files
have no POSIX owner and modes (Windows: platform.effective_user() is None),
every file counts as ours and private: ACLs decide there, and a user's
profile is private by default.
"""

from __future__ import annotations

import os

from ferry import platform


def umasked(mode: int) -> int:
    """mode less the process's umask (read without a race-free call: there is none)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def owned_by_us(info: os.stat_result) -> bool:
    """Made by this process's (effective) user; true where files have no owner."""
    user = platform.effective_user()
    return user is None or info.st_uid == user


def owned_privately(info: os.stat_result) -> bool:
    """Made by this user and closed to others (no group or other mode bits); true where
    files have no POSIX owner and modes (module docstring)."""
    user = platform.effective_user()
    return user is None or (info.st_uid == user and not info.st_mode & 0o077)
