"""Life-cycle edges: interrupts, a shrinking source, relay shutdown, timeouts, code reuse,
forgiving code input, special files."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import pytest

from ferry.errors import (
    EXIT_INTERRUPTED,
    EXIT_LOCAL_FILE,
    EXIT_PEER_GONE,
    EXIT_RELAY_REFUSED,
    EXIT_RELAY_UNREACHABLE,
    EXIT_SOURCE_CHANGED,
    EXIT_TIMEOUT,
)
from ferry_testing.files import RESUME_GLOB, assert_nothing_stored, leftovers, sparse_file
from ferry_testing.waiting import wait_until

from .harness import (
    assert_exact_one_line_error,
    assert_one_line_error,
    dir_is_empty,
    frozen_mid_transfer,
    ipv6_loopback_available,
    paced_stream,
    run_cases,
    run_send_to_exit,
    valid_words,
    wait_mid_transfer,
)

GIB = 1024**3


@pytest.mark.timeout(120)
def test_receiver_interrupted_mid_transfer_exits_130_and_keeps_only_a_resumable_partial(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        _src,
        sender,
        receiver,
        outdir,
    ):
        os.kill(receiver.proc.pid, signal.SIGINT)
        rc = receiver.wait(30)
    assert rc == EXIT_INTERRUPTED, receiver.stderr()
    assert_one_line_error(receiver.stderr(), "receive", "interrupted")
    assert_nothing_stored(outdir, "big.bin")
    assert len(list(outdir.glob(RESUME_GLOB))) == 1  # kept on purpose: resume
    assert sender.wait(60) != 0, sender.stderr()
    assert_one_line_error(sender.stderr(), "send")


@pytest.mark.timeout(120)
def test_sender_interrupted_mid_transfer_exits_130_receiver_fails_cleanly(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "receiver") as (
        _src,
        sender,
        receiver,
        outdir,
    ):
        os.kill(sender.proc.pid, signal.SIGINT)
        rc = sender.wait(30)
    assert rc == EXIT_INTERRUPTED, sender.stderr()
    assert_one_line_error(sender.stderr(), "send", "interrupted")
    assert receiver.wait(60) != 0, receiver.stderr()
    assert_one_line_error(receiver.stderr(), "receive")
    assert_nothing_stored(outdir, "big.bin")


@pytest.mark.timeout(120)
def test_receiver_terminated_mid_transfer_leaves_only_a_resumable_partial(
    relay, start_send, start_receive, tmp_path
):
    """SIGTERM (what `kill`, systemd or a closing terminal send) leaves no debris, only
    the 0600 partial that lets the next receive resume."""
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        _src,
        _sender,
        receiver,
        outdir,
    ):
        os.kill(receiver.proc.pid, signal.SIGTERM)
        rc = receiver.wait(30)
    assert rc != 0
    assert_nothing_stored(outdir, "big.bin")
    assert len(list(outdir.glob(RESUME_GLOB))) == 1


@pytest.mark.timeout(120)
def test_source_shrinking_mid_transfer_fails_both_sides_cleanly(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        src,
        sender,
        receiver,
        outdir,
    ):
        os.truncate(src, GIB // 2)
    # A changed source ends that attempt only: nothing stored, the code still good.
    assert receiver.wait(60) == EXIT_SOURCE_CHANGED, receiver.stderr()
    assert_one_line_error(receiver.stderr(), "receive", "big.bin changed")
    assert_nothing_stored(outdir, "big.bin")
    assert wait_until(lambda: "still waiting" in sender.stderr(), 10), sender.stderr()
    assert "big.bin changed while it was being sent" in sender.stderr()
    assert sender.running()


@pytest.mark.own_relay
@pytest.mark.timeout(120)
def test_relay_sigterm_lets_active_transfer_finish_then_exits(
    relay, start_send, start_receive, tmp_path
):
    stream = paced_stream(start_send, relay)
    outdir = tmp_path / "out"
    receiver = start_receive(relay, stream.sender.code, outdir)
    stream.feed()
    wait_mid_transfer(outdir, 0)
    os.kill(relay.pid, signal.SIGTERM)
    assert wait_until(lambda: "shutting down" in relay.log(), 10), relay.log()
    stream.feed()  # bytes sent after the SIGTERM still go through
    stream.end()
    assert receiver.wait(90) == 0, receiver.stderr()
    assert stream.sender.wait(30) == 0, stream.sender.stderr()
    assert (outdir / "big.bin").stat().st_size == stream.sent
    assert relay.proc.wait(timeout=40) == 0, relay.log()


@pytest.mark.timeout(60)
def test_sender_with_short_wait_and_no_receiver_exits_9(procs, relay, tmp_path, start_send):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100)
    started = time.monotonic()
    sender = start_send(relay, src, extra_args=["--wait", "1"])
    rc = sender.wait(30)
    assert rc == EXIT_TIMEOUT, sender.stderr()
    assert time.monotonic() - started < 20
    assert sender.stdout_rest == b"", "send printed more than the code"
    assert_one_line_error(sender.stderr(), "send")


def check_code_typed_loosely(relay, start_send, run_receive, root: Path, style: str) -> None:
    src = root / "f.bin"
    root.mkdir()
    data = os.urandom(5000)
    src.write_bytes(data)
    sender = start_send(relay, src)
    typed = {
        "upper": sender.code.upper(),
        "spaces": sender.code.replace("-", " "),
        "padded": f"  {sender.code}  ",
    }[style]
    result = run_receive(relay, typed, root / "out")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (root / "out" / "f.bin").read_bytes() == data


@pytest.mark.timeout(60)
def test_codes_typed_loosely_are_accepted(relay, start_send, run_receive, tmp_path):
    """Each style its own transfer; the transfers run at once."""
    run_cases(
        {
            style: functools.partial(
                check_code_typed_loosely, relay, start_send, run_receive, tmp_path / style, style
            )
            for style in ["upper", "spaces", "padded"]
        }
    )


@pytest.mark.timeout(60)
def test_code_is_dead_after_a_successful_transfer(relay, start_send, run_receive, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"once")
    sender = start_send(relay, src)
    assert run_receive(relay, sender.code, tmp_path / "out").returncode == 0
    assert sender.wait(30) == 0
    again = tmp_path / "again"
    result = run_receive(relay, sender.code, again, timeout=30)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "unknown code")
    assert dir_is_empty(again)


@pytest.mark.timeout(120)
def test_second_receiver_during_transfer_is_refused_first_completes(
    relay, start_send, start_receive, run_receive, tmp_path
):
    stream = paced_stream(start_send, relay)  # in flight until the test ends its input
    outdir = tmp_path / "out"
    first = start_receive(relay, stream.sender.code, outdir)
    stream.feed()
    wait_mid_transfer(outdir, 0)
    other = tmp_path / "other"
    result = run_receive(relay, stream.sender.code, other, timeout=30)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert_exact_one_line_error(result.stderr, "receive")
    assert dir_is_empty(other)
    stream.feed()
    stream.end()
    assert first.wait(90) == 0, first.stderr()
    assert stream.sender.wait(30) == 0, stream.sender.stderr()
    assert (outdir / "big.bin").stat().st_size == stream.sent
    assert leftovers(outdir) == []


@pytest.mark.timeout(60)
def test_send_of_a_device_is_local_file_error(procs, relay):
    result = run_send_to_exit(procs, relay, "/dev/zero", timeout=30)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "send")


@pytest.mark.timeout(60)
def test_send_of_a_fifo_fails_fast_instead_of_hanging(procs, relay, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = run_send_to_exit(procs, relay, fifo, timeout=15)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert result.stdout == ""
    assert_exact_one_line_error(result.stderr, "send")


@pytest.mark.timeout(60)
def test_relay_on_all_interfaces_serves_ipv6_loopback_client(
    relay_factory, start_send, run_receive, tmp_path
):
    if not ipv6_loopback_available():
        pytest.skip("IPv6 loopback is not available")
    relay = relay_factory(listen=":0", host="127.0.0.1")
    src = tmp_path / "f.bin"
    data = os.urandom(3000)
    src.write_bytes(data)
    sender = start_send(relay.at("::1"), src)
    result = run_receive(relay.at("127.0.0.1"), sender.code, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sender.wait(30) == 0, sender.stderr()
    assert (tmp_path / "out" / "f.bin").read_bytes() == data


@pytest.mark.own_relay
@pytest.mark.timeout(60)
def test_relay_on_busy_port_fails_with_message(relay, procs, logdir):
    from .harness import invocation, run_program

    argv, cwd = invocation("relay", "rel")
    result = run_program(procs, [*argv, f"127.0.0.1:{relay.port}"], cwd, timeout=20)
    assert result.returncode == EXIT_RELAY_UNREACHABLE, result.stderr  # relay: cannot listen
    assert "Traceback" not in result.stderr
    assert "relay: error:" in result.stderr
    assert relay.alive()
    assert wait_until(relay.alive, 0.1)


@pytest.mark.own_relay
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("how", "expected"),
    [("SIGKILL", EXIT_PEER_GONE), ("SIGTERM", EXIT_RELAY_REFUSED)],  # lost / "shutting down"
)
def test_relay_stopping_while_sender_waits_ends_sender_promptly(
    relay, start_send, tmp_path, how, expected
):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100)
    sender = start_send(relay, src)  # the code is printed: the sender waits at the relay
    os.kill(relay.pid, getattr(signal, how))
    rc = sender.wait(20)
    assert rc == expected, sender.stderr()
    assert_one_line_error(sender.stderr(), "send")
    assert sender.stdout_rest == b""


class _FakeServer:
    """A TCP server on 127.0.0.1 that answers every connection with fixed bytes, then closes."""

    def __init__(self, reply: bytes) -> None:
        import socket
        import threading

        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(256)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


NOT_RELAYS: dict[str, tuple[bytes, int]] = {
    "http": (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", EXIT_RELAY_UNREACHABLE),
    "closes": (b"", EXIT_PEER_GONE),  # a relay that failed could do the same: no proof
    "binary": (b"\x00\xff" * 100, EXIT_RELAY_UNREACHABLE),
    "other-line": (b"OK\n", EXIT_RELAY_UNREACHABLE),
}


def check_not_a_relay(procs, run_receive, root: Path, reply: bytes, exit_code: int) -> None:
    root.mkdir()
    server = _FakeServer(reply)
    try:
        address = f"127.0.0.1:{server.port}"
        src = root / "f.bin"
        src.write_bytes(b"x")
        sent = run_send_to_exit(procs, address, src, timeout=40)
        code = "-".join(["3", *valid_words()])
        got = run_receive(address, code, root / "out", timeout=40)
    finally:
        server.close()
    assert sent.returncode == exit_code, sent.stderr  # not a relay (proved) / lost
    assert sent.stdout == "", sent.stdout
    assert_exact_one_line_error(sent.stderr, "send")
    assert got.returncode == exit_code, got.stderr
    assert_exact_one_line_error(got.stderr, "receive")
    assert_nothing_stored(root / "out")


@pytest.mark.timeout(60)
def test_clients_talking_to_something_that_is_not_a_relay_fail_in_one_line(
    procs, run_receive, tmp_path
):
    """Each reply from its own server to its own ./send and ./receive; the cases run at once."""
    run_cases(
        {
            name: functools.partial(
                check_not_a_relay, procs, run_receive, tmp_path / name, reply, exit_code
            )
            for name, (reply, exit_code) in NOT_RELAYS.items()
        }
    )


def interrupt_mid_transfer(procs, logdir, relay, src: Path, outdir: Path) -> None:
    """One round: Ctrl-C the receiver while bytes flow; exit 130, one line, no trace."""
    from ferry_testing.procs import kill

    from .harness import start_receive, start_send

    # Uncompressed: a sparse file's zeros compress 1,000-fold and would be across at once.
    sender = start_send(procs, logdir, relay, src, extra_args=["--no-compress"])
    receiver = start_receive(procs, logdir, relay, sender.code, outdir)
    wait_mid_transfer(outdir, GIB)
    os.kill(receiver.proc.pid, signal.SIGINT)
    rc = receiver.wait(30)
    kill(sender.proc)
    stderr = receiver.stderr()
    lines = [line for line in stderr.splitlines() if line.strip()]
    # The error line, last; before it at most the line saying what was kept.
    kept = [line for line in lines[:-1] if not line.startswith("receive: kept the ")]
    assert rc == EXIT_INTERRUPTED and "Traceback" not in stderr and not kept, (
        f"exit {rc}, stderr:\n{stderr}"
    )
    assert lines[-1:] == ["receive: error: interrupted"], f"exit {rc}, stderr:\n{stderr}"
    assert not leftovers(outdir), f"temporary file left {leftovers(outdir)}"


@pytest.mark.timeout(120)
def test_receiver_interrupted_repeatedly_never_prints_a_traceback(relay, procs, logdir, tmp_path):
    """Ctrl-C while bytes flow, several times: always exit 130 with one line, never a trace.

    Probabilistic by nature (the interrupt must land while the receiver handles a read);
    a few rounds make an intermittent traceback show up with good odds. The rounds are
    independent transfers and run at once.
    """
    src = sparse_file(tmp_path / "src" / "big.bin", GIB)
    run_cases(
        {
            f"round {round_}": functools.partial(
                interrupt_mid_transfer, procs, logdir, relay, src, tmp_path / f"out{round_}"
            )
            for round_ in range(8)
        }
    )
