"""./send and ./receive started with stdin or stdout closed (`<&-`, `>&-`): one line on
stderr and the documented exit code, never a traceback or an "internal error"; nothing
written, and a sender's code still good for a receiver that can take it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ferry.errors import EXIT_LOCAL_FILE, EXIT_USAGE

from .harness import Registry, Result, assert_exact_one_line_error, invocation

STDIN, STDOUT = 0, 1


def run_closed(procs: Registry, name: str, args: list[str], closed: int, cwd: Path) -> Result:
    """./NAME ARGS... started with file descriptor `closed` closed, as `<&-` or `>&-` do."""
    argv, _ = invocation(name)
    started = time.monotonic()
    proc = procs.popen(
        [*argv, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=_closing(closed),
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    return Result(
        [*argv, *args], proc.returncode, out.decode(errors="replace"),
        err.decode(errors="replace"), time.monotonic() - started,
    )  # fmt: skip


def _closing(fd: int) -> Callable[[], None]:
    def close() -> None:
        os.close(fd)

    return close


def test_send_with_stdout_closed_says_nobody_could_read_the_code(relay, procs, tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    result = run_closed(procs, "send", [str(relay), "f"], STDOUT, tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "send", "standard output is closed")
    assert result.elapsed < 30


def test_send_stdin_with_stdin_closed_is_one_line(relay, procs, tmp_path):
    result = run_closed(procs, "send", [str(relay), "-"], STDIN, tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "send", "standard input is closed")
    assert result.stdout == ""


def test_send_text_from_closed_stdin_is_one_line(relay, procs, tmp_path):
    result = run_closed(procs, "send", [str(relay), "--text", "-"], STDIN, tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "send", "standard input is closed")
    assert result.stdout == ""


def test_receive_code_from_closed_stdin_is_a_usage_error(relay, procs, tmp_path):
    out = tmp_path / "out"
    result = run_closed(procs, "receive", [str(relay), "-", str(out)], STDIN, tmp_path)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "standard input is closed")
    assert not out.exists()


def test_receive_to_closed_stdout_fails_before_contacting_the_sender(
    relay, procs, start_send, run_receive, tmp_path
):
    src = tmp_path / "f"
    src.write_bytes(b"to stdout")
    sender = start_send(relay, src)
    result = run_closed(procs, "receive", [str(relay), sender.code, "-"], STDOUT, tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "standard output", "closed")
    # The sender never heard of it: the code still works, with no attempt spent.
    assert sender.running()
    again = run_receive(relay, sender.code, "-", timeout=30)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "to stdout"
    assert sender.wait(30) == 0
    assert "attempt" not in sender.stderr()


def test_text_to_closed_stdout_is_refused_and_the_code_stays_alive(
    relay, procs, logdir, run_receive, tmp_path
):
    from .test_e2e_anything import start_send_with

    sender = start_send_with(procs, logdir, relay, ["--text", "hello"])
    out = tmp_path / "out"
    result = run_closed(procs, "receive", [str(relay), sender.code, str(out)], STDOUT, tmp_path)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "standard output is closed")
    again = run_receive(relay, sender.code, out, timeout=30)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "hello\n"
    assert sender.wait(30) == 0
