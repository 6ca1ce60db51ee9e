"""Where a received tree goes in the output directory: beside what is there, or into it.

Rules (README, "receive"):
- by default each top-level entry is placed whole, under a name that does
  not exist yet; --overwrite lets a file replace an existing regular file,
  never a directory or a link;
- with --merge, a top-level directory whose name exists as a directory
  (not a link to one) is merged into, level by level: an entry whose name
  is free is placed whole (a directory with everything in it), a directory
  that exists as a directory is descended into, and an existing regular
  file is replaced by a file only with --overwrite;
- anything else is a conflict: a file where a directory is offered or the
  reverse, a link, a device. Every conflict is found here, before the
  receiver answers, so the refusal names them all and no data moves.

The result lists the entries to rename out of the staging directory (in
manifest order, parents first) and which of them replace a file; the
staging directory does the renames, all or none (client/staging.py).
Only metadata is read here (lstat; links are never followed).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ferry.protocol.manifest import Plan


@dataclass
class Placement:
    moves: list[tuple[str, ...]] = field(default_factory=list)
    """Staged entries to rename into place whole, parents before children."""
    replacing: set[tuple[str, ...]] = field(default_factory=set)
    """The moves whose name holds a regular file now, which they replace (--overwrite)."""
    merged: list[tuple[str, ...]] = field(default_factory=list)
    """Existing directories that entries go into (--merge)."""
    conflicts: list[str] = field(default_factory=list)
    """Paths (relative, "/"-separated, a directory with a trailing "/") that block."""
    mergeable: int = 0
    """Conflicts that are directories --merge would add into."""
    replaceable: int = 0
    """Conflicts that are regular files --overwrite would replace."""


def place(directory: Path, plan: Plan, overwrite: bool, merge: bool) -> Placement:
    """Where each entry of the plan goes in directory, and what stands in the way."""
    result = Placement()
    open_dirs: set[tuple[str, ...]] = {()}  # the output directory, and those merged into
    for parts, is_dir in zip(plan.paths, plan.is_dir, strict=True):
        if parts[:-1] not in open_dirs:
            continue  # inside an entry placed whole, or one that conflicts
        try:
            info = os.lstat(directory.joinpath(*parts))
        except FileNotFoundError:
            result.moves.append(parts)
            continue
        shown = "/".join(parts)
        if stat.S_ISDIR(info.st_mode) and is_dir:
            if merge:
                open_dirs.add(parts)
                result.merged.append(parts)
                continue
            result.mergeable += 1
        elif stat.S_ISREG(info.st_mode) and not is_dir:
            if overwrite:
                result.moves.append(parts)
                result.replacing.add(parts)
                continue
            result.replaceable += 1
        result.conflicts.append(shown + "/" if stat.S_ISDIR(info.st_mode) else shown)
    return result


def explain(placement: Placement, overwrite: bool) -> str:
    """What the user can do about the conflicts, in parentheses."""
    hints = []
    if placement.mergeable:
        first = "--overwrite replaces files, never a directory: " if overwrite else ""
        then = "" if overwrite else ", replacing files there only with --overwrite"
        hints.append(f"{first}--merge adds into an existing directory{then}")
    if placement.replaceable:
        hints.append("--overwrite replaces existing files")
    if len(placement.conflicts) > placement.mergeable + placement.replaceable:
        hints.append(
            "a file never replaces a directory or a link, nor a directory a file: move those away"
        )
    return f" ({'; '.join(hints)})"
