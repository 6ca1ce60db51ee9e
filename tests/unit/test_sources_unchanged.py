"""client/sources.py: a listed file is sent only while it is the file that was listed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.client.sources import _open_listed, check_unchanged
from ferry.errors import LocalFileError, SourceChanged


def test_a_top_level_link_is_opened_through_and_an_inner_one_is_a_change(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(real)
    listed = os.stat(link)  # the walk follows a path given on the command line
    with _open_listed(str(link), listed, "link") as file:
        assert file.read() == b"data"
    with pytest.raises(SourceChanged, match="changed after it was listed") as raised:
        _open_listed(str(link), listed, "dir/link")
    assert raised.value.offered == "dir/link"


def test_a_file_replaced_or_rewritten_after_the_walk_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    listed = os.stat(path)
    path.unlink()
    path.write_bytes(b"new")  # another inode, same size
    with pytest.raises(SourceChanged):
        _open_listed(str(path), listed, "d/f")
    path.unlink()
    with pytest.raises(SourceChanged):
        _open_listed(str(path), listed, "d/f")


def test_an_unreadable_file_is_a_local_error_not_a_change(tmp_path: Path) -> None:
    path = tmp_path / "d"
    path.mkdir()
    with pytest.raises(LocalFileError) as raised:
        _open_listed(str(path / "x" / "y"), os.stat(path), "d/x/y")  # ENOTDIR-like: no x
    assert isinstance(raised.value, SourceChanged)  # gone is a change (ENOENT)
    (path / "x").write_bytes(b"")
    with pytest.raises(LocalFileError) as raised:
        _open_listed(str(path / "x" / "y"), os.stat(path), "d/x/y")  # ENOTDIR
    assert not isinstance(raised.value, SourceChanged)


def test_check_unchanged_sees_an_append_and_a_touch(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    with open(path, "rb") as file:
        offered = os.fstat(file.fileno())
        check_unchanged(file, offered, str(path), "f")
        with open(path, "ab") as more:
            more.write(b"6")
        with pytest.raises(SourceChanged, match="changed while it was being sent"):
            check_unchanged(file, offered, str(path), "f")
        os.truncate(path, 5)
        os.utime(path, ns=(offered.st_atime_ns, offered.st_mtime_ns + 1))
        with pytest.raises(SourceChanged):
            check_unchanged(file, offered, str(path), "f")
