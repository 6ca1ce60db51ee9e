"""The browser link ./send prints at a terminal, and its QR code (--qr), run by the real
programs: ./relay --web-url, ./send with stderr on a pseudo-terminal and stdout on a
pipe, as a person runs `./send RELAY FILE --qr` while a script reads the code."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.cli.qr import qr_lines
from ferry.errors import EXIT_USAGE
from ferry_testing.procs import Relay, clean_env, read_first_line
from ferry_testing.qr import decode_matrix, half_block_matrix

from .harness import (
    Registry,
    Terminal,
    assert_exact_one_line_error,
    invocation,
    run_cases,
    run_program,
    run_receive,
    start_relay,
)
from .test_e2e_anything import start_send_with

pytestmark = pytest.mark.timeout(120)

WEB_URL = "https://relay.example:9021/"


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.close()


def send_at_terminal(
    procs: Registry, terminals: list[Terminal], relay: object, path: Path, *flags: str
) -> tuple[Terminal, str]:
    """./send RELAY PATH FLAGS with stderr (and stdin) on a terminal, stdout on a pipe;
    the terminal and the code read from stdout."""
    argv, cwd = invocation("send")
    terminal = Terminal(procs, [*argv, str(relay), str(path), *flags], cwd, stdout=subprocess.PIPE)
    terminals.append(terminal)
    assert terminal.proc.stdout is not None
    line, rest = read_first_line(terminal.proc.stdout.fileno(), 30, terminal.proc.pid)
    assert rest == b"", rest
    return terminal, line.decode()


def finish(
    procs: Registry, relay: Relay, terminal: Terminal, code: str, path: Path, out: Path
) -> str:
    """Receive the file, wait for the sender; what the sender wrote on stdout after the code."""
    result = run_receive(procs, relay, code, out)
    assert result.returncode == 0, result.stderr
    assert terminal.wait() == 0, terminal.screen()
    assert (out / path.name).read_bytes() == path.read_bytes()
    assert terminal.proc.stdout is not None
    return terminal.proc.stdout.read().decode()


@pytest.fixture(scope="module")
def web_url_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """./relay --web-url WEB_URL, shared by the tests that only need it to give the link."""
    registry = Registry()
    try:
        yield start_relay(
            registry, tmp_path_factory.mktemp("web-url-relay"), extra_args=["--web-url", WEB_URL]
        )
    finally:
        registry.kill_all()


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.txt"
    path.write_bytes(os.urandom(3000))
    return path


def test_send_at_a_terminal_prints_the_link_and_its_qr_code_and_stdout_is_the_code_only(
    procs, web_url_relay, terminals, hello, tmp_path
):
    relay = web_url_relay
    terminal, code = send_at_terminal(procs, terminals, relay, hello, "--qr")
    link = f"{WEB_URL}#{code}"
    drawn = "\n".join(qr_lines(link))  # what the encoder makes of the link, drawn
    screen = terminal.wait_for(f"send: or open this link in a browser: {link}\n{drawn}\n")
    assert decode_matrix(half_block_matrix(screen)) == [link], screen  # and it reads back
    assert f"receive {relay} {code} DIR" in screen, screen  # the receive hint stays first
    assert screen.index("receive ") < screen.index(link) < screen.index("\x1b[30;107m")
    assert code not in screen.replace(link, "").replace(f"{relay} {code} DIR", ""), screen
    assert finish(procs, relay, terminal, code, hello, tmp_path / "out") == ""  # stdout: code only


def test_send_at_a_terminal_without_qr_prints_the_link_and_no_code_drawing(
    procs, web_url_relay, terminals, hello, tmp_path
):
    relay = web_url_relay
    terminal, code = send_at_terminal(procs, terminals, relay, hello)
    terminal.wait_for(f"send: or open this link in a browser: {WEB_URL}#{code}\n")
    assert finish(procs, relay, terminal, code, hello, tmp_path / "out") == ""
    assert half_block_matrix(terminal.screen()) == [], terminal.screen()  # no code drawn


def test_send_with_qr_through_a_relay_without_web_url_says_why_in_one_line_and_sends(
    procs, relay, terminals, hello, tmp_path
):
    terminal, code = send_at_terminal(procs, terminals, relay, hello, "--qr")
    terminal.wait_for("send: no QR code: this relay gives no web address for a browser link "
                      "(its operator sets one with --web-url)\n")  # fmt: skip
    assert finish(procs, relay, terminal, code, hello, tmp_path / "out") == ""
    screen = terminal.screen()
    assert "open this link" not in screen and half_block_matrix(screen) == [], screen
    assert "error" not in screen, screen


def test_send_with_qr_whose_stderr_is_not_a_terminal_prints_nothing_of_the_link(
    procs, logdir, web_url_relay, hello, tmp_path
):
    relay = web_url_relay
    sender = start_send_with(procs, logdir, relay, [str(hello), "--qr"])
    result = run_receive(procs, relay, sender.code, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert sender.stdout_rest == b"" and sender.first_line.decode() == sender.code
    assert sender.stderr() == "", sender.stderr()


UNUSABLE_WEB_URLS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "scheme": (["--web-url", "ftp://relay.example/"], {}, "https://"),
    "no-scheme": (["--web-url", "relay.example:9021"], {}, "https://"),
    "fragment": (["--web-url", "https://relay.example/#x"], {}, "fragment"),
    "password": (["--web-url", "https://me:pw@relay.example/"], {}, "password"),
    "no-host": (["--web-url", "https:///"], {}, "host"),
    "long": (["--web-url", "https://relay.example/" + "x" * 100], {}, "at most 100"),
    "env": ([], {"FERRY_RELAY_WEB_URL": "gopher://relay.example/"}, "https://"),
    "no-web": (["--web-url", "https://relay.example/", "--no-web"], {}, "--no-web"),
}


def check_unusable_web_url(procs, args: list[str], env: dict[str, str], words: str) -> None:
    argv, cwd = invocation("relay")
    result = run_program(procs, [*argv, "127.0.0.1:0", *args], cwd, env=clean_env(env), timeout=30)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_exact_one_line_error(result.stderr, "relay", "--web-url", words)


def test_relay_with_an_unusable_web_url_exits_with_one_line_and_the_usage_code(procs):
    """Each setting its own ./relay; the cases run at once."""
    run_cases(
        {
            name: functools.partial(check_unusable_web_url, procs, args, env, words)
            for name, (args, env, words) in UNUSABLE_WEB_URLS.items()
        }
    )
