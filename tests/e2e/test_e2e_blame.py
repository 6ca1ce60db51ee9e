"""Messages that name the right party, and the small things a new user meets first, with
the real programs: a relay killed mid-transfer, a receiver's disk filling up, a port that
is not a ferry relay, a refused connection, a DIR that a failed receive must not create,
a read-only DIR, bad FERRY_DEBUG / FERRY_SETUP_TIMEOUT values, the relay's log line.
"""

from __future__ import annotations

import functools
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.errors import (
    EXIT_LOCAL_FILE,
    EXIT_PEER_GONE,
    EXIT_REFUSED_BY_PEER,
    EXIT_RELAY_UNREACHABLE,
    EXIT_USAGE,
)
from ferry_testing import procs as shared
from ferry_testing.files import sparse_file
from ferry_testing.procs import Relay, clean_env

from .harness import (
    assert_exact_one_line_error,
    assert_one_line_error,
    closed_port,
    frozen_mid_transfer,
    invocation,
    ipv6_loopback_available,
    run_cases,
    run_program,
)
from .test_e2e_resume_tree import start_stdin_send

MIB = 1024 * 1024


# -- who is to blame ------------------------------------------------------------------------


@pytest.mark.own_relay
@pytest.mark.timeout(180)
def test_a_relay_killed_mid_transfer_is_a_lost_connection_on_both_sides_not_the_peer(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "receiver") as (
        _, sender, receiver, _,
    ):  # fmt: skip
        relay.proc.kill()
        assert sender.wait(60) == EXIT_PEER_GONE
    assert receiver.wait(60) == EXIT_PEER_GONE
    for prog, peer, said in (("send", "receiver", sender.stderr()),
                             ("receive", "sender", receiver.stderr())):  # fmt: skip
        line = assert_one_line_error(said, prog, "connection lost after ")
        assert line.endswith(f"(the relay or the {peer} went away)"), line
        assert f"the {peer} went away after" not in said


def small_filesystem(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at where (root only), unmounted afterwards."""
    where.mkdir(parents=True)
    mount = ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs"]
    made = subprocess.run([*mount, str(where)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    yield from small_filesystem(tmp_path / "small", "2m")


@pytest.mark.timeout(120)
def test_a_receiver_out_of_disk_space_says_so_on_both_sides_and_names_the_file(
    procs, logdir, relay, run_receive, tmp_path, full_disk
):
    source = sparse_file(tmp_path / "src" / "data.bin", 16 * MIB)
    sender = start_stdin_send(procs, logdir, relay, source)
    result = run_receive(relay, sender.code, full_disk / "out")
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_one_line_error(result.stderr, "receive", "cannot write stream.bin", "disk space")
    assert sender.wait(60) == EXIT_REFUSED_BY_PEER, sender.stderr()
    assert_exact_one_line_error(
        sender.stderr(), "send", "the receiver ran out of disk space"
    )  # fmt: skip


class Server:
    """A TCP server on 127.0.0.1 that is not a ferry relay: each connection gets `answer`
    (after reading the client's first bytes if `read_first`), then stays open."""

    def __init__(self, answer: bytes, read_first: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer, self.read_first = answer, read_first
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.read_first:
                conn.recv(1024)
            conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "answer, read_first, speaks",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", False, ""),
        (b"\x15\x03\x01\x00\x02\x02\x46", True, ""),  # a TLS alert
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", True, " (it answered in HTTP)"),
    ],
    ids=["ssh-banner", "tls-alert", "http"],
)
def test_a_server_that_is_not_a_relay_is_named_so_at_once(procs, tmp_path, answer, read_first,
                                                          speaks):  # fmt: skip
    server = Server(answer, read_first)
    try:
        address = f"127.0.0.1:{server.port}"
        for argv in (
            [*invocation("send")[0], address, "--text", "hi"],
            [*invocation("receive")[0], address, "7-guitar-orbit-velvet", str(tmp_path / "out")],
        ):
            result = run_program(procs, argv, tmp_path, timeout=30)
            assert result.returncode == EXIT_RELAY_UNREACHABLE, result.stderr
            assert_exact_one_line_error(
                result.stderr, argv[0].rsplit("/", 1)[-1], f"{address} is not a ferry relay{speaks}"
            )  # fmt: skip
            assert result.elapsed < 4.0, result.elapsed  # not a timeout
    finally:
        server.close()


@pytest.mark.timeout(120)
def test_the_relays_metrics_port_given_to_a_client_is_not_a_relay_at_once(procs, logdir, tmp_path):
    relay = shared.start_relay(logdir, metrics=True)
    procs.procs.append(relay.proc)
    address = f"127.0.0.1:{relay.metrics_port}"
    argv, cwd = invocation("send")
    result = run_program(procs, [*argv, address, "--text", "hi"], cwd, timeout=30)
    assert result.returncode == EXIT_RELAY_UNREACHABLE, result.stderr
    assert_exact_one_line_error(result.stderr, "send", f"{address} is not a ferry relay")
    assert result.elapsed < 4.0, result.elapsed  # the endpoint answers 400 at once
    assert relay.metrics()["connections_open"] == 0  # and it still serves /metrics


# -- small ones -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_refused_connection_reads_connection_refused(procs, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    argv, _ = invocation("receive")
    result = run_program(procs, [*argv, address, "7-guitar-orbit-velvet", "out"], tmp_path)
    assert result.returncode == EXIT_RELAY_UNREACHABLE
    assert_exact_one_line_error(
        result.stderr, "receive", f"relay not reachable at {address} (connection refused)"
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_receive_creates_dir_only_when_something_is_stored(
    procs, relay, start_send, run_receive, tmp_path
):
    missing = tmp_path / "never" / "made"
    argv, cwd = invocation("receive")
    unreachable = f"127.0.0.1:{closed_port()}"
    result = run_program(procs, [*argv, unreachable, "7-guitar-orbit-velvet", str(missing)], cwd)
    assert result.returncode == EXIT_RELAY_UNREACHABLE
    assert not (tmp_path / "never").exists()
    sender = start_send(relay, "--text", extra_args=["hello"])
    result = run_receive(relay, sender.code, missing)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert not (tmp_path / "never").exists()
    (tmp_path / "f.txt").write_bytes(b"data")
    sender = start_send(relay, tmp_path / "f.txt")
    assert run_receive(relay, sender.code, missing).returncode == 0
    assert (missing / "f.txt").read_bytes() == b"data"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    yield from small_filesystem(tmp_path / "ro", "1m", "ro")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("inside", ["", "sub"])
def test_a_read_only_dir_is_named_read_only_not_permission_denied(
    procs, relay, read_only_dir, tmp_path, inside
):
    target = read_only_dir / inside if inside else read_only_dir
    argv, cwd = invocation("receive")
    result = run_program(procs, [*argv, str(relay), "7-guitar-orbit-velvet", str(target)], cwd)
    assert result.returncode == EXIT_LOCAL_FILE
    assert_exact_one_line_error(result.stderr, "receive", "read-only file system")


def check_bad_shared_variable(procs, root: Path, name: str, value: str, prog: str) -> None:
    argv, cwd = invocation(prog)
    args = {
        "send": ["127.0.0.1:9", "--text", "hi"],
        "receive": ["127.0.0.1:9", "7-guitar-orbit-velvet", str(root / "out")],
        "relay": ["127.0.0.1:0"],
    }[prog]
    env = {**clean_env(), name: value}
    result = run_program(procs, [*argv, *args], cwd, timeout=30, env=env)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_exact_one_line_error(result.stderr, prog, name, repr(value))
    assert not (root / "out").exists()


@pytest.mark.timeout(60)
def test_a_bad_shared_variable_is_one_line_and_exit_2(procs, tmp_path):
    """Each program with each bad variable, its own process; the cases run at once."""
    variables = [("FERRY_DEBUG", "maybe"), ("FERRY_SETUP_TIMEOUT", "abc")]
    run_cases(
        {
            f"{prog}-{name}": functools.partial(
                check_bad_shared_variable, procs, tmp_path / f"{prog}-{name}", name, value, prog
            )
            for name, value in variables
            for prog in ["send", "receive", "relay"]
        }
    )


def test_the_relay_logs_where_it_listens_as_host_port(relay_factory):
    relays: list[tuple[Relay, str]] = [(relay_factory(), "127.0.0.1:{port}")]
    if ipv6_loopback_available():
        relays.append((relay_factory(listen="[::1]:0", host="::1"), "[::1]:{port}"))
    for started, form in relays:
        [line] = [line for line in started.log().splitlines() if "listening on" in line]
        assert f"listening on {form.format(port=started.port)} (" in line, line
        assert not re.search(r"\('|\(\d", line.split("listening on")[1]), line
