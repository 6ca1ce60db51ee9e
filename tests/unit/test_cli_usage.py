"""Usage errors: one line on stderr, exit code 2, for each program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ferry import __version__
from ferry.cli import main as cli_main
from ferry.cli import receive, relay, relay_serve, send
from ferry.codes import parse_code
from ferry.errors import EXIT_USAGE


@pytest.mark.parametrize(
    ("program", "argv"),
    [
        (send, []),
        (send, ["relay:1", "file", "--bogus"]),
        (send, ["relay:1", "file", "--wait", "soon"]),
        (receive, []),
        (relay, []),
        (relay, [":9021", "--idle-timeout", "forever"]),
    ],
)
def test_cli_with_bad_arguments_prints_one_line_and_exits_2(
    program: object, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        program.main(argv)  # type: ignore[attr-defined]
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert ": error: " in err and "--help" in err


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("FERRY_WAIT", "xyz", "FERRY_WAIT"),
        ("FERRY_WAIT", "nan", "FERRY_WAIT"),
        ("FERRY_WAIT", "-5", "FERRY_WAIT"),
        ("FERRY_ATTEMPTS", "abc", "FERRY_ATTEMPTS"),
        ("FERRY_ATTEMPTS", "0", "FERRY_ATTEMPTS"),
        ("FERRY_WRONG_CODES", "many", "FERRY_WRONG_CODES"),
        ("FERRY_WRONG_CODES", "0", "FERRY_WRONG_CODES"),
        ("FERRY_RECORD_SIZE", "12", "FERRY_RECORD_SIZE"),
    ],
)
def test_send_with_a_bad_environment_setting_prints_one_line_and_exits_2(
    variable: str,
    value: str,
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(variable, value)
    source = tmp_path / "f"
    source.write_bytes(b"x")
    assert send.main(["127.0.0.1:1", str(source)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_send_wrong_codes_flag_must_be_a_positive_count(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        send.main(["127.0.0.1:1", "file", "--wrong-codes", value])
    assert exited.value.code == EXIT_USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_send_wait_flag_must_be_a_positive_finite_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        send.main(["127.0.0.1:1", "file", "--wait", value])
    assert exited.value.code == EXIT_USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_relay_with_an_unknown_log_format_in_the_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FERRY_RELAY_LOG_FORMAT", "xml")
    assert relay.main(["127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "FERRY_RELAY_LOG_FORMAT" in err, err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FERRY_RELAY_LIMIT_LOOPBACK", "banana"),  # was taken as "off" without a word
        ("FERRY_RELAY_IDLE_TIMEOUT", "soon"),
        ("FERRY_RELAY_MAX_HANDSHAKES", "-5"),
        ("FERRY_RELAY_MAX_HANDSHAKES", "1.5"),
        ("FERRY_RELAY_IDLE_TIMEOUT", "nan"),
    ],
)
def test_relay_with_a_bad_environment_setting_names_it_in_one_line_and_exits_2(
    variable: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert relay.main(["127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and variable in err and "Traceback" not in err, err


def test_relay_boolean_environment_settings_take_yes_and_no_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FERRY_RELAY_LIMIT_LOOPBACK", "yes")
    assert relay_serve.build_parser().parse_args(["127.0.0.1:9"]).limit_loopback is True
    monkeypatch.setenv("FERRY_RELAY_LIMIT_LOOPBACK", "off")
    assert relay_serve.build_parser().parse_args(["127.0.0.1:9"]).limit_loopback is False


def test_relay_that_cannot_write_its_ready_file_says_so_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir" / "ready"
    assert relay.main(["127.0.0.1:0", "--ready-file", str(missing), "-q"]) == 3
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "cannot write" in err, err


@pytest.mark.parametrize("program", [send, receive, relay])
def test_every_program_has_version(program: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        program.main(["--version"])  # type: ignore[attr-defined]
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip().endswith(__version__)


def test_ferry_entry_point_names_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["foo"]) == 2
    err = capsys.readouterr().err
    assert (
        err.splitlines()[0]
        == "ferry: error: unknown command 'foo' (expected relay, send or receive)"
    )


def test_python_dash_m_ferry_runs_the_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ferry", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == f"ferry {__version__}"


def test_send_hint_for_a_terminal_names_the_relay_and_the_code() -> None:
    code = parse_code("7-guitar-orbit-velvet")
    assert send.receive_hint("relay.example.com:9021", code) == (
        "send: on the other computer, run: ./receive relay.example.com:9021 "
        "7-guitar-orbit-velvet DIR"
    )


@pytest.mark.parametrize(
    ("argv", "usage", "receive"),
    [
        ([sys.executable, "-m", "ferry.cli.main"], "usage: send ", "./receive"),  # the shims
        (
            [sys.executable, "-m", "ferry"],
            "usage: python3 -m ferry send ",
            "python3 -m ferry receive",
        ),
    ],
)
def test_send_help_names_the_receive_command_the_way_send_was_started(
    argv: list[str], usage: str, receive: str
) -> None:
    done = subprocess.run(
        [*argv, "send", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.startswith(usage), done.stdout
    assert f"{receive} RELAY CODE DIR" in " ".join(done.stdout.split())


def test_run_as_the_ferry_command_usage_help_and_hint_say_ferry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ferry.cli import main as entry
    from ferry.cli.launcher import SCRIPT

    with pytest.raises(SystemExit) as exited:
        entry.main(["send", "--help"])  # the installed `ferry` script calls main()
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: ferry send ") and "ferry receive RELAY CODE DIR" in out
    with pytest.raises(SystemExit) as exited:
        entry.main(["receive"])  # no RELAY
    assert exited.value.code == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith("ferry receive: error: ") and "(see ferry receive --help)" in error
    code = parse_code("7-guitar-orbit-velvet")
    assert send.receive_hint("relay.example.com:9021", code, SCRIPT) == (
        "send: on the other computer, run: ferry receive relay.example.com:9021 "
        "7-guitar-orbit-velvet DIR"
    )
