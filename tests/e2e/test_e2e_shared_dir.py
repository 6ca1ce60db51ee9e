"""Receiving into a directory other users can write to (a sticky /tmp): their files under
the names a receive keeps partials and stagings under are left alone.

The names are predictable (a hash of the offered name and size, fixed for `send -`), so
another local user can create one first. The real ./receive runs as root against a plant
of another uid, and as an unprivileged user (setpriv) against another uid's plant. Where
fs.protected_regular is on, the kernel refuses some of these opens itself; the fixed
receiver never opens them for writing, so the tests hold either way.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.client.partials import partial_path
from ferry.client.staging import RESUMABLE_PREFIX, RESUMABLE_SUFFIX, resume_key
from ferry.protocol.manifest import Entry
from ferry.protocol.messages import UNKNOWN_SIZE
from ferry_testing.procs import clean_env

from .harness import invocation, run_program
from .test_e2e_anything import start_send_with

ATTACKER = 65533
VICTIM = 65534
WEEK = 7 * 24 * 3600

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to plant files of another uid) and setpriv",
)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A sticky, world-writable directory that every uid can reach, like /tmp."""
    path = Path(tempfile.mkdtemp(prefix="ferry-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def plant(path: Path, data: bytes, mode: int, uid: int = ATTACKER) -> os.stat_result:
    path.write_bytes(data)
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path.stat()


def untouched(path: Path, before: os.stat_result, data: bytes) -> bool:
    after = path.stat()
    same = (after.st_ino, after.st_uid, after.st_mtime_ns) == (
        before.st_ino, before.st_uid, before.st_mtime_ns,
    )  # fmt: skip
    return same and path.read_bytes() == data


def ignored_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("receive: ignoring ")]


@pytest.mark.timeout(60)
def test_a_root_receive_never_uses_or_deletes_another_users_partial(
    relay, start_send, run_receive, tmp_path, shared
):
    source = tmp_path / "report.pdf"
    content = os.urandom(300_000)
    source.write_bytes(content)
    # The attacker knows the file's first bytes: a partial that would resume, whose
    # inode (the attacker's) would be renamed into place.
    planted = partial_path(shared, "report.pdf", len(content))
    prefix = content[:100_000]
    before = plant(planted, prefix, 0o644)
    stale = shared / ".ferry-resume-00000000000000000000000000000000.part"
    stale_before = plant(stale, b"old", 0o600)
    os.utime(stale, (time.time() - 2 * WEEK, time.time() - 2 * WEEK))
    stale_before = stale.stat()

    sender = start_send(relay, source)
    result = run_receive(relay, sender.code, shared)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0
    stored = shared / "report.pdf"
    assert stored.read_bytes() == content
    assert stored.stat().st_uid == 0, "the attacker's file was stored"
    assert untouched(planted, before, prefix)
    assert untouched(stale, stale_before, b"old"), "another user's file was deleted"
    [line] = ignored_lines(result.stderr)
    assert planted.name in line and "not a partial file this user made" in line


@pytest.mark.timeout(60)
def test_an_unprivileged_receive_never_writes_into_another_users_partial_of_stdin(
    procs, logdir, relay, shared
):
    # `send -` is always offered as "stdin" with no size: the name is known in advance.
    planted = partial_path(shared, "stdin", UNKNOWN_SIZE)
    before = plant(planted, b"", 0o666)  # empty and world-writable: catch what comes
    content = os.urandom(200_000)
    sender = start_send_with(procs, logdir, relay, ["-"], stdin=content)
    argv, cwd = invocation("receive")
    as_victim = ["setpriv", f"--reuid={VICTIM}", f"--regid={VICTIM}", "--clear-groups"]
    env = {**clean_env(), "HOME": str(shared)}
    result = run_program(procs, [*as_victim, *argv, str(relay), sender.code, str(shared)],
                         cwd, 60, env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0
    stored = shared / "stdin"
    assert stored.read_bytes() == content and stored.stat().st_uid == VICTIM
    assert stat.S_IMODE(stored.stat().st_mode) & 0o077 != 0o066  # a new file, not the plant
    assert untouched(planted, before, b""), "the received bytes went into the attacker's file"
    assert len(ignored_lines(result.stderr)) == 1, result.stderr


@pytest.mark.timeout(60)
def test_a_receive_leaves_another_users_tree_staging_alone_and_stores_the_tree(
    relay, start_send, run_receive, tmp_path, shared
):
    top = tmp_path / "d"
    (top / "sub").mkdir(parents=True)
    (top / "a").write_bytes(b"a" * 1000)
    (top / "sub" / "b").write_bytes(b"b" * 10)
    staging = shared / f"{RESUMABLE_PREFIX}{resume_key([Entry('d', True, 0, 0)])}{RESUMABLE_SUFFIX}"
    (staging / "d").mkdir(parents=True)
    inside = staging / "d" / "a"
    inside_before = plant(inside, b"evil", 0o666)
    for path in (staging / "d", staging):
        os.chown(path, ATTACKER, ATTACKER)
        path.chmod(0o777)

    sender = start_send(relay, top)
    result = run_receive(relay, sender.code, shared)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0
    assert (shared / "d" / "a").read_bytes() == b"a" * 1000
    assert (shared / "d" / "sub" / "b").read_bytes() == b"b" * 10
    assert untouched(inside, inside_before, b"evil")
    assert staging.stat().st_uid == ATTACKER
    [line] = ignored_lines(result.stderr)
    assert staging.name in line and "not a staging directory this user made" in line
    assert sorted(p.name for p in shared.iterdir()) == sorted(["d", staging.name])
