"""`./relay HOST:0 --ready-file PATH`: the system picks the port, the file says which."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.address import Address
from ferry.cli.relay_serve import serve
from ferry.config import RelayConfig
from ferry.errors import EXIT_OK
from ferry.relay.listen import open_listeners
from ferry.relay.server import Relay
from ferry_testing import procs
from ferry_testing.procs import ROOT

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", ":0", "0"])
def test_relay_on_port_zero_writes_the_bound_address_to_its_ready_file(
    tmp_path: Path, listen: str
) -> None:
    ready = tmp_path / "ready"
    log = tmp_path / "relay.log"
    with open(log, "wb") as err:
        proc = procs.spawn([ROOT / "relay", listen, "--ready-file", ready], stderr=err)
    with procs.running(proc):
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        text = ready.read_text()
        assert text.endswith("\n") and text.count("\n") == 1
        port = int(text.strip().rpartition(":")[2])
        assert 0 < port < 65536
        assert f":{port} " in log.read_text()  # the log line names the same port (host:port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"FERRY 1 SEND\n")
            assert sock.recv(128).startswith(b"NAMEPLATE ")


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM's default action (end the process) for the test, whatever was set before."""
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_the_relay_handles_sigterm_before_it_says_it_is_ready(default_sigterm: None) -> None:
    # Ready (the file, the "listening" line) must mean SIGTERM is handled too: a
    # supervisor or test may stop the relay at once. serve() is the program's loop;
    # its on_ready is what writes the ready file. Checked in order here, not by racing
    # a process: the handler is in place when on_ready runs, and a SIGTERM raised from
    # on_ready itself drains and returns 0.
    signalled: list[bool] = []

    def ready() -> None:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "SIGTERM not handled"
        signalled.append(True)
        signal.raise_signal(signal.SIGTERM)

    config = RelayConfig(drain_timeout=5)
    listeners = open_listeners(Address("127.0.0.1", 0))
    try:
        assert await serve(Relay(config), config, listeners, on_ready=ready) == EXIT_OK
    finally:
        for sock in listeners:
            sock.close()
    assert signalled == [True]


def test_relay_signalled_the_moment_it_is_ready_drains_and_exits_0(tmp_path: Path) -> None:
    # The real program, twice: main() hands serve() the on_ready that writes the file
    # (the order itself is checked above, without a race).
    for _ in range(2):
        relay = procs.start_relay(tmp_path)
        try:
            relay.signal(signal.SIGTERM)
            assert relay.wait(15) == 0, relay.log()
        finally:
            relay.kill()
        assert "Traceback" not in relay.log()
