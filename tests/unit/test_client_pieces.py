"""Small pieces of the clients: the sender's tree walk, the text shown on a terminal, the
receiver's reading of a line from stdin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferry.client.output import MAX_LINE, read_answer, read_line
from ferry.client.to_stdout import _for_terminal
from ferry.client.tree import walk
from ferry.errors import LocalFileError


def test_text_for_a_terminal_shows_escape_and_control_characters_as_question_marks() -> None:
    text = "ok\tnew\nline \x1b[2J bell\x07 \u202eevil\n".encode()
    assert _for_terminal(text) == b"ok\tnew\nline ?[2J bell? ?evil\n"


def test_text_for_a_terminal_replaces_invalid_utf8() -> None:
    assert _for_terminal(b"caf\xe9\n") == "caf\ufffd\n".encode()


@pytest.mark.parametrize("source", ["pipe", "file"])
async def test_read_answer_and_read_line_take_one_line_and_leave_the_rest(
    tmp_path: Path, source: str
) -> None:
    data = b"1-code-words\ny\nrest"
    if source == "pipe":
        fd, writer = os.pipe()
        os.write(writer, data)
        os.close(writer)
    else:  # the event loop cannot watch a regular file: read directly
        (tmp_path / "answers").write_bytes(data)
        fd = os.open(tmp_path / "answers", os.O_RDONLY)
    try:
        assert read_line(fd) == b"1-code-words\n"
        assert await read_answer(fd) == b"y\n"
        assert await read_answer(fd) == b"rest"  # end of input ends a line too
        assert await read_answer(fd) == b""
    finally:
        os.close(fd)


async def test_read_answer_stops_at_max_line_and_on_dev_null() -> None:
    fd, writer = os.pipe()
    os.write(writer, b"y" * (MAX_LINE + 10))
    try:
        assert await read_answer(fd) == b"y" * MAX_LINE
    finally:
        os.close(fd)
        os.close(writer)
    with open(os.devnull, "rb") as null:
        assert await read_answer(null.fileno()) == b""


def test_walk_lists_a_directory_before_its_contents_sorted_and_skips_special_files(
    tmp_path: Path,
) -> None:
    top = tmp_path / "top"
    (top / "b" / "c").mkdir(parents=True)
    (top / "a.txt").write_bytes(b"aa")
    (top / "b" / "c" / "d").write_bytes(b"")
    os.symlink("a.txt", top / "link")
    os.mkfifo(top / "fifo")
    tree = walk([str(top)], max_entries=100, max_depth=8)
    assert [e.path for e in tree.entries] == ["top", "top/a.txt", "top/b", "top/b/c", "top/b/c/d"]
    assert [e.size for e in tree.entries] == [0, 2, 0, 0, 0]
    assert sorted(Path(p).name for p in tree.skipped) == ["fifo", "link"]


def test_walk_enforces_the_entry_and_depth_caps_before_anything_is_sent(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    with pytest.raises(LocalFileError, match="more than 2"):
        walk([str(tmp_path / "a")], max_entries=2, max_depth=8)
    with pytest.raises(LocalFileError, match="deeper than 2"):
        walk([str(tmp_path / "a")], max_entries=100, max_depth=2)


def test_a_tree_whose_manifest_a_receiver_would_not_read_is_not_offered(tmp_path: Path) -> None:
    from ferry.client.sources import TreeSource

    top = tmp_path / "a"
    top.mkdir()
    for i in range(20):
        (top / f"{'long-name-' * 10}{i}").write_bytes(b"")
    tree = walk([str(top)], max_entries=100, max_depth=8)
    assert TreeSource(tree, 1024).offer().entries == 21
    with pytest.raises(LocalFileError, match="more than a receiver takes"):
        TreeSource(tree, 1024, max_manifest_bytes=1000)


def test_walk_refuses_two_paths_with_the_same_base_name(tmp_path: Path) -> None:
    for parent in ("x", "y"):
        (tmp_path / parent).mkdir()
        (tmp_path / parent / "same").write_bytes(b"")
    with pytest.raises(LocalFileError, match="two of the paths"):
        walk([str(tmp_path / "x" / "same"), str(tmp_path / "y" / "same")], 100, 8)


def test_hash_prefix_hashes_the_first_bytes_and_feeds_the_proof_the_same(tmp_path: Path) -> None:
    import errno
    import hashlib
    import hmac

    from ferry.client.fileio import HASH_BLOCK, hash_prefix, write_error
    from ferry.errors import NoSpace

    data = os.urandom(HASH_BLOCK + 10)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        proof = hmac.new(b"k", digestmod=hashlib.sha256)
        digest, read = hash_prefix(fd, HASH_BLOCK + 5, proof)
        assert read == HASH_BLOCK + 5
        assert digest.hexdigest() == hashlib.sha256(data[: HASH_BLOCK + 5]).hexdigest()
        assert proof.hexdigest() == hmac.new(b"k", data[: HASH_BLOCK + 5], "sha256").hexdigest()
        _, read = hash_prefix(fd, 100, hmac.new(b"k", digestmod=hashlib.sha256))
        assert read == 5  # the file ended first: the caller decides what that means
    finally:
        os.close(fd)
    assert isinstance(write_error(OSError(errno.ENOSPC, "No space left"), "a.bin"), NoSpace)
    assert not isinstance(write_error(OSError(errno.EIO, "I/O error"), "a.bin"), NoSpace)
