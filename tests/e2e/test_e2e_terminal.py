"""./receive at a terminal, run by the real programs on a pseudo-terminal: the
"what is coming" line, --ask, and a sender that goes away (or a Ctrl-C) while the prompt
waits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOR_TERMINAL,
    EXIT_PEER_GONE,
    EXIT_REFUSED_BY_PEER,
)
from ferry.protocol import messages
from ferry.protocol.records import RecordType
from ferry_testing.waiting import wait_until

from .fakes import Call, FakeSender, RawRecord, Step
from .harness import (
    Registry,
    Terminal,
    assert_one_line_error,
    dir_is_empty,
    invocation,
    run_program,
)
from .test_e2e_anything import receive, start_send_with

ESC = "\x1b"
PROMPT = "receive: accept? [y/N] "
GONE_WITHIN = 10.0
"""Seconds a receiver at the prompt may take to notice that its sender went away."""


@pytest.fixture
def terminals(procs: Registry) -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.close()


def receive_at_terminal(
    procs: Registry, terminals: list[Terminal], relay: object, *args: str
) -> Terminal:
    argv, cwd = invocation("receive")
    terminal = Terminal(procs, [*argv, str(relay), *args], cwd)
    terminals.append(terminal)
    return terminal


def coming_lines(screen: str) -> list[str]:
    """The "what is coming" lines on a screen."""
    return [line for line in screen.split("\n") if line.startswith("receive: coming: ")]


def tree_with_six_top_level_names(src: Path) -> list[str]:
    """d/ (2 files, 1 subdirectory) and five files, one with an escape sequence in its
    name; 7 files, 2 directories, 22 bytes. The arguments for ./send."""
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "x").write_bytes(b"x" * 10)
    (src / "d" / "sub" / "y").write_bytes(b"y" * 5)
    names = ["a.txt", f"esc{ESC}[31mred", "f3", "f4", "f5"]
    for name in names:
        (src / name).write_bytes(b"z")
    (src / "f5").write_bytes(b"z" * 3)
    return [str(src / name) for name in ["d", *names]]


TREE_LINE = "receive: coming: 7 files, 2 dirs, 22 B: d/, a.txt, esc[31mred, f3, f4 and 1 more"


@pytest.mark.timeout(120)
def test_terminal_shows_what_is_coming_once_for_a_tree_and_a_pipe_shows_nothing(
    procs, logdir, relay, tmp_path, terminals
):
    args = tree_with_six_top_level_names(tmp_path / "src")
    sender = start_send_with(procs, logdir, relay, args)
    out = tmp_path / "out"
    terminal = receive_at_terminal(procs, terminals, relay, sender.code, str(out))
    assert terminal.wait() == 0, terminal.screen()
    assert sender.wait(30) == 0, sender.stderr()
    screen = terminal.screen()
    assert coming_lines(screen) == [TREE_LINE], screen  # the escape sequence is not shown
    assert "7/7 files" in screen, screen  # the progress bar counts files as well as bytes
    assert "\r7 files, 2 dirs: 100%" in screen, screen  # the sender's words for the tree
    assert "file(s)" not in screen, screen
    assert (out / "esc[31mred").read_bytes() == b"z"

    # The same offer to a receiver whose output goes to pipes: no "coming" line, only
    # the notice that the name with an escape sequence was stored under another name.
    sender = start_send_with(procs, logdir, relay, args)
    argv, cwd = invocation("receive")
    piped = run_program(procs, [*argv, str(relay), sender.code, str(tmp_path / "piped")], cwd)
    assert piped.returncode == 0, piped.stderr
    renamed = 'receive: stored "esc[31mred", offered as "esc?[31mred"\n'
    assert (piped.stdout, piped.stderr) == ("", renamed)
    assert sender.wait(30) == 0, sender.stderr()


@pytest.mark.timeout(120)
def test_the_offer_line_and_the_bar_speak_binary_units_only(
    procs, logdir, relay, tmp_path, terminals
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(5_000_000))
    sender = start_send_with(procs, logdir, relay, [str(src / "big.bin")])
    terminal = receive_at_terminal(procs, terminals, relay, sender.code, str(tmp_path / "out"))
    assert terminal.wait() == 0, terminal.screen()
    assert sender.wait(30) == 0, sender.stderr()
    screen = terminal.screen()
    assert coming_lines(screen) == ["receive: coming: big.bin (4.8 MiB)"], screen
    assert "4.8 MiB/4.8 MiB [" in screen, screen
    bar = screen[screen.rindex("4.8 MiB/4.8 MiB [") :].split("\n")[0]
    assert re.search(r", \d+\.\d (KiB|MiB|GiB)/s\]$", bar), bar
    assert not re.search(r"\d[kMG]B/s|\d\.\d+M |bytes", screen), screen  # no SI, no raw counts


@pytest.mark.timeout(120)
def test_terminal_shows_what_is_coming_once_for_a_single_file_and_a_pipe_shows_nothing(
    procs, logdir, relay, tmp_path, terminals
):
    src = tmp_path / "src"
    src.mkdir()
    name = f"report{ESC}[2J.txt"
    (src / name).write_bytes(os.urandom(1234))
    sender = start_send_with(procs, logdir, relay, [str(src / name)])
    out = tmp_path / "out"
    terminal = receive_at_terminal(procs, terminals, relay, sender.code, str(out))
    assert terminal.wait() == 0, terminal.screen()
    assert sender.wait(30) == 0, sender.stderr()
    screen = terminal.screen()
    assert coming_lines(screen) == ["receive: coming: report[2J.txt (1.2 KiB)"], screen
    assert (out / "report[2J.txt").read_bytes() == (src / name).read_bytes()

    sender = start_send_with(procs, logdir, relay, [str(src / name)])
    argv, cwd = invocation("receive")
    piped = run_program(procs, [*argv, str(relay), sender.code, str(tmp_path / "piped")], cwd)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "" and coming_lines(piped.stderr) == [], piped.stderr
    assert sender.wait(30) == 0, sender.stderr()


@pytest.mark.timeout(120)
def test_ask_at_a_terminal_no_refuses_and_keeps_the_code_alive_then_yes_accepts(
    procs, logdir, relay, tmp_path, terminals
):
    args = tree_with_six_top_level_names(tmp_path / "src")
    sender = start_send_with(procs, logdir, relay, args)
    out = tmp_path / "out"
    declining = receive_at_terminal(procs, terminals, relay, sender.code, str(out), "--ask")
    screen = declining.wait_for(PROMPT)
    assert coming_lines(screen) == [TREE_LINE], screen
    # Before the answer, nothing but the hidden staging directory.
    assert [p.name for p in out.iterdir() if not p.name.startswith(".ferry-")] == []
    declining.type(b"n\n")
    assert declining.wait() == EXIT_REFUSED_BY_PEER, declining.screen()
    assert declining.screen().rstrip("\n").endswith("declined")
    assert not out.exists()  # made for this offer, removed again: nothing was stored
    assert wait_until(lambda: "refused" in sender.stderr(), 15), sender.stderr()
    assert sender.running(), "a refusal must keep the code alive"

    accepting = receive_at_terminal(procs, terminals, relay, sender.code, str(out), "--ask")
    accepting.wait_for(PROMPT)
    accepting.type(b"y\n")
    assert accepting.wait() == 0, accepting.screen()
    assert coming_lines(accepting.screen()) == [TREE_LINE]
    assert sender.wait(30) == 0, sender.stderr()
    assert (out / "d" / "sub" / "y").read_bytes() == b"y" * 5


def assert_gone_promptly(terminal: Terminal, out: Path, exit_code: int, *needles: str) -> None:
    """The receiver left its prompt within GONE_WITHIN: one error line, on a line of its
    own, the exit code, and nothing in out."""
    try:
        status = terminal.proc.wait(GONE_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the receiver still waits on its prompt after {GONE_WITHIN}s: {terminal.screen()!r}"
        ) from None
    terminal.wait()
    screen = terminal.screen()
    assert status == exit_code, screen
    lines = screen.rstrip("\n").split("\n")
    assert len(lines) == 3 and coming_lines(lines[0]) and lines[1] == PROMPT, screen
    assert_one_line_error(lines[-1], "receive", *needles)
    assert dir_is_empty(out), "the receiver left something in DIR"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "signum", [signal.SIGKILL, signal.SIGINT], ids=["sender-killed", "sender-interrupted"]
)
def test_ask_prompt_ends_when_the_sender_goes_away_with_exit_7_and_nothing_stored(
    procs, logdir, relay, tmp_path, terminals, signum
):
    args = tree_with_six_top_level_names(tmp_path / "src")
    sender = start_send_with(procs, logdir, relay, args)
    out = tmp_path / "out"
    terminal = receive_at_terminal(procs, terminals, relay, sender.code, str(out), "--ask")
    terminal.wait_for(PROMPT)
    os.killpg(sender.pid, signum)
    assert_gone_promptly(terminal, out, EXIT_PEER_GONE, "the sender went away")


@pytest.mark.timeout(120)
def test_ask_prompt_ends_when_the_sender_aborts_and_shows_its_reason(
    procs, relay, tmp_path, terminals
):
    prompted = threading.Event()
    abort = messages.encode_abort(messages.Abort("error", "the receiver stopped responding"))
    steps: list[Step] = [Call(lambda: prompted.wait(30)), RawRecord(RecordType.ABORT, abort)]
    fake = FakeSender(relay.host, relay.port, "a.bin", 10, before_answer=steps).start()
    out = tmp_path / "out"
    out.mkdir()
    terminal = receive_at_terminal(procs, terminals, relay, fake.wait_code(), str(out), "--ask")
    terminal.wait_for(PROMPT)
    prompted.set()
    assert_gone_promptly(
        terminal, out, EXIT_REFUSED_BY_PEER, "the sender gave up: the receiver stopped responding"
    )
    fake.join()
    assert fake.answer is None, "the receiver answered after the sender gave up"


@pytest.mark.timeout(120)
def test_ctrl_c_at_the_ask_prompt_exits_130_at_once_and_stores_nothing(
    procs, logdir, relay, tmp_path, terminals
):
    args = tree_with_six_top_level_names(tmp_path / "src")
    sender = start_send_with(procs, logdir, relay, args)
    out = tmp_path / "out"
    terminal = receive_at_terminal(procs, terminals, relay, sender.code, str(out), "--ask")
    terminal.wait_for(PROMPT)
    os.killpg(terminal.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert_gone_promptly(terminal, out, EXIT_INTERRUPTED, "interrupted")
    # Like a refusal, leaving before answering keeps the sender's code alive.
    assert wait_until(lambda: "left before answering" in sender.stderr(), 10), sender.stderr()
    assert sender.proc.poll() is None
    result = receive(procs, relay, sender.code, str(out))
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()


@pytest.mark.timeout(120)
def test_ask_takes_its_answer_from_the_line_after_a_code_read_from_stdin(
    procs, logdir, relay, tmp_path
):
    (tmp_path / "f.txt").write_bytes(b"hello")
    sender = start_send_with(procs, logdir, relay, [str(tmp_path / "f.txt")])
    argv, cwd = invocation("receive")
    out = tmp_path / "out"
    stdin = f"{sender.code}\ny\n".encode()  # one write: both lines arrive together
    result = run_program(procs, [*argv, str(relay), "-", str(out), "--ask"], cwd, input=stdin)
    assert result.returncode == 0, result.stderr
    assert (out / "f.txt").read_bytes() == b"hello"
    assert sender.wait(30) == 0, sender.stderr()


OSC52_AND_CLEAR = f"{ESC}]52;c;ZWNobyBwd25lZA=={ESC}\\{ESC}[2J{ESC}[H".encode()


@pytest.mark.timeout(120)
def test_a_file_to_stdout_at_a_terminal_is_refused_before_data_and_the_code_works_with_force(
    procs, logdir, relay, tmp_path, terminals
):
    # Escape sequences that write the clipboard (OSC 52) and clear the screen.
    payload = b"hello\n" + OSC52_AND_CLEAR + b"\x00binary"
    (tmp_path / "evil.txt").write_bytes(payload)
    sender = start_send_with(procs, logdir, relay, [str(tmp_path / "evil.txt")])
    refused = receive_at_terminal(procs, terminals, relay, sender.code, "-")
    assert refused.wait() == EXIT_NOT_FOR_TERMINAL, refused.screen()
    screen = refused.screen()
    assert ESC not in screen and "hello" not in screen, screen
    assert_one_line_error(screen.replace("\r", ""), "receive", "--force")
    assert wait_until(lambda: "refused" in sender.stderr(), 15), sender.stderr()
    assert sender.running(), "the refusal must keep the code alive"

    forced = receive_at_terminal(procs, terminals, relay, sender.code, "-", "--force")
    assert forced.wait() == 0, forced.screen()
    assert OSC52_AND_CLEAR.decode() in forced.screen()  # what --force asked for: raw bytes
    assert sender.wait(30) == 0, sender.stderr()
