"""Things going wrong around a transfer: processes killed mid-way, junk at the relay,
many transfers at once."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest

from ferry.errors import EXIT_PEER_GONE, EXIT_RELAY_REFUSED
from ferry_testing.files import assert_nothing_stored, leftovers

from .harness import assert_one_line_error, frozen_mid_transfer

GIB = 1024**3


# -- 9. killed mid-transfer ----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_sender_killed_mid_transfer_receiver_exits_7_and_leaves_nothing(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "receiver") as (
        _src,
        sender,
        receiver,
        outdir,
    ):
        os.kill(sender.proc.pid, signal.SIGKILL)
        sender.wait(30)
    rc = receiver.wait(60)
    assert rc == EXIT_PEER_GONE, receiver.stderr()
    message = assert_one_line_error(receiver.stderr(), "receive")
    assert "sender went away" in message, message
    assert_nothing_stored(outdir, "big.bin")


@pytest.mark.own_relay
@pytest.mark.timeout(120)
def test_receiver_killed_mid_transfer_sender_exits_7_with_clear_message(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "sender") as (
        _src,
        sender,
        receiver,
        outdir,
    ):
        os.kill(receiver.proc.pid, signal.SIGKILL)
        receiver.wait(30)
    rc = sender.wait(60)
    assert rc == EXIT_PEER_GONE, sender.stderr()
    message = assert_one_line_error(sender.stderr(), "send")
    assert "receiver went away" in message, message
    assert not (outdir / "big.bin").exists()
    assert relay.alive()


@pytest.mark.own_relay
@pytest.mark.timeout(120)
def test_relay_killed_mid_transfer_both_exit_nonzero_nothing_stored(
    relay, start_send, start_receive, tmp_path
):
    with frozen_mid_transfer(relay, start_send, start_receive, tmp_path, "receiver") as (
        _src,
        sender,
        receiver,
        outdir,
    ):
        os.kill(relay.pid, signal.SIGKILL)
        relay.proc.wait(timeout=10)
    receive_rc = receiver.wait(60)
    send_rc = sender.wait(60)
    assert receive_rc == EXIT_PEER_GONE, receiver.stderr()
    assert send_rc == EXIT_PEER_GONE, sender.stderr()
    clear = re.compile(r"went away|lost|closed|relay", re.I)
    assert clear.search(assert_one_line_error(receiver.stderr(), "receive"))
    assert clear.search(assert_one_line_error(sender.stderr(), "send"))
    assert_nothing_stored(outdir, "big.bin")


@pytest.mark.timeout(60)
def test_sender_killed_while_waiting_makes_code_unknown(relay, start_send, run_receive, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(1000))
    sender = start_send(relay, src)
    os.kill(sender.proc.pid, signal.SIGKILL)
    sender.wait(30)
    # The relay notices the closed control connection: the nameplate is free again.
    deadline = time.monotonic() + 15
    while True:
        result = run_receive(relay, sender.code, tmp_path / "out", timeout=30)
        if result.returncode == EXIT_RELAY_REFUSED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert "unknown code" in result.stderr
    assert_nothing_stored(tmp_path / "out", "f.bin")


# -- 10. junk at the relay ---------------------------------------------------------------------


def read_until_eof(sock: socket.socket, timeout: float = 15) -> tuple[bytes, bool]:
    """All bytes until the relay closes; (data, closed_cleanly)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        return data, False
    except TimeoutError:
        raise AssertionError(f"relay kept the connection open; got {data!r}") from None
    return data, True


TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100c4010000c00303" + "ab" * 32 + "20" + "cd" * 32 + "0020c02bc02fc02cc030cca9cca8"
    "c013c014009c009d002f0035000a0100005700000014001200000f7777772e6578616d706c652e636f6d"
)


@pytest.mark.own_relay
@pytest.mark.timeout(120)
def test_relay_answers_garbage_with_error_and_keeps_serving_real_transfer(
    relay, start_send, run_receive, tmp_path
):
    host, port = relay.host, relay.port
    held: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection((host, port), timeout=10)
        held.append(sock)
        return sock

    try:
        # Idle connections that never say anything, and one that stops mid-line.
        for _ in range(6):
            connect()
        connect().sendall(b"FERRY 1 SE")

        # An HTTP request the web front does not serve: one ERROR line, then the relay closes.
        http = connect()
        http.sendall(b"POST / HTTP/1.1\r\nHost: relay\r\n\r\n")
        answer, clean = read_until_eof(http)
        assert clean, "the relay reset instead of closing after its ERROR line"
        assert answer.startswith(b"ERROR "), answer
        assert answer.endswith(b"\n") and answer.count(b"\n") == 1, answer
        assert len(answer) <= 128
        # A GET is the web app's: one HTTP answer, then the relay closes.
        page = connect()
        page.sendall(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
        answer, clean = read_until_eof(page)
        assert clean and answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]

        # Binary junk: a TLS ClientHello and random bytes. An ERROR line or a reset, never a hang.
        for blob in (TLS_CLIENT_HELLO, os.urandom(4096), b"\x00" * 100 + b"\n"):
            sock = connect()
            sock.sendall(blob)
            answer, _ = read_until_eof(sock)
            assert answer == b"" or answer.startswith(b"ERROR "), answer

        # Well-formed lines the relay must refuse.
        for line, reason in [
            (b"FERRY 2 SEND\n", b"version"),
            (b"FERRY 1 RECV 0\n", b"bad-request"),
            (b"FERRY 1 JOIN 1 " + b"0" * 32 + b"\n", b"bad-request"),
            (b"PONG\n", b"bad-request"),
            (b"X" * 300 + b"\n", b"bad-request"),
        ]:
            sock = connect()
            sock.sendall(line)
            answer, _ = read_until_eof(sock)
            if answer:
                assert answer.startswith(b"ERROR " + reason), (line[:40], answer)

        # Meanwhile a real transfer works, with all the junk connections still open.
        src = tmp_path / "real.bin"
        data = os.urandom(500_000)
        src.write_bytes(data)
        sender = start_send(relay, src)
        result = run_receive(relay, sender.code, tmp_path / "out", timeout=60)
        assert result.returncode == 0, result.stderr
        assert sender.wait(30) == 0, sender.stderr()
        assert (tmp_path / "out" / "real.bin").read_bytes() == data
        assert relay.alive()
    finally:
        for sock in held:
            sock.close()
    assert "Traceback" not in relay.log(), relay.log()


# -- 5. many at once -------------------------------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_32_concurrent_transfers_through_one_relay_all_arrive_intact(
    relay, start_send, start_receive, tmp_path
):
    count = 32
    srcdir = tmp_path / "src"
    srcdir.mkdir()
    payloads = {}
    for i in range(count):
        name = f"file-{i:02d}.bin"
        payloads[name] = os.urandom(200_000)
        (srcdir / name).write_bytes(payloads[name])
    senders = {name: start_send(relay, srcdir / name, read_code=False) for name in payloads}
    for sender in senders.values():
        sender.read_code(timeout=90)
    codes = [s.code for s in senders.values()]
    assert len(set(codes)) == count, codes
    assert len({c.split("-")[0] for c in codes}) == count, "nameplates must differ"

    outdir = tmp_path / "out"
    receivers = {
        name: start_receive(relay, sender.code, outdir) for name, sender in senders.items()
    }
    failures = []
    for name, receiver in receivers.items():
        rc = receiver.wait(180)
        if rc != 0:
            failures.append(f"receive {name}: exit {rc}: {receiver.stderr().strip()}")
    for name, sender in senders.items():
        if receivers[name].proc.returncode != 0:
            continue  # its receiver failed: this sender still waits; teardown kills it
        rc = sender.wait(60)
        if rc != 0:
            failures.append(f"send {name}: exit {rc}: {sender.stderr().strip()}")
    assert not failures, f"{len(failures)} of {count} transfers failed:\n" + "\n".join(failures)
    assert sorted(p.name for p in outdir.iterdir()) == sorted(payloads)
    for name, data in payloads.items():
        assert (outdir / name).read_bytes() == data, name
    assert leftovers(outdir) == []
