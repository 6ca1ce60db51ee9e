"""A source file that changes while it is sent, with the real executables: the transfer
fails on both sides with one line and exit 12, nothing is stored, and the same code then
delivers the file as it is now.

The change is exact: the receiver is frozen (SIGSTOP) once its partial holds some bytes,
so the sender, held back by the relay's budget, cannot have read the file's end yet; the
file is appended to, and the receiver let go.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.errors import EXIT_SOURCE_CHANGED
from ferry_testing.files import files_equal, sparse_file
from ferry_testing.waiting import wait_until

from .harness import assert_one_line_error
from .test_e2e_resume_tree import staged_bytes

SIZE = 64 * 1024 * 1024
RAW = ["--no-compress"]
"""Sparse zeros compress 1,000-fold: uncompressed, the send is still running when the
test changes its source."""
"""Sparse: cheap to read, far more than the relay and the sockets hold."""


def append_while_frozen(receiver_pid: int, arrived: Callable[[], int], path: Path) -> None:
    """Once some bytes arrived, freeze the receiver, append to path, let it go."""
    assert wait_until(lambda: arrived() > 0, 30, interval=0.005), "no byte arrived"
    os.kill(receiver_pid, signal.SIGSTOP)
    try:
        assert arrived() < SIZE // 2, "the transfer was too far along to test anything"
        with open(path, "ab") as f:
            f.write(b"appended while it was being sent\n")
    finally:
        os.kill(receiver_pid, signal.SIGCONT)


def partial_bytes(outdir: Path) -> int:
    total = 0
    for part in outdir.glob(".ferry-*.part"):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            pass
    return total


@pytest.mark.timeout(120)
def test_a_file_appended_to_mid_send_is_not_stored_and_the_code_sends_the_new_one(
    relay, start_send, start_receive, run_receive, tmp_path
):
    src = sparse_file(tmp_path / "src" / "growing.bin", SIZE)
    sender = start_send(relay, src, extra_args=RAW)
    out = tmp_path / "out"
    receiver = start_receive(relay, sender.code, out)
    append_while_frozen(receiver.proc.pid, lambda: partial_bytes(out), src)
    assert receiver.wait(60) == EXIT_SOURCE_CHANGED, receiver.stderr()
    assert_one_line_error(receiver.stderr(), "receive", "growing.bin changed", "nothing")
    assert not (out / "growing.bin").exists()
    assert partial_bytes(out) == 0
    assert wait_until(lambda: "still waiting" in sender.stderr(), 10), sender.stderr()
    assert "growing.bin changed while it was being sent" in sender.stderr()
    assert sender.running()
    # The same code: the file as it is now, whole.
    again = run_receive(relay, sender.code, out, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / "growing.bin").stat().st_size == SIZE + 33
    assert files_equal(out / "growing.bin", src)


@pytest.mark.timeout(120)
def test_a_file_of_a_tree_changed_mid_send_stores_nothing_and_the_retry_completes(
    relay, start_send, start_receive, run_receive, tmp_path
):
    tree = tmp_path / "tree"
    (tree / "a-small").parent.mkdir(parents=True)
    (tree / "a-small").write_bytes(b"small\n")
    big = sparse_file(tree / "b-big", SIZE)
    sender = start_send(relay, tree, extra_args=RAW)
    out = tmp_path / "out"
    receiver = start_receive(relay, sender.code, out)
    append_while_frozen(receiver.proc.pid, lambda: staged_bytes(out), big)
    assert receiver.wait(60) == EXIT_SOURCE_CHANGED, receiver.stderr()
    assert_one_line_error(receiver.stderr(), "receive", "tree/b-big changed", "nothing")
    assert not (out / "tree").exists()
    assert wait_until(lambda: "still waiting" in sender.stderr(), 10), sender.stderr()
    again = run_receive(relay, sender.code, out, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / "tree" / "a-small").read_bytes() == b"small\n"
    assert files_equal(out / "tree" / "b-big", big)
    assert sorted(p.name for p in out.iterdir()) == ["tree"]
