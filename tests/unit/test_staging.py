"""Staging.install (client/staging.py): all or none, with --overwrite and --merge too.

Failures are injected into the moves themselves (staging._move, which every rename of
install and its undo goes through), so the tests hold whatever rename call it uses."""

from __future__ import annotations

import errno
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.client import staging as staging_module
from ferry.client.placement import Placement, place
from ferry.client.staging import STAGING_PREFIX, Staging
from ferry.errors import LocalFileError

TOP_LEVEL = ["a.txt", "b.txt", "c.txt", "d"]
"""Staged in this order: two files that replace old ones, a new file, a new directory."""
PLACED = Placement(moves=[(name,) for name in TOP_LEVEL], replacing={("a.txt",), ("b.txt",)})
"""Where they go with --overwrite, as the checks before the transfer found it."""


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under root: relative path -> (kind, inode, content)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            kind = "dir" if path.is_dir() else "file"
            content = path.read_bytes() if kind == "file" else b""
            found[str(path.relative_to(root))] = (kind, path.lstat().st_ino, content)
    return found


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output directory holding old a.txt and b.txt, and a file nobody sends."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"old a")
    (out / "b.txt").write_bytes(b"old b")
    (out / "keep").write_bytes(b"keep")
    return out


def staged(out: Path) -> Staging:
    staging = Staging(out)
    for name in TOP_LEVEL[:3]:
        (staging.path / name).write_bytes(b"new " + name.encode())
    (staging.path / "d").mkdir()
    (staging.path / "d" / "inner").write_bytes(b"inner")
    return staging


def fail_renames(
    monkeypatch: pytest.MonkeyPatch, path: Path, into: bool = False
) -> list[tuple[str, str]]:
    """The first rename from or to path fails with EIO (into: every rename to path); the
    failed (from, to) pairs."""
    failed: list[tuple[str, str]] = []

    def failing(real: Callable[..., Any]) -> Callable[..., Any]:
        def rename(source_root: Path, source_parts: tuple[str, ...], target_root: Path,
                   target_parts: tuple[str, ...]) -> Any:  # fmt: skip
            source = source_root.joinpath(*source_parts)
            target = target_root.joinpath(*target_parts)
            if into:
                fails = Path(target) == path
            else:
                fails = not failed and path in (Path(source), Path(target))
            if fails:
                failed.append((str(source), str(target)))
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
            return real(source_root, source_parts, target_root, target_parts)

        return rename

    monkeypatch.setattr(staging_module, "_move", failing(staging_module._move))
    return failed


def test_install_with_overwrite_replaces_files_adds_the_rest_and_leaves_nothing_aside(
    out: Path,
) -> None:
    staging = staged(out)
    staging.install(PLACED)
    assert list(staging.path.iterdir()) == [], "the staging directory must be empty now"
    staging.remove()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt", "d", "keep"]
    assert (out / "a.txt").read_bytes() == b"new a.txt"
    assert (out / "b.txt").read_bytes() == b"new b.txt"
    assert (out / "d" / "inner").read_bytes() == b"inner"


@pytest.mark.parametrize("failing", TOP_LEVEL)
def test_install_with_overwrite_that_fails_at_any_entry_leaves_the_directory_as_it_was(
    out: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    before = snapshot(out)
    staging = staged(out)
    failed = fail_renames(monkeypatch, out / failing)
    with pytest.raises(LocalFileError, match="cannot store the files"):
        staging.install(PLACED)
    assert failed, "no rename failed"
    staging.remove()
    assert snapshot(out) == before  # the very same old files (inodes), nothing new, no staging


def test_install_with_overwrite_meeting_a_directory_that_appeared_leaves_the_directory_as_it_was(
    out: Path,
) -> None:
    (out / "c.txt").mkdir()  # after the checks, before the renames: never replaced
    (out / "c.txt" / "theirs").write_bytes(b"theirs")
    before = snapshot(out)
    staging = staged(out)
    with pytest.raises(LocalFileError, match="appeared meanwhile; nothing was stored"):
        staging.install(PLACED)
    staging.remove()
    assert snapshot(out) == before


def test_install_keeps_a_replaced_file_it_cannot_put_back_and_says_where(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = staged(out)
    # The new b.txt cannot go in, and then the old one cannot go back.
    fail_renames(monkeypatch, out / "b.txt", into=True)
    with pytest.raises(LocalFileError, match="could not be put back are kept") as raised:
        staging.install(PLACED)
    staging.remove()
    kept = list(staging.path.glob(f"{STAGING_PREFIX}replaced-*/b.txt"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"old b"
    assert str(kept[0]) in raised.value.message
    assert (out / "a.txt").read_bytes() == b"old a"


# --- --merge: entries go into directories that exist ------------------------------------------

MERGED_PLAN = [("d", True), ("d/new", False), ("d/old", False), ("d/sub", True),
               ("d/sub/deep", False), ("top", False)]  # fmt: skip
"""A tree whose d/ exists in the output directory (with d/old, d/sub/ and d/mine there)."""


@pytest.fixture
def merge_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "d" / "sub").mkdir(parents=True)
    (out / "d" / "old").write_bytes(b"old")
    (out / "d" / "mine").write_bytes(b"mine")
    return out


def merge_staged(out: Path) -> tuple[Staging, Placement]:
    from ferry.protocol.manifest import Entry, plan

    entries = [Entry(path, is_dir, 0 if is_dir else 1, 0) for path, is_dir in MERGED_PLAN]
    tree = plan(entries, False, 8)
    staging = Staging(out)
    staging.make_dirs(tree)
    for parts, is_dir in zip(tree.paths, tree.is_dir, strict=True):
        if not is_dir:
            staging.path.joinpath(*parts).write_bytes(b"new " + "/".join(parts).encode())
    return staging, place(out, tree, overwrite=True, merge=True)


def test_merge_places_new_entries_inside_existing_directories_and_replaces_files(
    merge_out: Path,
) -> None:
    staging, placement = merge_staged(merge_out)
    assert placement.moves == [("d", "new"), ("d", "old"), ("d", "sub", "deep"), ("top",)]
    assert placement.replacing == {("d", "old")} and placement.conflicts == []
    staging.install(placement)
    staging.remove()
    assert sorted(str(p.relative_to(merge_out)) for p in merge_out.rglob("*")) == [
        "d", "d/mine", "d/new", "d/old", "d/sub", "d/sub/deep", "top",
    ]  # fmt: skip
    assert (merge_out / "d" / "old").read_bytes() == b"new d/old"
    assert (merge_out / "d" / "mine").read_bytes() == b"mine"
    assert (merge_out / "d" / "sub" / "deep").read_bytes() == b"new d/sub/deep"


@pytest.mark.parametrize("failing", ["d/new", "d/old", "d/sub/deep", "top"])
def test_merge_that_fails_at_any_entry_leaves_the_directory_as_it_was(
    merge_out: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    before = snapshot(merge_out)
    staging, placement = merge_staged(merge_out)
    failed = fail_renames(monkeypatch, merge_out / failing)
    with pytest.raises(LocalFileError, match="cannot store the files"):
        staging.install(placement)
    assert failed, "no rename failed"
    staging.remove()
    assert snapshot(merge_out) == before


def test_merge_never_renames_through_a_directory_swapped_for_a_link(
    merge_out: Path, tmp_path: Path
) -> None:
    staging, placement = merge_staged(merge_out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(merge_out / "d" / "sub", tmp_path / "moved-sub")  # after the checks
    os.symlink(elsewhere, merge_out / "d" / "sub")
    with pytest.raises(LocalFileError, match="cannot store the files"):
        staging.install(placement)
    staging.remove()
    assert list(elsewhere.iterdir()) == []
    assert not (merge_out / "d" / "new").exists() and not (merge_out / "top").exists()
    assert (merge_out / "d" / "old").read_bytes() == b"old"


# --- writing a tree: early flushes, then the seal --------------------------------------------


def test_many_small_files_start_flushing_early_and_the_seal_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.protocol.manifest import Entry, plan

    flushed: list[Path] = []

    def syncfs(path: Path) -> bool:
        flushed.append(path)
        return True

    monkeypatch.setattr(staging_module, "EARLY_SYNC_EVERY", 3)
    monkeypatch.setattr(staging_module, "_syncfs", syncfs)
    entries = [Entry("t", True, 0, 0)] + [Entry(f"t/f{i}", False, 1, 7) for i in range(7)]
    tree = plan(entries, False, 8)
    staging = Staging(tmp_path)
    staging.prepare(tree, entries, _no_proof)
    for index in range(1, len(entries)):
        fd = staging.open_file(tree.paths[index], False)
        os.write(fd, b"x")
        staging.finish_file(fd, entries[index], tree.paths[index])
    staging.seal(tree, tuple(entries))
    assert staging._early is not None and not staging._early.is_alive()
    assert (
        2 <= len(flushed) <= 3
    )  # at the 3rd and 6th file (the 2nd if the 1st is over), then the seal
    assert flushed[-1] == staging.path
    assert sorted(p.name for p in (staging.path / "t").iterdir()) == [f"f{i}" for i in range(7)]
    staging.close(keep=False)


def _no_proof(index: int, kept: int) -> hmac.HMAC:
    raise AssertionError("a fresh staging keeps nothing to prove")
