"""Failures a user can cause: wrong or unknown codes, existing files, unreachable relays,
missing files. Each must give the documented exit code and one clear line on stderr."""

from __future__ import annotations

import functools
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from ferry.errors import (
    EXIT_LOCAL_FILE,
    EXIT_REFUSED_BY_PEER,
    EXIT_RELAY_REFUSED,
    EXIT_RELAY_UNREACHABLE,
    EXIT_USAGE,
    EXIT_WRONG_CODE,
)
from ferry_testing import procs
from ferry_testing.files import assert_nothing_stored
from ferry_testing.procs import clean_env
from ferry_testing.waiting import wait_until

from .harness import (
    CODE_RE,
    assert_exact_one_line_error,
    assert_one_line_error,
    closed_port,
    dir_is_empty,
    invocation,
    retry_while_claimed,
    run_cases,
    valid_words,
    wrong_words_code,
)


def make_file(path, size=20_000):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


# -- 6. wrong code ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_wrong_words_fail_fast_keep_sender_then_right_code_succeeds(
    relay, start_send, run_receive, tmp_path
):
    data = make_file(tmp_path / "src" / "secret.bin")
    sender = start_send(relay, tmp_path / "src" / "secret.bin")
    wrong = wrong_words_code(sender.code)
    assert wrong != sender.code and wrong.split("-")[0] == sender.code.split("-")[0]

    outdir = tmp_path / "out"
    result = run_receive(relay, wrong, outdir, timeout=30)
    assert result.returncode == EXIT_WRONG_CODE, result.stderr
    assert result.elapsed < 10, f"wrong code took {result.elapsed:.1f}s"
    assert_exact_one_line_error(result.stderr, "receive", "wrong code")
    assert dir_is_empty(outdir), f"wrong code wrote {list(outdir.iterdir())}"

    # The sender survives one wrong guess and says so.
    assert wait_until(lambda: "wrong code" in sender.stderr(), 15), sender.stderr()
    time.sleep(0.3)
    assert sender.running(), f"sender exited {sender.proc.poll()}: {sender.stderr()}"

    result = retry_while_claimed(run_receive, relay, sender.code, outdir, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (outdir / "secret.bin").read_bytes() == data
    assert sorted(p.name for p in outdir.iterdir()) == ["secret.bin"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("flag", "limit"), [("--wrong-codes", 3), ("FERRY_WRONG_CODES", 1)])
def test_sender_gives_up_after_wrong_codes_wrong_codes_with_exit_6(
    relay, start_send, run_receive, tmp_path, flag, limit
):
    make_file(tmp_path / "src" / "f.bin")
    if flag.startswith("--"):
        sender = start_send(relay, tmp_path / "src" / "f.bin", extra_args=[flag, str(limit)])
    else:
        env = clean_env({flag: str(limit)})
        sender = start_send(relay, tmp_path / "src" / "f.bin", env=env)
    wrong = wrong_words_code(sender.code)
    for attempt in range(1, limit + 1):
        result = retry_while_claimed(
            run_receive, relay, wrong, tmp_path / f"out{attempt}", timeout=30
        )
        assert result.returncode == EXIT_WRONG_CODE, (attempt, result.stderr)
        assert dir_is_empty(tmp_path / f"out{attempt}")
        if attempt < limit:

            def warned(times: int = attempt) -> bool:
                return bool(sender.stderr().count("wrong code") >= times)

            assert wait_until(warned, 15), sender.stderr()
            assert sender.running(), f"sender gave up after {attempt} of {limit}"
    rc = sender.wait(30)
    assert rc == EXIT_WRONG_CODE, sender.stderr()
    message = assert_one_line_error(sender.stderr(), "send")
    assert "wrong code" in message.lower() or "too many" in message.lower(), message
    assert sender.stdout_rest == b""


@pytest.mark.timeout(120)
def test_wrong_codes_do_not_spend_the_attempts_for_refusals(
    relay, start_send, run_receive, tmp_path
):
    # --attempts counts refusals by a receiver that held the code; wrong codes
    # have their own, larger budget (--wrong-codes, 20).
    make_file(tmp_path / "src" / "f.bin")
    sender = start_send(relay, tmp_path / "src" / "f.bin", extra_args=["--attempts", "1"])
    for attempt in range(2):
        result = retry_while_claimed(
            run_receive, relay, wrong_words_code(sender.code), tmp_path / f"o{attempt}",
            timeout=30,
        )  # fmt: skip
        assert result.returncode == EXIT_WRONG_CODE, result.stderr
    assert wait_until(lambda: sender.stderr().count("wrong code") >= 2, 15), sender.stderr()
    assert sender.running(), sender.stderr()
    assert "18 wrong code(s) left" in sender.stderr(), sender.stderr()
    result = retry_while_claimed(run_receive, relay, sender.code, tmp_path / "out", timeout=30)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()


# -- 7. unknown and malformed codes ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_unknown_nameplate_is_refused_with_exit_5(relay, start_send, run_receive, tmp_path):
    make_file(tmp_path / "src" / "f.bin")
    sender = start_send(relay, tmp_path / "src" / "f.bin")
    nameplate = int(sender.code.split("-")[0])
    code = "-".join([str(nameplate + 500), *valid_words()])
    outdir = tmp_path / "out"
    result = run_receive(relay, code, outdir, timeout=30)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert result.elapsed < 10
    assert_exact_one_line_error(result.stderr, "receive", "unknown code")
    assert dir_is_empty(outdir)
    assert sender.running()


@pytest.mark.own_relay
@pytest.mark.timeout(60)
def test_receive_before_any_send_is_unknown_code_exit_5(relay, run_receive, tmp_path):
    outdir = tmp_path / "out"
    code = "-".join(["1", *valid_words()])
    result = run_receive(relay, code, outdir, timeout=30)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert result.elapsed < 10
    assert_exact_one_line_error(result.stderr, "receive", "unknown code")
    assert dir_is_empty(outdir)
    assert relay.alive()


MALFORMED_CODES = [
    "hello",
    "7",
    "7-guitar",
    "0-a-b",
    "abc-def-ghi",
    "7-notaword-zzzz-qqqq",
    "7-é-a",
    "",
]


def check_malformed_code(relay, run_receive, outdir: Path, code: str) -> None:
    result = run_receive(relay, code, outdir, timeout=30)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive")
    assert_nothing_stored(outdir)


@pytest.mark.timeout(60)
def test_malformed_codes_are_usage_errors_exit_2(relay, run_receive, tmp_path):
    """Each code its own ./receive; the cases run at once."""
    run_cases(
        {
            repr(code): functools.partial(
                check_malformed_code, relay, run_receive, tmp_path / f"out{i}", code
            )
            for i, code in enumerate(MALFORMED_CODES)
        }
    )


# -- 8. existing file ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_existing_file_is_refused_exit_3_and_sender_with_one_attempt_exits_10(
    relay, start_send, run_receive, tmp_path
):
    # A refusal counts as one of the sender's attempts (it keeps the code alive
    # otherwise: test_e2e_anything.py); with --attempts 1 it is the last.
    make_file(tmp_path / "src" / "report.pdf")
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "report.pdf").write_bytes(b"precious old content")
    before = (outdir / "report.pdf").stat()

    sender = start_send(relay, tmp_path / "src" / "report.pdf", extra_args=["--attempts", "1"])
    result = run_receive(relay, sender.code, outdir, timeout=30)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "already exists")
    assert (outdir / "report.pdf").read_bytes() == b"precious old content"
    assert (outdir / "report.pdf").stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in outdir.iterdir()) == ["report.pdf"]

    rc = sender.wait(30)
    assert rc == EXIT_REFUSED_BY_PEER, sender.stderr()
    assert_one_line_error(sender.stderr(), "send", "refused")


@pytest.mark.timeout(60)
def test_existing_file_with_overwrite_is_replaced(relay, start_send, run_receive, tmp_path):
    data = make_file(tmp_path / "src" / "report.pdf", 400_000)
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "report.pdf").write_bytes(b"old")
    sender = start_send(relay, tmp_path / "src" / "report.pdf")
    result = run_receive(relay, sender.code, outdir, extra_args=["--overwrite"], timeout=30)
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (outdir / "report.pdf").read_bytes() == data
    assert sorted(p.name for p in outdir.iterdir()) == ["report.pdf"]


@pytest.mark.timeout(60)
def test_output_dir_that_is_a_file_is_exit_3(relay, run_receive, tmp_path):
    (tmp_path / "notadir").write_bytes(b"x")
    code = "-".join(["1", *valid_words()])
    result = run_receive(relay, code, tmp_path / "notadir", timeout=30)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive")
    assert (tmp_path / "notadir").read_bytes() == b"x"


# -- 13. unreachable relay, missing file -------------------------------------------------------


@pytest.mark.timeout(60)
def test_receive_with_unreachable_relay_exits_4_quickly(run_receive, tmp_path):
    port = closed_port()
    code = "-".join(["7", *valid_words()])
    result = run_receive(f"127.0.0.1:{port}", code, tmp_path / "out", timeout=30)
    assert result.returncode == EXIT_RELAY_UNREACHABLE, result.stderr
    assert result.elapsed < 10
    assert_exact_one_line_error(result.stderr, "receive", "not reachable")
    assert_nothing_stored(tmp_path / "out")


@pytest.mark.timeout(60)
def test_send_with_unreachable_relay_exits_4_and_prints_nothing(procs, tmp_path):
    from .harness import run_send_to_exit

    make_file(tmp_path / "f.bin")
    port = closed_port()
    result = run_send_to_exit(procs, f"127.0.0.1:{port}", tmp_path / "f.bin", timeout=30)
    assert result.returncode == EXIT_RELAY_UNREACHABLE, result.stderr
    assert result.elapsed < 10
    assert result.stdout == "", f"send printed {result.stdout!r}"
    assert_exact_one_line_error(result.stderr, "send", "not reachable")


@pytest.mark.timeout(60)
def test_send_missing_file_exits_3_and_prints_nothing(procs, relay, tmp_path):
    from .harness import run_send_to_exit

    result = run_send_to_exit(procs, relay, "missing.bin", cwd=tmp_path, timeout=30)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "send", "no such file")


@pytest.mark.timeout(60)
def test_send_fifo_exits_3_and_prints_nothing(procs, relay, tmp_path):
    from .harness import run_send_to_exit

    os.mkfifo(tmp_path / "fifo")
    result = run_send_to_exit(procs, relay, tmp_path / "fifo", timeout=30)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "send")


def check_bad_relay_address(procs, source: Path, address: str) -> None:
    from .harness import run_send_to_exit

    result = run_send_to_exit(procs, address, source, timeout=30)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "send")


@pytest.mark.timeout(60)
def test_send_bad_relay_addresses_are_usage_errors(procs, tmp_path):
    """Each address its own ./send; the cases run at once."""
    make_file(tmp_path / "f.bin")
    addresses = ["nonsense", "127.0.0.1:0", "127.0.0.1:99999", "::1:9021"]
    run_cases(
        {
            address: functools.partial(check_bad_relay_address, procs, tmp_path / "f.bin", address)
            for address in addresses
        }
    )


# -- 12. every failure is one line without traceback -------------------------------------------


@pytest.mark.timeout(120)
def test_failures_are_one_line_without_traceback(relay, start_send, run_receive, procs, tmp_path):
    """A tour of failure cases; each stderr ends in exactly one `prog: error:` line."""
    from .harness import run_send_to_exit

    words = valid_words()
    seen: list[str] = []

    def check(result, prog, rc):
        assert result.returncode == rc, (result.argv, result.stderr)
        seen.append(assert_exact_one_line_error(result.stderr, prog))

    check(run_receive(relay, "-".join(["999", *words]), tmp_path / "o1", timeout=30), "receive", 5)
    check(run_receive(relay, "hello", tmp_path / "o2", timeout=30), "receive", 2)
    check(
        run_receive(f"127.0.0.1:{closed_port()}", "-".join(["1", *words]), tmp_path / "o3"),
        "receive",
        4,
    )
    check(run_send_to_exit(procs, relay, tmp_path / "nope.bin", timeout=30), "send", 3)
    make_file(tmp_path / "f.bin")
    check(
        run_send_to_exit(procs, f"127.0.0.1:{closed_port()}", tmp_path / "f.bin", timeout=30),
        "send",
        4,
    )

    sender = start_send(relay, tmp_path / "f.bin", extra_args=["--wrong-codes", "1"])
    assert CODE_RE.match(sender.code)
    check(
        run_receive(relay, wrong_words_code(sender.code), tmp_path / "o4", timeout=30), "receive", 6
    )
    assert sender.wait(30) == EXIT_WRONG_CODE
    seen.append(assert_one_line_error(sender.stderr(), "send"))

    for line in seen:
        assert len(line) < 300, f"error line too long: {line!r}"


# -- nobody can read the code ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["closed pipe", "/dev/full"])
def test_send_whose_stdout_cannot_take_the_code_says_so_and_exits_3(relay, tmp_path, where):
    source = tmp_path / "f.bin"
    make_file(source)
    argv, cwd = invocation("send")
    with open(os.devnull if where == "closed pipe" else "/dev/full", "wb") as full:
        proc = procs.spawn(
            [*argv, relay.address, source],
            cwd=cwd,
            stdout=subprocess.PIPE if where == "closed pipe" else full,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
    try:
        if proc.stdout is not None:
            proc.stdout.close()  # the reader went away before the code came
        _, err = proc.communicate(timeout=30)
    finally:
        procs.kill(proc)
    assert proc.returncode == EXIT_LOCAL_FILE, err
    assert_exact_one_line_error(err.decode(), "send", "cannot write the code")


# -- a person at a terminal -------------------------------------------------------------------


def test_send_at_a_terminal_shows_the_receive_line_on_stderr_and_only_the_code_on_stdout(
    relay, tmp_path
):
    source = tmp_path / "f.bin"
    make_file(source)
    primary, secondary = pty.openpty()
    argv, cwd = invocation("send")
    proc = procs.spawn(
        [*argv, relay.address, source],
        cwd=cwd, stdout=subprocess.PIPE, stderr=secondary, env=clean_env(),
    )  # fmt: skip
    os.close(secondary)
    try:
        code = procs.read_line(proc, 30)
        assert CODE_RE.fullmatch(code), code
        seen = b""
        deadline = time.monotonic() + 20
        while b"\n" not in seen and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                seen += os.read(primary, 4096)
        assert seen.decode().strip() == (
            f"send: on the other computer, run: ./receive {relay.address} {code} DIR"
        )
    finally:
        procs.stop(proc)
        os.close(primary)


@pytest.mark.timeout(90)
def test_a_tree_failing_mid_send_tells_the_receiver_no_sender_side_path(
    relay, start_send, run_receive, tmp_path
):
    """The sender's own error names its local file; its ABORT names only the error's
    class, with a messages.REASON_* reason, like the receiver's (client/peer.abort_for)."""
    top = tmp_path / "src" / "photos"
    make_file(top / "a.txt", 1000)
    make_file(top / "sub" / "b.bin", 1000)
    sender = start_send(relay, top)
    # Walked already: `sub` becomes a file, so opening sub/b.bin fails (not a
    # directory), a local error whose message holds the sender's absolute path.
    (top / "sub" / "b.bin").unlink()
    (top / "sub").rmdir()
    (top / "sub").write_bytes(b"in the way")
    result = run_receive(relay, sender.code, tmp_path / "out", timeout=60)
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert_one_line_error(result.stderr, "receive", "the sender gave up", "could not send")
    assert str(tmp_path) not in result.stderr
    assert "Not a directory" not in result.stderr  # the error's own words stay home
    assert sender.wait(30) == EXIT_LOCAL_FILE
    assert_one_line_error(sender.stderr(), "send", str(top / "sub" / "b.bin"))
    assert_nothing_stored(tmp_path / "out")
