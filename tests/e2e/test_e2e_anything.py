"""Send anything with the real ./send, ./receive and ./relay: trees, several files,
stdin, texts, stdout, a refusal that keeps the code alive, --ask, the caps."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from ferry.errors import EXIT_LOCAL_FILE, EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER
from ferry_testing.files import leftovers
from ferry_testing.procs import clean_env
from ferry_testing.waiting import wait_until

from .harness import (
    Registry,
    Result,
    Sender,
    _unique,
    assert_exact_one_line_error,
    invocation,
    run_program,
)

MTIME = 1_000_000_000_123_456_789


def listing(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    """Every entry under root: relative path -> (kind, exec bit, mtime, content)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            content = path.read_bytes() if kind == "file" else b""
            rel = os.fsdecode(bytes(path.relative_to(root)))
            found[rel] = (kind, info.st_mode & stat.S_IXUSR, info.st_mtime_ns, content)
    return found


def start_send_with(
    procs: Registry, logdir: Path, relay: object, args: list[str], stdin: bytes | None = None
) -> Sender:
    """./send RELAY ARGS..., optionally fed `stdin`; its code read."""
    argv, cwd = invocation("send")
    stderr_path = _unique(logdir, "send", ".err")
    with open(stderr_path, "wb") as err:
        proc = procs.popen(
            [*argv, str(relay), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=err,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )  # fmt: skip
    if stdin is not None:
        # The sender reads stdin only once a receiver accepted: feed it meanwhile.
        pipe = proc.stdin
        assert pipe is not None

        def feed() -> None:
            with contextlib.suppress(OSError):
                pipe.write(stdin)
                pipe.close()

        threading.Thread(target=feed, daemon=True).start()
    sender = Sender(proc, stderr_path)
    sender.read_code()
    return sender


def receive(
    procs: Registry,
    relay: object,
    *args: str,
    cwd: Path | None = None,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    argv, run_cwd = invocation("receive", "abs", cwd)
    return run_program(procs, [*argv, str(relay), *args], cwd or run_cwd, 60, env, input)


def awkward_tree(root: Path) -> dict[str, str]:
    """A tree with every kind of awkward name; returns sent name -> name it is stored as."""
    top = root / "tree"
    (top / "empty dir").mkdir(parents=True)
    (top / "sub" / "deeper").mkdir(parents=True)
    names = {
        " leading space": "leading space",
        "-rf": "-rf",
        ".hidden": ".hidden",
        "üñí©ødé NFC": "üñí©ødé NFC",
        "emoji 🚀": "emoji 🚀",
        "quote'\"`$(echo x);&|*?[]": "quote'_`$(echo x);&___[]",  # Windows' forbidden
        "x" * 255: "x" * 255,
        "colon:name": "colon_name",
        "trailing dot.": "trailing dot",
        "esc\x1b[31mred": "esc[31mred",
        "new\nline": "newline",
    }
    for sent in names:
        (top / "sub" / sent).write_bytes(sent.encode("utf-8", "surrogateescape") * 3)
    (top / "sub" / "deeper" / "run.sh").write_bytes(b"#!/bin/sh\necho ok\n")
    os.chmod(top / "sub" / "deeper" / "run.sh", 0o755)
    (top / "sub" / "deeper" / "zero").write_bytes(b"")
    # An undecodable byte: the sender offers U+FFFD instead.
    (top / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name")
    os.symlink("/etc/passwd", top / "sub" / "link-out")
    os.symlink("deeper", top / "sub" / "link-dir")
    os.mkfifo(top / "sub" / "fifo")
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for name in filenames + dirnames:
            os.utime(Path(dirpath) / name, ns=(MTIME, MTIME), follow_symlinks=False)
    os.utime(top, ns=(MTIME, MTIME))
    return names


@pytest.mark.timeout(90)
def test_tree_with_awkward_names_arrives_whole_with_modes_mtimes_and_empty_dirs(
    procs, logdir, relay, tmp_path
):
    names = awkward_tree(tmp_path / "src")
    sender = start_send_with(procs, logdir, relay, [str(tmp_path / "src" / "tree")])
    out = tmp_path / "out"
    result = receive(procs, relay, sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    # Symlinks and the FIFO were not followed, not sent, and listed on the sender's stderr.
    skipped = [line for line in sender.stderr().splitlines() if "not sent" in line]
    assert len(skipped) == 3 and all("fifo" in s or "link-" in s for s in skipped), skipped
    got = listing(out)
    sub = "tree/sub"
    for sent, stored in names.items():
        kind, _, mtime, content = got.pop(f"{sub}/{stored}")
        assert (kind, mtime, content) == ("file", MTIME, sent.encode() * 3), sent
    assert got.pop("tree/sub/deeper/run.sh")[:3] == ("file", stat.S_IXUSR, MTIME)
    assert got.pop("tree/sub/deeper/zero") == ("file", 0, MTIME, b"")
    assert got.pop("tree/caf\ufffd.txt")[3] == b"latin-1 name"
    for directory in ("tree", "tree/empty dir", "tree/sub", "tree/sub/deeper"):
        assert got.pop(directory)[::2] == ("dir", MTIME), directory
    assert got == {}, f"unexpected entries: {sorted(got)}"
    assert leftovers(out) == []


@pytest.mark.timeout(90)
def test_several_files_and_a_directory_land_side_by_side(procs, logdir, relay, tmp_path):
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a" * 1000)
    (src / "b.bin").write_bytes(os.urandom(300_000))
    (src / "d" / "e" / "c").write_bytes(b"c")
    args = [str(src / "a.txt"), str(src / "b.bin"), str(src / "d")]
    sender = start_send_with(procs, logdir, relay, args)
    out = tmp_path / "out"
    result = receive(procs, relay, sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.bin", "d"]
    assert (out / "b.bin").read_bytes() == (src / "b.bin").read_bytes()
    assert (out / "d" / "e" / "c").read_bytes() == b"c"


@pytest.mark.timeout(90)
def test_existing_names_are_all_reported_before_data_moves_and_the_code_stays_alive(
    procs, logdir, relay, tmp_path
):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_bytes(b"new")
    (src / "a.txt").write_bytes(b"new")
    (src / "fresh").write_bytes(b"new")
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "a.txt").write_bytes(b"old")
    before = listing(out)
    args = [str(src / "a.txt"), str(src / "d"), str(src / "fresh")]
    sender = start_send_with(procs, logdir, relay, args)

    refused = receive(procs, relay, sender.code, str(out))
    assert refused.returncode == EXIT_LOCAL_FILE, refused.stderr
    line = assert_exact_one_line_error(refused.stderr, "receive", "a.txt", "d/")
    assert "fresh" not in line
    assert listing(out) == before and leftovers(out) == []
    assert sender.running(), "a refusal must keep the code alive"

    other = tmp_path / "other"
    result = receive(procs, relay, sender.code, str(other))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert "refused" in sender.stderr() and "attempt(s) left" in sender.stderr()
    assert sorted(p.name for p in other.iterdir()) == ["a.txt", "d", "fresh"]


@pytest.mark.timeout(90)
def test_receive_to_stdout_refuses_a_tree_before_data_moves_then_takes_a_file(
    procs, logdir, relay, tmp_path
):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_bytes(b"x")
    sender = start_send_with(procs, logdir, relay, [str(src / "d")])
    result = receive(procs, relay, sender.code, "-", cwd=tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "receive", "standard output")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert sender.running()

    data = os.urandom(200_000)
    (src / "one.bin").write_bytes(data)
    sender = start_send_with(procs, logdir, relay, [str(src / "one.bin")])
    argv, _ = invocation("receive")
    proc = subprocess.run(
        [*argv, str(relay), sender.code, "-"], capture_output=True, timeout=60, env=clean_env(),
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    assert sender.wait(30) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", [None, "backup.tar"])
def test_stdin_of_unknown_size_is_stored_under_its_name(procs, logdir, relay, tmp_path, name):
    data = os.urandom(700_001)
    args = ["-"] + (["--name", name] if name else [])
    sender = start_send_with(procs, logdir, relay, args, stdin=data)
    out = tmp_path / "out"
    result = receive(procs, relay, sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / (name or "stdin")).read_bytes() == data


@pytest.mark.timeout(90)
def test_text_is_printed_exactly_with_a_newline_added_and_nothing_stored(
    procs, logdir, relay, tmp_path
):
    sender = start_send_with(procs, logdir, relay, ["--text", "hello, wörld"])
    out = tmp_path / "out"
    result = receive(procs, relay, sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, wörld\n"
    assert sender.wait(30) == 0
    assert not out.exists() or list(out.iterdir()) == []

    message = b"line one\nbell\x07 esc\x1b[2J \xff raw\n"  # to a pipe: bytes unchanged
    sender = start_send_with(procs, logdir, relay, ["--text", "-"], stdin=message)
    argv, _ = invocation("receive")
    proc = subprocess.run(
        [*argv, str(relay), sender.code], capture_output=True, timeout=60, env=clean_env(),
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == message
    assert sender.wait(30) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"] or not (tmp_path / "src").exists()


@pytest.mark.timeout(90)
def test_receive_without_dir_stores_into_the_current_directory(procs, logdir, relay, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"here")
    sender = start_send_with(procs, logdir, relay, [str(tmp_path / "f.txt")])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = receive(procs, relay, sender.code, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert (cwd / "f.txt").read_bytes() == b"here"


@pytest.mark.timeout(90)
def test_ask_shows_what_is_coming_and_no_declines_yes_accepts(procs, logdir, relay, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_bytes(b"x" * 10)
    sender = start_send_with(procs, logdir, relay, [str(src / "d")])
    out = tmp_path / "out"
    declined = receive(procs, relay, sender.code, str(out), "--ask", input=b"n\n")
    assert declined.returncode == EXIT_REFUSED_BY_PEER, declined.stderr
    assert "coming: 1 file, 1 dir, 10 B: d/" in declined.stderr
    assert not (out / "d").exists()
    accepted = receive(procs, relay, sender.code, str(out), "--ask", input=b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert (out / "d" / "x").read_bytes() == b"x" * 10
    assert sender.wait(30) == 0


@pytest.mark.timeout(90)
def test_receivers_entry_cap_refuses_before_data_and_senders_cap_fails_before_the_relay(
    procs, logdir, relay, tmp_path
):
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    for i in range(5):
        (src / f"f{i}").write_bytes(b"x")
    sender = start_send_with(procs, logdir, relay, [str(src)])
    out = tmp_path / "out"
    env = clean_env({"FERRY_MAX_ENTRIES": "3"})
    result = receive(procs, relay, sender.code, str(out), env=env)
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert "6 entries" in result.stderr
    assert not (out / "d").exists() and leftovers(out) == []

    argv, _ = invocation("send")
    capped = run_program(procs, [*argv, str(relay), str(src)], tmp_path, 30,
                         clean_env({"FERRY_MAX_ENTRIES": "3"}))  # fmt: skip
    assert capped.returncode == EXIT_LOCAL_FILE and capped.stdout == ""
    assert_exact_one_line_error(capped.stderr, "send", "more than 3")


@pytest.mark.timeout(120)
def test_sender_killed_mid_tree_stores_nothing_and_keeps_a_resumable_staging(
    procs, logdir, relay, tmp_path
):
    src = tmp_path / "src" / "big"
    src.mkdir(parents=True)
    (src / "a-small").write_bytes(b"small")
    with open(src / "b-huge", "wb") as f:
        f.truncate(4 << 30)  # sparse: reading it is cheap, the transfer is long
    sender = start_send_with(procs, logdir, relay, [str(src)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_bytes(b"keep")
    argv, _ = invocation("receive")
    err = open(logdir / "receive-killed.err", "wb")  # noqa: SIM115
    receiver = procs.popen([*argv, str(relay), sender.code, str(out)], stderr=err,
                           stdout=subprocess.DEVNULL)  # fmt: skip

    def staged_bytes() -> int:
        return sum(
            (Path(d) / n).stat().st_size
            for part in out.glob(".ferry-resume-*.tree")
            for d, _, names in os.walk(part)
            for n in names
        )

    try:
        assert wait_until(lambda: staged_bytes() > 1 << 20, 60, interval=0.01)
        sender.proc.kill()
        assert receiver.wait(60) == EXIT_PEER_GONE
    finally:
        err.close()
    # Nothing under a final name; what arrived is kept, hidden, for a resume.
    [staging] = out.glob(".ferry-resume-*.tree")
    assert sorted(p.name for p in out.iterdir()) == sorted(["keep", staging.name])
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
