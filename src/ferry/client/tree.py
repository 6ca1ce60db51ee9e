"""The sender's side of a tree: walk the paths given, list what will be sent.

Rules (docs/PROTOCOL.md, "Trees"):
- each path given on the command line becomes one top-level entry under its
  base name; a symlink given there is followed (as `cp -H` does), so
  `./send R link-to-dir` sends the directory;
- inside a directory, symlinks, devices, FIFOs and sockets are neither
  followed nor sent: they are listed in `skipped` for the sender's stderr;
- the walk is depth first, each directory's names sorted, a directory before
  what it holds (the manifest order the receiver checks); only metadata is
  read here, file contents are read when they are sent;
- more than max_entries entries, or a path deeper than max_depth, is an
  error before the relay is contacted.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ferry.errors import LocalFileError
from ferry.names import display_name
from ferry.protocol.manifest import Entry


@dataclass
class Tree:
    entries: list[Entry] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """The local path of each entry (same order)."""
    stats: list[os.stat_result] = field(default_factory=list)
    """What each entry was when listed (same order): a file is sent only if it still is."""
    skipped: list[str] = field(default_factory=list)
    """Local paths not sent (symlinks, devices, FIFOs, sockets), for stderr."""

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.entries)

    @property
    def files(self) -> int:
        return sum(not entry.is_dir for entry in self.entries)


def wire_name(name: str) -> str:
    """A local name as the manifest spells it: undecodable bytes become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def walk(paths: list[str], max_entries: int, max_depth: int) -> Tree:
    tree = Tree()
    top: set[str] = set()
    for path in paths:
        name = wire_name(os.path.basename(os.path.normpath(os.path.abspath(path))))
        if name in top:
            raise LocalFileError(f"two of the paths given are named {display_name(name)!r}")
        top.add(name)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise LocalFileError(f"no such file: {path}") from None
        except OSError as exc:
            raise LocalFileError(f"cannot read {path}: {exc.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            _add(tree, name, path, info, max_entries)
            _walk_dir(tree, name, path, 1, max_entries, max_depth)
        elif stat.S_ISREG(info.st_mode):
            _add(tree, name, path, info, max_entries)
        else:
            raise LocalFileError(f"{path} is not a regular file or a directory")
    return tree


def _add(tree: Tree, rel: str, path: str, info: os.stat_result, max_entries: int) -> None:
    if len(tree.entries) >= max_entries:
        raise LocalFileError(f"more than {max_entries} files and directories (FERRY_MAX_ENTRIES)")
    is_dir = stat.S_ISDIR(info.st_mode)
    tree.entries.append(
        Entry(
            path=rel,
            is_dir=is_dir,
            size=0 if is_dir else info.st_size,
            mtime_ns=max(info.st_mtime_ns, 0),
            executable=not is_dir and bool(info.st_mode & stat.S_IXUSR),
        )
    )
    tree.sources.append(path)
    tree.stats.append(info)


def _walk_dir(
    tree: Tree, rel: str, path: str, depth: int, max_entries: int, max_depth: int
) -> None:
    try:
        with os.scandir(path) as listing:
            children = sorted(listing, key=lambda child: child.name)
    except OSError as exc:
        raise LocalFileError(f"cannot read the directory {path}: {exc.strerror}") from None
    for child in children:
        child_rel = f"{rel}/{wire_name(child.name)}"
        try:
            info = child.stat(follow_symlinks=False)
        except OSError as exc:
            raise LocalFileError(f"cannot read {child.path}: {exc.strerror}") from None
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            tree.skipped.append(child.path)
            continue
        if depth + 1 > max_depth:
            raise LocalFileError(
                f"{child.path} is deeper than {max_depth} levels (FERRY_MAX_DEPTH)"
            )
        _add(tree, child_rel, child.path, info, max_entries)
        if stat.S_ISDIR(info.st_mode):
            _walk_dir(tree, child_rel, child.path, depth + 1, max_entries, max_depth)


def describe_skipped(skipped: list[str]) -> list[str]:
    """One stderr line per path not sent."""
    return [f"not sent (not a regular file or directory): {display_name(p)}" for p in skipped]
