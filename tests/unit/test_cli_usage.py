"""Usage errors: one line on stderr, exit code 2, for each program."""

from __future__ import annotations

import pytest

from ferry.cli import receive, relay, send


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
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert ": error: " in err and "--help" in err
