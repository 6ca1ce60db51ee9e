"""The manifest of a tree transfer: what it holds, on the wire and as a plan to store it.

Theory of operation. A tree OFFER (messages.KIND_TREE, manifest version 1)
announces `entries` entries in `records` MANIFEST records, which the sender
writes right behind the OFFER. Each MANIFEST record is a sealed JSON object

    {"entries": [{"path": "photos/2024/a.jpg", "size": 1234,
                  "mtime": 1700000000000000000, "exec": false},
                 {"path": "photos/empty", "dir": true, "mtime": ...}, ...]}

`path` is relative, "/"-separated; `mtime` is nanoseconds since the epoch;
`exec` says whether the owner may execute the file. The DATA records that
follow the ANSWER carry every file's bytes, in manifest order, back to back
(a record may hold the end of one file and the start of the next): file
boundaries come from the sizes, so 10,000 small files cost a few records,
not 10,000, and a large file is exactly the single-file data path.

The receiver trusts nothing here. decode_record() checks the shape (a
RemoteProtocolError otherwise); plan() decides whether the tree can be
stored: every path component goes through names.safe_name (the rules for
a single file's name), a directory must be listed before anything inside
it, nothing may be listed twice or collide with another entry (after
case folding, where the receiving filesystem ignores case), and a path
may be at most `max_depth` components deep. The session (session.py)
counts the entries against the OFFER and the receiver's cap. Everything
here is pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ferry.errors import RemoteProtocolError, TooCostly, UnsafeName
from ferry.names import display_name, safe_name
from ferry.protocol.messages import MAX_OFFERED_NAME, MAX_SIZE
from ferry.protocol.records import MAX_MESSAGE_PAYLOAD

MAX_PATH: Final = 4 * MAX_OFFERED_NAME
"""Longest path an entry may carry, in characters (before sanitising)."""
MAX_MTIME: Final = (1 << 63) - 1
RECORD_BUDGET: Final = MAX_MESSAGE_PAYLOAD - 1024
"""Bytes of JSON a sender puts in one MANIFEST record (room for the framing)."""
_SHOWN_PROBLEMS: Final = 5


@dataclass(frozen=True)
class Entry:
    path: str
    """Relative, "/"-separated, as the sender spelled it."""
    is_dir: bool
    size: int
    """Bytes (0 for a directory)."""
    mtime_ns: int
    executable: bool = False


@dataclass(frozen=True)
class Plan:
    """Where each entry goes, relative to the output directory (same order)."""

    paths: list[tuple[str, ...]]
    top_level: list[str]
    """The distinct first components, in manifest order."""
    is_dir: list[bool]


def _entry_json(entry: Entry) -> dict[str, Any]:
    if entry.is_dir:
        return {"path": entry.path, "dir": True, "mtime": entry.mtime_ns}
    return {"path": entry.path, "size": entry.size, "mtime": entry.mtime_ns,
            "exec": entry.executable}  # fmt: skip


def encode_records(entries: Iterable[Entry]) -> list[bytes]:
    """MANIFEST record bodies, each within RECORD_BUDGET bytes, at least one entry each."""
    bodies: list[bytes] = []
    batch: list[bytes] = []
    used = 0
    for entry in entries:
        text = json.dumps(_entry_json(entry), ensure_ascii=False, separators=(",", ":"))
        item = text.encode("utf-8", "replace")
        if batch and used + len(item) + 1 > RECORD_BUDGET:
            bodies.append(_wrap(batch))
            batch, used = [], 0
        batch.append(item)
        used += len(item) + 1
    if batch:
        bodies.append(_wrap(batch))
    return bodies


def _wrap(items: list[bytes]) -> bytes:
    return b'{"entries":[' + b",".join(items) + b"]}"


def decode_record(body: bytes) -> list[Entry]:
    """The entries of one MANIFEST record; RemoteProtocolError if it is malformed."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RemoteProtocolError("a manifest record is not valid JSON") from None
    items = obj.get("entries") if isinstance(obj, dict) else None
    if not isinstance(items, list) or not items:
        raise RemoteProtocolError("a manifest record has no entries")
    return [_decode_entry(item) for item in items]


def _decode_entry(item: Any) -> Entry:
    if not isinstance(item, dict):
        raise RemoteProtocolError("a manifest entry is not a JSON object")
    path = item.get("path")
    if not isinstance(path, str) or len(path) > MAX_PATH:
        raise RemoteProtocolError("a manifest entry has a missing or over-long path")
    is_dir = item.get("dir", False)
    executable = item.get("exec", False)
    if not isinstance(is_dir, bool) or not isinstance(executable, bool):
        raise RemoteProtocolError("a manifest entry has a malformed flag")
    size = _number(item, "size", MAX_SIZE, 0)
    if is_dir and size:
        raise RemoteProtocolError("a manifest directory has a size")
    return Entry(path, is_dir, size, _number(item, "mtime", MAX_MTIME, 0), executable)


def _number(item: dict[str, Any], key: str, most: int, default: int) -> int:
    value = item.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise RemoteProtocolError(f"a manifest entry has a malformed {key!r}")
    return value


CHECK_EVERY: Final = 1024
"""Entries plan() handles between two calls of out_of_time()."""


def plan(
    entries: list[Entry],
    case_insensitive: bool,
    max_depth: int,
    out_of_time: Callable[[], bool] | None = None,
) -> Plan:
    """Safe relative paths for every entry, or UnsafeName listing what is wrong.

    Each component is reduced by safe_name exactly as a single file's name
    is; a component it refuses ("..", "", a name of dots) refuses the whole
    tree. Collisions are judged on the reduced names, case-folded when the
    receiving filesystem ignores case.

    The cost is bounded whatever the sender wrote: a path deeper than
    max_depth is refused before its components are reduced, the check stops
    at the first few problems (the tree is refused anyway), and out_of_time()
    is asked every CHECK_EVERY entries: True raises TooCostly.
    """
    problems: list[str] = []
    paths: list[tuple[str, ...]] = []
    kinds: dict[tuple[str, ...], bool] = {}  # key -> is_dir
    top_level: dict[str, None] = {}
    dirs: dict[str, tuple[str, ...]] = {}  # a listed directory's path -> its reduced parts
    spelled: dict[tuple[str, ...], tuple[str, ...]] = {}  # key -> the first entry's parts
    for index, entry in enumerate(entries):
        if index % CHECK_EVERY == CHECK_EVERY - 1 and out_of_time is not None and out_of_time():
            raise TooCostly()
        if len(problems) > _SHOWN_PROBLEMS:
            break  # refused anyway: the rest need not be checked
        if entry.path.count("/") >= max_depth:  # more components than max_depth
            problems.append(f'"{_preview(entry.path)}" is deeper than {max_depth} levels')
            paths.append(())
            continue
        head, _, last = entry.path.rpartition("/")
        parent = dirs.get(head) if "/" in entry.path else ()
        if parent is None:  # not inside a listed directory: reduce every component
            parts = _components(entry.path)
        else:  # the parent was reduced already: only the last component is new
            name = _components(last)
            parts = None if name is None else parent + name
        if parts is None:
            problems.append(f'unusable path "{_preview(entry.path)}"')
            paths.append(())
            continue
        if len(parts) > max_depth:
            problems.append(f'"{_preview(entry.path)}" is deeper than {max_depth} levels')
        key = tuple(part.casefold() for part in parts) if case_insensitive else parts
        # Where case is ignored, "A/x" lands in a listed "a": spell its parents
        # as listed, so the top-level names (and what is checked and renamed
        # into DIR) are each one entry's spelling.
        parts = spelled.get(key[:-1], parts[:-1]) + parts[-1:]
        if key in kinds:
            problems.append(f'"{_preview(entry.path)}" collides with another entry')
        elif len(parts) > 1 and kinds.get(key[:-1]) is not True:
            problems.append(f'"{_preview(entry.path)}" is not inside a listed directory')
        kinds.setdefault(key, entry.is_dir)
        spelled.setdefault(key, parts)
        top_level.setdefault(parts[0], None)
        paths.append(parts)
        if entry.is_dir:
            dirs.setdefault(entry.path, parts)
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = " (and more)" if len(problems) > _SHOWN_PROBLEMS else ""
        raise UnsafeName(f"the sender offered a tree that cannot be stored safely: {shown}{more}")
    return Plan(paths, list(top_level), [entry.is_dir for entry in entries])


def _components(path: str) -> tuple[str, ...] | None:
    """The reduced components of a relative path; None if any is unusable or empty."""
    raw = path.split("/")
    parts: list[str] = []
    for part in raw:
        if not part:
            return None  # absolute ("/x"), trailing ("x/") or doubled ("a//b") separator
        try:
            parts.append(safe_name(part))
        except UnsafeName:
            return None
    return tuple(parts)


def _preview(path: str) -> str:
    return display_name(path[:80] + ("..." if len(path) > 80 else ""))


def file_sizes(entries: Iterable[Entry]) -> Iterator[tuple[int, int]]:
    """(entry index, size) of every file, in manifest order: the order of the DATA."""
    for index, entry in enumerate(entries):
        if not entry.is_dir:
            yield index, entry.size
