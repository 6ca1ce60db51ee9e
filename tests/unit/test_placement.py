"""client/placement.py: where a tree's entries go, and what a refusal says about the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.client.placement import explain, place
from ferry.protocol.manifest import Entry, Plan, plan

TREE = [("d", True), ("d/a", False), ("d/sub", True), ("d/sub/b", False), ("f", False)]


def tree_plan(items: list[tuple[str, bool]] = TREE) -> Plan:
    return plan([Entry(path, is_dir, 0 if is_dir else 1, 0) for path, is_dir in items], False, 8)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_an_empty_directory_takes_each_top_level_entry_whole(out: Path) -> None:
    for merge in (False, True):
        placement = place(out, tree_plan(), overwrite=False, merge=merge)
        assert placement.moves == [("d",), ("f",)] and placement.conflicts == []


def test_without_merge_an_existing_directory_conflicts_even_with_overwrite(out: Path) -> None:
    (out / "d").mkdir()
    for overwrite in (False, True):
        placement = place(out, tree_plan(), overwrite=overwrite, merge=False)
        assert placement.conflicts == ["d/"] and placement.mergeable == 1
        assert placement.moves == [("f",)]
    assert "--merge adds into an existing directory, replacing files there only with " \
        "--overwrite" in explain(placement, overwrite=False)  # fmt: skip
    assert "--overwrite replaces files, never a directory" in explain(placement, overwrite=True)


def test_merge_descends_into_existing_directories_and_places_the_rest(out: Path) -> None:
    (out / "d" / "sub").mkdir(parents=True)
    placement = place(out, tree_plan(), overwrite=False, merge=True)
    assert placement.merged == [("d",), ("d", "sub")]
    assert placement.moves == [("d", "a"), ("d", "sub", "b"), ("f",)]
    assert placement.conflicts == []


def test_merge_refuses_existing_files_unless_overwrite(out: Path) -> None:
    (out / "d" / "sub").mkdir(parents=True)
    (out / "d" / "sub" / "b").write_bytes(b"old")
    placement = place(out, tree_plan(), overwrite=False, merge=True)
    assert placement.conflicts == ["d/sub/b"] and placement.replaceable == 1
    assert explain(placement, overwrite=False) == " (--overwrite replaces existing files)"
    placement = place(out, tree_plan(), overwrite=True, merge=True)
    assert placement.conflicts == [] and placement.replacing == {("d", "sub", "b")}


def test_kinds_that_differ_and_links_always_conflict(out: Path, tmp_path: Path) -> None:
    (out / "d").mkdir()
    (out / "d" / "a").mkdir()  # a directory where a file is offered
    (out / "d" / "sub").write_bytes(b"")  # a file where a directory is offered
    os.symlink(tmp_path, out / "f")  # a link where a file is offered
    placement = place(out, tree_plan(), overwrite=True, merge=True)
    assert placement.conflicts == ["d/a/", "d/sub", "f"]
    assert placement.moves == []
    assert "move those away" in explain(placement, overwrite=True)


def test_a_link_to_a_directory_is_not_merged_into(out: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, out / "d")
    placement = place(out, tree_plan(), overwrite=True, merge=True)
    assert placement.conflicts == ["d"] and placement.merged == []
