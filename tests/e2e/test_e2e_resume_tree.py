"""Resume of a directory and of stdin with the real executables: kill -9 mid-way, finish later.

The cut is exact: the sender runs in short bursts (harness.run_in_bursts) until the
receiver's staging holds a good share, stays frozen (SIGSTOP) while the receiver is
killed, then is let go. It cannot run past the check, so tens of MiB are enough. The
relay's log line for the second pipe says how many bytes went through it
(bytes_to_receiver).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.client.tree import walk
from ferry.errors import EXIT_INTEGRITY, EXIT_LOCAL_FILE, EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER
from ferry.protocol import manifest, messages
from ferry.protocol.records import RecordType
from ferry.units import size
from ferry_testing.files import files_equal, sparse_file
from ferry_testing.procs import Relay, clean_env

from .fakes import FakeSender, Prove, RawRecord
from .harness import (
    Registry,
    Sender,
    _unique,
    assert_one_line_error,
    invocation,
    run_in_bursts,
)
from .test_e2e_anything import listing
from .test_e2e_hostile_sender import run_against_fake
from .test_e2e_resume import RAW, pipe_bytes

MIB = 1024 * 1024


def ferry_entries(outdir: Path) -> list[str]:
    return sorted(p.name for p in outdir.iterdir() if p.name.startswith(".ferry-"))


def staged_bytes(outdir: Path) -> int:
    total = 0
    for staging in outdir.glob(".ferry-resume-*"):
        for dirpath, _, filenames in os.walk(staging):
            for name in filenames:
                try:
                    total += (Path(dirpath) / name).stat().st_size
                except FileNotFoundError:
                    pass
    return total


A_SIZE = 16 * MIB
B_SIZE = 48 * MIB
CUT_AT = A_SIZE + 8 * MIB
"""Staged bytes at the cut: a.bin whole and part of b.bin, with more of b.bin left
than can be in flight (socket buffers and the relay's 4 MiB)."""


def make_tree(root: Path) -> Path:
    """photos/: a.bin (16 MiB), b.bin (48 MiB), small files, an empty dir, an exec bit."""
    top = root / "photos"
    sparse_file(top / "a.bin", A_SIZE)
    sparse_file(top / "b.bin", B_SIZE)
    (top / "notes").mkdir()
    (top / "empty").mkdir()
    for i in range(20):
        (top / "notes" / f"n{i:02}.txt").write_bytes(os.urandom(100 + i))
    (top / "notes" / "run.sh").write_bytes(b"#!/bin/sh\necho ok\n")
    os.chmod(top / "notes" / "run.sh", 0o755)
    return top


def tree_size(top: Path) -> int:
    return sum(p.stat().st_size for p in top.rglob("*") if p.is_file())


def cut_tree_transfer(
    relay: Relay, start_send: Callable[..., Sender], start_receive: Callable[..., object],
    top: Path, outdir: Path, at_least: int,
) -> int:  # fmt: skip
    """Send top, kill -9 the receiver once `at_least` bytes are staged; the bytes kept.

    Uncompressed: what can be in flight past the cut is then a few MiB of the file."""
    sender = start_send(relay, top, extra_args=RAW)
    receiver = start_receive(relay, sender.code, outdir)
    try:
        run_in_bursts(sender.pid, lambda: staged_bytes(outdir) >= at_least)
        receiver.proc.kill()  # type: ignore[attr-defined]
        receiver.wait(30)  # type: ignore[attr-defined]
    finally:
        os.kill(sender.pid, signal.SIGCONT)
    assert sender.wait(60) == EXIT_PEER_GONE, sender.stderr()
    kept = staged_bytes(outdir)
    assert 0 < kept < tree_size(top)
    [staging] = outdir.glob(".ferry-resume-*.tree")
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
    assert not (outdir / "photos").exists()
    return kept


@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_a_tree_cut_by_kill_9_resumes_per_file_and_within_the_cut_file(
    relay, start_send, start_receive, run_receive, tmp_path
):
    top = make_tree(tmp_path / "src")
    outdir = tmp_path / "out"
    kept = cut_tree_transfer(relay, start_send, start_receive, top, outdir, CUT_AT)
    sender = start_send(relay, top, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert listing(outdir / "photos") == listing(top)
    assert ferry_entries(outdir) == []
    moved = pipe_bytes(relay, 2)
    total = tree_size(top)
    assert moved < total - kept + MIB, (moved, total, kept)  # the rest, plus record overhead


@pytest.mark.own_relay
@pytest.mark.timeout(180)
@pytest.mark.parametrize("change", ["changed-source", "tampered-staging"])
def test_a_changed_file_restarts_alone_and_the_tree_arrives_right(
    relay, start_send, start_receive, run_receive, tmp_path, change
):
    top = make_tree(tmp_path / "src")
    outdir = tmp_path / "out"
    cut_tree_transfer(relay, start_send, start_receive, top, outdir, CUT_AT)
    [staging] = outdir.glob(".ferry-resume-*.tree")
    victim = top / "a.bin" if change == "changed-source" else staging / "photos" / "a.bin"
    assert victim.stat().st_size == A_SIZE  # a.bin was complete when the cut came
    with open(victim, "r+b") as f:
        f.seek(A_SIZE // 2)
        f.write(b"\x01changed")
    sender = start_send(relay, top, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert files_equal(top / "a.bin", outdir / "photos" / "a.bin")
    assert listing(outdir / "photos") == listing(top)
    moved = pipe_bytes(relay, 2)
    assert A_SIZE < moved < tree_size(top), moved  # a.bin again, not b.bin's kept part


@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_no_resume_moves_the_whole_tree_and_leaves_no_staging(
    relay, start_send, start_receive, run_receive, tmp_path
):
    top = make_tree(tmp_path / "src")
    outdir = tmp_path / "out"
    cut_tree_transfer(relay, start_send, start_receive, top, outdir, CUT_AT)
    sender = start_send(relay, top, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["--no-resume", "-v"])
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr
    assert listing(outdir / "photos") == listing(top)
    assert ferry_entries(outdir) == []
    assert pipe_bytes(relay, 2) > tree_size(top)


@pytest.mark.timeout(60)
def test_stagings_older_than_a_week_are_removed_by_the_next_receive(
    relay, start_send, run_receive, tmp_path
):
    outdir = tmp_path / "out"
    old_tree = outdir / ".ferry-resume-00000000000000000000000000000000.tree"
    old_temp = outdir / ".ferry-0123456789abcdef.part"  # a killed receive's staging
    new_tree = outdir / ".ferry-resume-11111111111111111111111111111111.tree"
    for path in (old_tree / "d", old_temp / "d", new_tree / "d"):
        path.mkdir(parents=True, mode=0o700)
        (path / "f").write_bytes(b"kept")
    week_ago = time.time() - 8 * 24 * 3600
    for path in (old_tree, old_temp):
        os.utime(path, (week_ago, week_ago))
    (tmp_path / "f.txt").write_bytes(b"f")
    sender = start_send(relay, tmp_path / "f.txt")
    result = run_receive(relay, sender.code, outdir)
    assert result.returncode == 0, result.stderr
    assert not old_tree.exists() and not old_temp.exists()
    assert (new_tree / "d" / "f").read_bytes() == b"kept"


# --- stdin ----------------------------------------------------------------------------------


def start_stdin_send(procs: Registry, logdir: Path, relay: Relay, source: Path) -> Sender:
    """`cat SOURCE | ./send RELAY -`: the sender reads a pipe."""
    cat = procs.popen(["cat", str(source)], stdout=subprocess.PIPE)
    argv, cwd = invocation("send")
    stderr_path = _unique(logdir, "send", ".err")
    with open(stderr_path, "wb") as err:
        proc = procs.popen(
            [*argv, str(relay), "-", "--name", "stream.bin", *RAW], cwd=cwd, stdin=cat.stdout,
            stdout=subprocess.PIPE, stderr=err, env=clean_env(),
        )  # fmt: skip
    assert cat.stdout is not None
    cat.stdout.close()
    sender = Sender(proc, stderr_path)
    sender.read_code()
    return sender


STREAM_SIZE = 48 * MIB
STREAM_CUT_AT = 16 * MIB


def stream_partial(outdir: Path) -> int:
    return sum(p.stat().st_size for p in outdir.glob(".ferry-resume-*.part"))


def cut_stream(procs, logdir, relay, start_receive, source: Path, outdir: Path) -> int:
    sender = start_stdin_send(procs, logdir, relay, source)
    receiver = start_receive(relay, sender.code, outdir)
    try:
        run_in_bursts(sender.pid, lambda: stream_partial(outdir) >= STREAM_CUT_AT)
        receiver.proc.kill()
        receiver.wait(30)
    finally:
        os.kill(sender.pid, signal.SIGCONT)
    assert sender.wait(60) == EXIT_PEER_GONE, sender.stderr()
    kept = stream_partial(outdir)
    assert 0 < kept < source.stat().st_size
    return kept


@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_stdin_cut_by_kill_9_resumes_when_the_same_bytes_come_again(
    procs, logdir, relay, start_receive, run_receive, tmp_path
):
    source = sparse_file(tmp_path / "src" / "data.bin", STREAM_SIZE)
    outdir = tmp_path / "out"
    kept = cut_stream(procs, logdir, relay, start_receive, source, outdir)
    sender = start_stdin_send(procs, logdir, relay, source)
    result = run_receive(relay, sender.code, outdir, timeout=120)  # said without -v
    assert result.returncode == 0, result.stderr
    assert (
        f"resuming stream.bin after the {size(kept)} kept from an earlier try (of unknown size)"
        in (result.stderr)
    )
    assert "-1" not in result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert f"the receiver kept {size(kept)} of stream.bin" in sender.stderr()
    assert files_equal(source, outdir / "stream.bin")
    assert ferry_entries(outdir) == []
    assert pipe_bytes(relay, 2) < source.stat().st_size - kept + MIB


@pytest.mark.timeout(180)
def test_stdin_that_differs_from_what_was_kept_fails_clearly_and_the_next_try_starts_over(
    procs, logdir, relay, start_receive, run_receive, tmp_path
):
    source = sparse_file(tmp_path / "src" / "data.bin", STREAM_SIZE)
    outdir = tmp_path / "out"
    cut_stream(procs, logdir, relay, start_receive, source, outdir)
    other = sparse_file(tmp_path / "src" / "other.bin", STREAM_SIZE)
    sender = start_stdin_send(procs, logdir, relay, other)
    result = run_receive(relay, sender.code, outdir, timeout=120)
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert "does not begin with" in result.stderr
    assert sender.wait(60) == EXIT_LOCAL_FILE
    [line] = sender.stderr().strip().splitlines()
    assert "standard input does not begin with" in line and "Traceback" not in line
    assert ferry_entries(outdir) == [] and not (outdir / "stream.bin").exists()
    sender = start_stdin_send(procs, logdir, relay, other)
    result = run_receive(relay, sender.code, outdir, timeout=120)
    assert result.returncode == 0, result.stderr
    assert files_equal(other, outdir / "stream.bin")


@pytest.mark.timeout(180)
def test_a_tree_cut_by_the_relay_dying_resumes_through_a_new_relay(
    relay_factory, start_send, start_receive, run_receive, tmp_path
):
    top = make_tree(tmp_path / "src")
    outdir = tmp_path / "out"
    first = relay_factory()
    sender = start_send(first, top, extra_args=RAW)
    receiver = start_receive(first, sender.code, outdir)
    try:
        run_in_bursts(sender.pid, lambda: staged_bytes(outdir) >= CUT_AT)
        first.proc.kill()  # the relay dies mid-transfer
        first.proc.wait(30)
    finally:
        os.kill(sender.pid, signal.SIGCONT)
    assert receiver.wait(60) == EXIT_PEER_GONE
    assert sender.wait(60) != 0
    kept = staged_bytes(outdir)
    assert not (outdir / "photos").exists() and kept >= CUT_AT
    second = relay_factory()
    sender = start_send(second, top)
    result = run_receive(second, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert listing(outdir / "photos") == listing(top)
    assert ferry_entries(outdir) == []
    assert pipe_bytes(second, 1) < tree_size(top) - kept + MIB


@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_a_resumed_file_whose_digest_does_not_match_is_dropped_alone_and_never_stored(
    relay, start_send, start_receive, run_receive, tmp_path
):
    """A sender (holding the code) that claims the kept a.bin is whole and then gives a
    wrong whole-file DIGEST: the receiver stores nothing (exit 8), drops a.bin from its
    staging and keeps the rest; the next honest send moves a.bin again, not b.bin's part."""
    top = make_tree(tmp_path / "src")
    outdir = tmp_path / "out"
    cut_tree_transfer(relay, start_send, start_receive, top, outdir, CUT_AT)
    [staging] = outdir.glob(".ferry-resume-*.tree")
    kept_b = (staging / "photos" / "b.bin").stat().st_size
    tree = walk([str(top)], 1000, 64)
    assert [e.path for e in tree.entries[1:3]] == ["photos/a.bin", "photos/b.bin"]
    records = manifest.encode_records(tree.entries)
    offer = messages.Offer(
        messages.KIND_TREE, "", tree.size, messages.MANIFEST_VERSION, len(tree.entries),
        tree.files, len(records), resume=True,
    )  # fmt: skip
    a_size = tree.entries[1].size
    fake = FakeSender(
        relay.host, relay.port, "", tree.size, offer=offer, manifest=records,
        file_sizes={i: e.size for i, e in enumerate(tree.entries) if not e.is_dir},
        steps=[
            # It has the files (it proves it); then lies about a.bin's whole content.
            Prove({i: Path(tree.sources[i]).read_bytes() for i in (1, 2)}),
            RawRecord(RecordType.START, messages.encode_start(messages.Start(a_size, 1))),
            RawRecord(RecordType.DIGEST, messages.encode_digest(messages.Digest("0" * 64, 1))),
        ],
    )  # fmt: skip
    result = run_against_fake(relay, run_receive, fake, outdir)
    assert result.returncode == EXIT_INTEGRITY, result.stderr
    assert_one_line_error(result.stderr, "receive", "does not match")  # after "resuming: ..."
    assert "receive: resuming: " in result.stderr
    assert not (outdir / "photos").exists()
    assert not (staging / "photos" / "a.bin").exists()
    assert (staging / "photos" / "b.bin").stat().st_size == kept_b
    sender = start_send(relay, top, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert listing(outdir / "photos") == listing(top)
    moved = pipe_bytes(relay, 3)  # the cut pipe, the fake's, this one
    assert a_size < moved < tree_size(top) - kept_b + MIB, moved
