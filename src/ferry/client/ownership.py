"""Whether what a receive finds in DIR under one of its own names is its own.

Theory of operation. A receive keeps partials and stagings under names
another user can predict (client/partials.py, client/staging.py: the key is
a hash of the offered names). In a directory others can write to, such as
/tmp (sticky, so nobody can remove or rename what another user made), an
attacker can create that name first: a world-readable file that would
receive our bytes, or a file of theirs that a root receive would rename
into place. So a partial or staging found there is used, or removed when
stale, only if it belongs to this user and is closed to everyone else
(mode 0600 or 0700 as we create them); anything else is left exactly as it
is, never opened for writing and never deleted.

POSIX owners and mode bits only: where the system has neither (Windows, no
os.geteuid), everything counts as ours, as ACLs and a private profile
decide there. Pure functions of a stat result; no I/O.
"""

from __future__ import annotations

import os

from ferry import platform


def owned_by_us(info: os.stat_result) -> bool:
    """Made by this process's (effective) user."""
    return platform.owned_by_us(info)


def owned_privately(info: os.stat_result) -> bool:
    """Made by this user, and neither its group nor others may read, write or enter it
    (Windows: true, its mode bits say nothing of the kind: a file is 0o666 there)."""
    return platform.owned_privately(info)
