"""Several paths and existing directories with the real executables: a symlink named on the
command line is followed (only links inside a tree are skipped), a sender that fails after
the hand-over leaves no staging behind, and `--merge` updates an existing directory
without the circle of refusals that `--overwrite` alone gave."""

from __future__ import annotations

import os
from pathlib import Path

from ferry.errors import EXIT_LOCAL_FILE, EXIT_SOURCE_CHANGED
from ferry_testing.waiting import wait_until

from .harness import assert_exact_one_line_error
from .test_e2e_anything import start_send_with


def ferry_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".ferry-"))


def test_a_symlinked_file_named_with_another_path_is_followed(
    relay, procs, logdir, run_receive, tmp_path
):
    real = tmp_path / "elsewhere" / "report.txt"
    real.parent.mkdir()
    real.write_bytes(b"the real report\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to(real)
    (src / "b").write_bytes(b"bee\n")
    sender = start_send_with(procs, logdir, relay, [str(src / "link"), str(src / "b")])
    out = tmp_path / "out"
    result = run_receive(relay, sender.code, out, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / "link").read_bytes() == b"the real report\n"
    assert not (out / "link").is_symlink()
    assert (out / "b").read_bytes() == b"bee\n"
    assert ferry_entries(out) == []


def test_a_file_gone_after_the_hand_over_leaves_no_staging_and_the_code_works_again(
    relay, procs, logdir, run_receive, tmp_path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-first").write_bytes(b"first\n")
    (src / "b-second").write_bytes(b"second\n")
    sender = start_send_with(procs, logdir, relay, [str(src)])
    (src / "a-first").unlink()  # listed when send started, gone when it is read
    out = tmp_path / "out"
    result = run_receive(relay, sender.code, out, timeout=60)
    assert result.returncode == EXIT_SOURCE_CHANGED, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "a-first", "changed")
    assert not out.exists(), "nothing stored: no staging, and the DIR it made is gone"
    assert wait_until(lambda: "still waiting" in sender.stderr(), 10), sender.stderr()
    assert sender.running()
    # The next try sends the directory as it is now.
    again = run_receive(relay, sender.code, out, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert sorted(os.listdir(out / "src")) == ["b-second"]
    assert ferry_entries(out) == []


def test_merge_updates_an_existing_directory_and_each_refusal_says_what_helps(
    relay, procs, logdir, run_receive, tmp_path
):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    (src / "a.jpg").write_bytes(b"new a")
    (src / "b.jpg").write_bytes(b"new b")
    (src / "sub" / "c.jpg").write_bytes(b"new c")
    out = tmp_path / "out"
    (out / "photos" / "sub").mkdir(parents=True)
    (out / "photos" / "a.jpg").write_bytes(b"old a")
    (out / "photos" / "mine.jpg").write_bytes(b"mine")
    (out / "photos" / "sub" / "d.jpg").write_bytes(b"mine too")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    sender = start_send_with(procs, logdir, relay, [str(src), "--attempts", "5"])

    plain = run_receive(relay, sender.code, out, timeout=60)
    assert plain.returncode == EXIT_LOCAL_FILE, plain.stderr
    assert_exact_one_line_error(plain.stderr, "receive", "photos/", "--merge")

    overwrite = run_receive(relay, sender.code, out, extra_args=["--overwrite"], timeout=60)
    assert overwrite.returncode == EXIT_LOCAL_FILE, overwrite.stderr
    assert_exact_one_line_error(
        overwrite.stderr, "receive", "--overwrite replaces files, never a directory", "--merge"
    )

    merge = run_receive(relay, sender.code, out, extra_args=["--merge"], timeout=60)
    assert merge.returncode == EXIT_LOCAL_FILE, merge.stderr
    assert_exact_one_line_error(merge.stderr, "receive", "photos/a.jpg", "--overwrite")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert ferry_entries(out) == []

    both = run_receive(relay, sender.code, out, extra_args=["--merge", "--overwrite"], timeout=60)
    assert both.returncode == 0, both.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == {
        "photos/a.jpg": b"new a",
        "photos/b.jpg": b"new b",
        "photos/mine.jpg": b"mine",
        "photos/sub/c.jpg": b"new c",
        "photos/sub/d.jpg": b"mine too",
    }
    assert ferry_entries(out) == []
