"""Resume with the real executables: a 1 GiB transfer cut (kill -9), then finished later.

Each cut is made with one side frozen (SIGSTOP, harness.frozen_mid_transfer), so the
transfer cannot finish while the other is killed. The relay's log line for the second
pipe says how many bytes went through it (bytes_to_receiver).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest

from ferry.client.partials import partial_path
from ferry.errors import EXIT_INTERRUPTED, EXIT_PEER_GONE
from ferry.protocol import messages
from ferry.protocol.records import RecordType
from ferry.units import size
from ferry_testing.files import files_equal
from ferry_testing.procs import Relay
from ferry_testing.waiting import wait_until

from .fakes import Data, FakeSender, Prove, RawRecord
from .harness import frozen_mid_transfer
from .test_e2e_hostile_sender import run_against_fake

GIB = 1024**3


def partials(outdir: Path) -> list[Path]:
    return sorted(outdir.glob(".ferry-resume-*.part"))


RAW = ["--no-compress"]
"""For the sends whose moved bytes are counted at the relay: compressed, the test's
file (mostly zeros) would cross it in far fewer bytes than it holds."""


def pipe_bytes(relay: Relay, nth: int) -> int:
    """bytes_to_receiver of the relay's nth receiver line (1-based), waiting for it."""

    def lines() -> list[str]:
        return re.findall(r"role=receiver .*?bytes_to_receiver=(\d+)", relay.log())

    assert wait_until(lambda: len(lines()) >= nth, 30), relay.log()
    return int(lines()[nth - 1])


def cut_by_killing_the_receiver(
    relay, start_send, start_receive, tmp_path
) -> tuple[Path, Path, int]:
    """Source, output dir and the partial's size after the receiver was SIGKILLed mid-way."""
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        src, sender, receiver, outdir,
    ):  # fmt: skip
        receiver.proc.kill()
        receiver.wait(30)
    assert sender.wait(60) == EXIT_PEER_GONE  # let go on leaving the block
    [partial] = partials(outdir)
    kept = partial.stat().st_size
    assert 0 < kept < GIB
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    assert not (outdir / "big.bin").exists()
    return src, outdir, kept


@pytest.mark.slow  # a 1 GiB transfer cut, then resumed
@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_receiver_killed_then_resumed_moves_only_the_missing_bytes(
    relay, start_send, start_receive, run_receive, tmp_path
):
    src, outdir, kept = cut_by_killing_the_receiver(relay, start_send, start_receive, tmp_path)
    sender = start_send(relay, src, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resuming big.bin after the {size(kept)} kept from an earlier try (of 1.0 GiB)" in (
        result.stderr
    )
    assert sender.wait(60) == 0, sender.stderr()
    assert files_equal(src, outdir / "big.bin")
    assert partials(outdir) == []
    moved = pipe_bytes(relay, 2)
    assert moved < GIB - kept + (1 << 20), (moved, kept)  # the rest, plus record overhead


@pytest.mark.slow  # a 1 GiB transfer cut, then resumed
@pytest.mark.timeout(180)
def test_sender_killed_keeps_the_partial_and_a_new_send_resumes_it(
    relay, start_send, start_receive, run_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "receiver") as (
        src, sender, receiver, outdir,
    ):  # fmt: skip
        sender.proc.kill()
    assert receiver.wait(60) == EXIT_PEER_GONE, receiver.stderr()
    [partial] = partials(outdir)
    kept = partial.stat().st_size
    sender = start_send(relay, src)
    result = run_receive(relay, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resuming big.bin after the {size(kept)} kept" in result.stderr
    assert files_equal(src, outdir / "big.bin")


@pytest.mark.slow  # a 1 GiB transfer cut, then resumed
@pytest.mark.timeout(180)
def test_ctrl_c_says_what_was_kept_and_the_next_run_says_resuming_on_both_sides_without_v(
    relay, start_send, start_receive, run_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        src, sender, receiver, outdir,
    ):  # fmt: skip
        os.kill(receiver.proc.pid, signal.SIGINT)
        assert receiver.wait(30) == EXIT_INTERRUPTED
    sender.wait(60)
    [partial] = partials(outdir)
    kept = partial.stat().st_size
    said = receiver.stderr()
    assert f"receive: kept the {size(kept)} of big.bin that arrived; run the same receive " in said
    assert said.strip().splitlines()[-1] == "receive: error: interrupted"
    sender = start_send(relay, src)
    result = run_receive(relay, sender.code, outdir, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"receive: resuming big.bin after the {size(kept)} kept" in result.stderr
    assert sender.wait(60) == 0, sender.stderr()
    assert f"send: the receiver kept {size(kept)} of big.bin from an earlier try" in (
        sender.stderr()
    )
    assert files_equal(src, outdir / "big.bin")


@pytest.mark.slow  # moves more than 1 GiB
@pytest.mark.own_relay
@pytest.mark.timeout(180)
@pytest.mark.parametrize("change", ["tampered-partial", "changed-source"])
def test_a_changed_source_or_tampered_partial_starts_over_and_gives_the_right_file(
    relay, start_send, start_receive, run_receive, tmp_path, change
):
    src, outdir, kept = cut_by_killing_the_receiver(relay, start_send, start_receive, tmp_path)
    victim = partials(outdir)[0] if change == "tampered-partial" else src
    with open(victim, "r+b") as f:
        f.seek(kept // 2)
        f.write(b"\x01")
    sender = start_send(relay, src, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["-v"], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "starting over" in result.stderr
    assert files_equal(src, outdir / "big.bin")
    assert pipe_bytes(relay, 2) > GIB


@pytest.mark.slow  # moves more than 1 GiB
@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_no_resume_discards_the_partial_and_moves_everything(
    relay, start_send, start_receive, run_receive, tmp_path
):
    src, outdir, _ = cut_by_killing_the_receiver(relay, start_send, start_receive, tmp_path)
    sender = start_send(relay, src, extra_args=RAW)
    result = run_receive(relay, sender.code, outdir, extra_args=["--no-resume", "-v"])
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr
    assert files_equal(src, outdir / "big.bin") and partials(outdir) == []
    assert pipe_bytes(relay, 2) > GIB


@pytest.mark.timeout(60)
def test_partials_older_than_a_week_are_removed_by_the_next_receive(
    relay, start_send, run_receive, tmp_path
):
    outdir = tmp_path / "out"
    outdir.mkdir()
    stale = outdir / ".ferry-resume-00000000000000000000000000000000.part"
    fresh = outdir / ".ferry-resume-11111111111111111111111111111111.part"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))
    (tmp_path / "f.txt").write_bytes(b"f")
    sender = start_send(relay, tmp_path / "f.txt")
    result = run_receive(relay, sender.code, outdir)
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and fresh.exists()


@pytest.mark.own_relay
@pytest.mark.timeout(60)
@pytest.mark.parametrize("guess", ["wrong", "right"])
def test_another_sender_of_the_same_name_learns_no_hash_of_what_was_kept(
    relay, run_receive, tmp_path, guess
):
    """A partial kept from one sender; another offers the same name and size. It is told
    how many bytes were kept, never a hash of them: it must prove it has them. A wrong
    guess starts over (its own bytes are stored), only the exact bytes resume."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    secret = b"PIN=4821\n"
    size = len(secret) + 7
    partial = partial_path(outdir, "secret.txt", size)
    partial.write_bytes(secret)
    partial.chmod(0o600)
    mine = (secret if guess == "right" else b"PIN=0000\n") + b"rest..\n"
    offer = messages.Offer(messages.KIND_FILE, "secret.txt", size, resume=True)
    fake = FakeSender(
        relay.host, relay.port, "secret.txt", size, offer=offer, steps=[
            Prove({-1: mine}),
            RawRecord(RecordType.START, messages.encode_start(
                messages.Start(len(secret) if guess == "right" else 0))),
            Data(mine[len(secret):] if guess == "right" else mine, final=True),
            *([RawRecord(RecordType.DIGEST, messages.encode_digest(
                messages.Digest(hashlib.sha256(mine).hexdigest())))]
              if guess == "right" else []),
        ],
    )  # fmt: skip
    result = run_against_fake(relay, run_receive, fake, outdir)
    assert fake.answer is not None and fake.answer.resume_from == len(secret)
    assert hashlib.sha256(secret).hexdigest() not in repr(fake.answer), "the kept bytes' hash"
    assert result.returncode == 0, result.stderr
    assert fake.verdict == (guess == "right",)
    assert (outdir / "secret.txt").read_bytes() == mine
