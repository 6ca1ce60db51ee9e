"""The relay cluster, end to end: real redis-server, real HAProxy (deploy/haproxy.cfg),
three real relay nodes with --cluster, the real ./send and ./receive.

Skipped locally when redis-server or haproxy is missing; with CI=true they must run
(ferry_testing/cluster.py). The cluster must carry 200 concurrent transfers through the
balancer; on the 2-core machines the suite runs on, that many client processes take
minutes, so CONCURRENT (default 40, about 15 s, env FERRY_CLUSTER_TRANSFERS) is what runs
as processes, and the full 200 run as clients inside this process (the real Sender and
Receiver classes, the same code the programs run) through the same balancer.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from ferry.errors import EXIT_RELAY_REFUSED
from ferry.protocol import rendezvous as rv
from ferry.relay import forward
from ferry_testing import procs as ptest
from ferry_testing.cluster import (
    BALANCER_SOURCE,
    SECRET,
    TTL,
    Cluster,
    cluster,
    kill_hard,
    require_binaries,
)
from ferry_testing.files import sha256_file
from ferry_testing.waiting import wait_for
from tests.relay.harness import PAKE_RECORD
from tests.sockmem import process_sockets

from .harness import CODE_RE, assert_one_line_error, run_send_to_exit

pytestmark = pytest.mark.slow

MIB = 1 << 20
BUDGET = 4 * MIB  # RelayConfig.transfer_budget's default
PUMP_BUFFER = 64 * 1024  # RelayConfig.pump_buffer's default: one pipe per direction
CONCURRENT = int(os.environ.get("FERRY_CLUSTER_TRANSFERS", "40"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the tests that leave it as they found it."""
    require_binaries()
    with cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own, for tests that kill parts of it."""
    require_binaries()
    with cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


def payload(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def transfer(start_send, run_receive, tmp_path: Path, send_to: str, receive_from: str,
             name: str = "file.bin", size: int = 200_000) -> None:  # fmt: skip
    """One real send/receive, sender at send_to, receiver at receive_from; SHA checked."""
    source = payload(tmp_path / name, size)
    outdir = tmp_path / f"out-{name}"
    outdir.mkdir()
    sender = start_send(send_to, source)
    assert CODE_RE.match(sender.code), sender.code
    result = run_receive(receive_from, sender.code, outdir)
    assert result.returncode == 0, (result.stderr, sender.stderr())
    assert sender.wait() == 0, sender.stderr()
    assert sha256_file(outdir / name) == sha256_file(source)


# -- raw rendezvous, to hold pipes open at will ----------------------------------------


def line_from(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def connect(address: str, small: bool = False) -> socket.socket:
    """A connection; small: 32 KiB socket buffers, so a stalled peer's bytes wait at the relay."""
    host, port = ptest.split_address(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if small:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def raw_pipe(
    owner: str, receiver_at: str, data_at: str, small: bool = False
) -> tuple[socket.socket, ...]:
    """A paired pipe by hand: control to owner, receiver and sender data wherever given.

    Returns (control, receiver, data) once both ends heard PAIRED.
    """
    control = connect(owner)
    control.sendall(rv.encode(rv.SendRequest()))
    assigned = rv.parse_relay_line(line_from(control))
    assert isinstance(assigned, rv.NameplateAssigned), assigned
    receiver = connect(receiver_at, small)
    # The relay pairs a claim once its PAKE record is behind it.
    receiver.sendall(rv.encode(rv.ReceiveRequest(assigned.nameplate)) + PAKE_RECORD)
    incoming = rv.parse_relay_line(line_from(control))
    assert isinstance(incoming, rv.Incoming), incoming
    data = connect(data_at, small)
    data.sendall(rv.encode(rv.JoinRequest(assigned.nameplate, incoming.ticket)))
    assert line_from(receiver) == b"PAIRED\n"
    assert line_from(data) == b"PAIRED\n"
    record = b""
    while len(record) < len(PAKE_RECORD):
        chunk = data.recv(len(PAKE_RECORD) - len(record))
        assert chunk, f"closed after {record!r}"
        record += chunk
    assert record == PAKE_RECORD
    return control, receiver, data


def echo_through(receiver: socket.socket, data: socket.socket, size: int = 300_000) -> None:
    """Bytes both ways through a pipe, all of them arriving."""
    blob = os.urandom(size)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(data.sendall, blob)
        got = b""
        while len(got) < size:
            chunk = receiver.recv(65536)
            assert chunk, f"pipe closed after {len(got)} bytes"
            got += chunk
        pending.result()
    assert got == blob
    receiver.sendall(b"ack")
    assert data.recv(3) == b"ack"


def close_all(*socks: socket.socket) -> None:
    for sock in socks:
        sock.close()


# -- through the balancer -----------------------------------------------------------------


def _registered(cluster: Cluster, key: str) -> bool:
    return cluster.redis.get(key) is not None


def test_seed_session_through_the_balancer(shared, start_send, run_receive, tmp_path):
    address = shared.balancer.address
    transfer(start_send, run_receive, tmp_path, address, address, size=1_000_000)
    # HAProxy speaks PROXY v2 to the nodes: their lines name the clients, never the
    # balancer's own source address.
    logs = "".join(node.log() for node in shared.nodes.values())
    assert "peer=127.0.0.1:" in logs, logs[-2000:]
    assert BALANCER_SOURCE not in logs, logs[-2000:]


def test_sender_and_receiver_on_different_nodes_are_forwarded(
    shared, start_send, run_receive, tmp_path
):
    node1, node2 = shared.nodes["node1"], shared.nodes["node2"]
    before = node2.metrics()["cluster_forwarded_total"]
    transfer(start_send, run_receive, tmp_path, node1.address, node2.address)
    assert node2.metrics()["cluster_forwarded_total"] > before
    assert "forwarded to node1" in node2.log()


def test_concurrent_transfers_spread_over_every_node(shared, start_send, run_receive, tmp_path):
    address = shared.balancer.address
    before = {name: node.metrics() for name, node in shared.nodes.items()}
    sources = [payload(tmp_path / f"f{i}.bin", 50_000 + 997 * i) for i in range(CONCURRENT)]
    senders = [start_send(address, source) for source in sources]
    codes = [sender.code for sender in senders]
    assert len(set(code.split("-")[0] for code in codes)) == CONCURRENT  # cluster-wide unique

    def receive(index):
        outdir = tmp_path / f"out{index}"
        outdir.mkdir()
        return run_receive(address, codes[index], outdir).returncode

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(receive, range(CONCURRENT)))
    assert results == [0] * CONCURRENT
    assert [sender.wait() for sender in senders] == [0] * CONCURRENT
    for index, source in enumerate(sources):
        assert sha256_file(tmp_path / f"out{index}" / source.name) == sha256_file(source)
    for name, node in shared.nodes.items():
        after = node.metrics()
        # Round robin: every node owned some transfers and forwarded some connections.
        assert after["transfers_total"] > before[name]["transfers_total"], name
        assert after["cluster_forwarded_total"] > before[name]["cluster_forwarded_total"], name


IN_PROCESS = 200


def test_200_concurrent_transfers_through_the_balancer_all_sha_verified(shared, tmp_path):
    """200 transfers at once, placed round robin by HAProxy, every file checked."""
    import asyncio
    import hashlib

    from ferry.address import parse_address
    from ferry.client.progress import NoProgress
    from ferry.client.receiver import Receiver, prepare_directory
    from ferry.client.sender import Sender
    from ferry.client.sources import Outgoing
    from ferry.codes import Code
    from ferry.config import ClientConfig

    address = parse_address(shared.balancer.address)
    config = ClientConfig(wait_timeout=120, connect_timeout=30, handshake_timeout=60)
    before = {name: node.metrics() for name, node in shared.nodes.items()}
    sources = [payload(tmp_path / f"c{i}.bin", 20_000 + 131 * i) for i in range(IN_PROCESS)]

    async def one(index: int) -> str:
        shown: asyncio.Future[Code] = asyncio.get_running_loop().create_future()
        outgoing = Outgoing.open(str(sources[index]))
        try:
            sender = Sender(address, outgoing, config, NoProgress(), shown.set_result)
            sending = asyncio.create_task(sender.run())
            code = await asyncio.wait_for(asyncio.shield(shown), 60)
            outdir = prepare_directory(str(tmp_path / f"in{index}"))
            stored = await Receiver(address, code, outdir, config, NoProgress()).run()
            assert stored is not None
            await sending
            return hashlib.sha256(stored.read_bytes()).hexdigest()
        finally:
            outgoing.file.close()

    async def everything() -> list[str]:
        return await asyncio.wait_for(asyncio.gather(*map(one, range(IN_PROCESS))), 240)

    digests = asyncio.run(everything())
    assert digests == [sha256_file(source) for source in sources]
    for name, node in shared.nodes.items():
        after = node.metrics()
        assert after["transfers_total"] > before[name]["transfers_total"], name
        assert after["cluster_forwarded_total"] > before[name]["cluster_forwarded_total"], name


# -- node authentication ----------------------------------------------------------------


def node_handshake(address: str) -> tuple[socket.socket, str]:
    sock = connect(address)
    sock.sendall(forward.hello_line("intruder"))
    return sock, forward.parse_challenge(line_from(sock))


def test_forged_node_connections_are_refused(shared):
    node = shared.nodes["node1"]
    before = node.metrics()["cluster_node_auth_failures_total"]
    # A wrong secret.
    sock, challenge = node_handshake(node.address)
    sock.sendall(forward.auth_line(b"not the cluster secret!", challenge, "intruder", "1.2.3.4:5"))
    assert line_from(sock).startswith(b"ERROR unauthorized ")
    sock.close()
    # The right secret, but replaying an answer made for another connection's challenge.
    first, challenge = node_handshake(node.address)
    replayed = forward.auth_line(SECRET, challenge, "intruder", "1.2.3.4:5")
    first.close()
    sock, _ = node_handshake(node.address)
    sock.sendall(replayed + rv.encode(rv.ReceiveRequest(1)))
    assert line_from(sock).startswith(b"ERROR unauthorized ")
    sock.close()
    # No AUTH at all: straight to a request.
    sock, _ = node_handshake(node.address)
    sock.sendall(rv.encode(rv.ReceiveRequest(1)))
    assert line_from(sock).startswith(b"ERROR unauthorized ")
    sock.close()
    assert node.metrics()["cluster_node_auth_failures_total"] == before + 3
    # The control: a node with the secret and this challenge gets through.
    sock, challenge = node_handshake(node.address)
    sock.sendall(forward.auth_line(SECRET, challenge, "intruder", "1.2.3.4:5"))
    sock.sendall(rv.encode(rv.ReceiveRequest(999_999)))
    assert line_from(sock).startswith(b"ERROR unknown-nameplate ")
    sock.close()


# -- failures ---------------------------------------------------------------------------


def test_a_killed_node_fails_only_its_own_transfers(own, start_send, run_receive, tmp_path):
    node1, node2, node3 = (own.nodes[f"node{i}"] for i in (1, 2, 3))
    doomed = raw_pipe(node1.address, node2.address, node3.address)
    survivor = raw_pipe(node2.address, node3.address, node3.address)
    keys = own.redis.command("KEYS", "ferry:np:*").split("\r\n")
    nameplates = [key for key in keys if key.startswith("ferry:np:")]
    owned_by_node1 = [key for key in nameplates if (own.redis.get(key) or "").startswith("node1 ")]
    assert len(nameplates) == 2 and len(owned_by_node1) == 1, nameplates

    kill_hard(node1)

    # node1's pipe, forwarded through node2 and node3, ends: its ends see EOF or a reset.
    _, receiver, data = doomed
    receiver.settimeout(10)
    with pytest.raises((ConnectionError, AssertionError)):
        echo_through(receiver, data)
    # Everyone else's carries on.
    echo_through(survivor[1], survivor[2])
    # node1's nameplates leave the directory within the TTL.
    wait_for(lambda: all(own.redis.get(key) is None for key in owned_by_node1), "expiry", 3 * TTL)
    # New transfers through the balancer go to the live nodes.
    address = own.balancer.address
    for index in range(3):
        transfer(start_send, run_receive, tmp_path, address, address, name=f"after{index}.bin")
    close_all(*doomed, *survivor)


def test_redis_down_refuses_new_senders_keeps_running_pipes_and_recovers(
    own, procs, start_send, run_receive, tmp_path
):
    node1, node2, node3 = (own.nodes[f"node{i}"] for i in (1, 2, 3))
    running = raw_pipe(node1.address, node2.address, node3.address)
    waiting = start_send(node1.address, payload(tmp_path / "waiting.bin", 100_000))
    nameplate = waiting.code.split("-")[0]
    assert (own.redis.get(f"ferry:np:{nameplate}") or "").startswith("node1 ")

    own.redis.stop()

    # A new sender is refused with one clear line, whichever node it reaches.
    result = run_send_to_exit(procs, node2.address, payload(tmp_path / "new.bin", 1000))
    assert result.returncode == EXIT_RELAY_REFUSED, result.stderr
    assert_one_line_error(result.stderr, "send", "cannot take this request")
    assert result.stderr.lower().count("try again") == 1, result.stderr  # advice said once
    # A receiver reaching another node cannot be located: refused the same way.
    outdir = tmp_path / "out-refused"
    outdir.mkdir()
    refused = run_receive(node3.address, waiting.code, outdir)
    assert refused.returncode == EXIT_RELAY_REFUSED, refused.stderr
    assert_one_line_error(refused.stderr, "receive", "cannot take this request")
    # The running pipe, across three nodes, carries on.
    echo_through(running[1], running[2])
    close_all(*running)
    wait_for(
        lambda: node2.metrics()["cluster_redis_errors_total"] > 0, "node2 to see Redis gone", 10
    )

    own.redis.start()  # same port, empty: the nodes must register again by themselves

    wait_for(lambda: own.redis.get(f"ferry:np:{nameplate}") is not None, "re-register", 5 * TTL)
    assert (own.redis.get(f"ferry:np:{nameplate}") or "").startswith("node1 ")
    for name in own.nodes:
        wait_for(partial(_registered, own, f"ferry:node:{name}"), name, 5 * TTL)
    # The waiting sender's nameplate is found from another node again.
    outdir = tmp_path / "out-waiting"
    outdir.mkdir()
    result = run_receive(node3.address, waiting.code, outdir)
    assert result.returncode == 0, result.stderr
    assert waiting.wait() == 0
    assert sha256_file(outdir / "waiting.bin") == sha256_file(tmp_path / "waiting.bin")
    address = own.balancer.address
    transfer(start_send, run_receive, tmp_path, address, address, name="after.bin")


def test_a_draining_node_finishes_its_pipes(own):
    node1, node2 = own.nodes["node1"], own.nodes["node2"]
    pipe = raw_pipe(node1.address, node2.address, node2.address)
    node1.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in node1.log(), "node1 to drain", 10)
    echo_through(pipe[1], pipe[2])
    close_all(*pipe)
    assert node1.wait(15) == 0


def test_every_node_a_stalled_transfer_crosses_holds_at_most_the_budget(shared):
    node1, node2, node3 = (shared.nodes[f"node{i}"] for i in (1, 2, 3))
    # Owner node1; the receiver forwarded by node2, the sender's data by node3: the
    # bytes cross all three. The receiver never reads.
    control, receiver, data = raw_pipe(node1.address, node2.address, node3.address, small=True)
    data.setblocking(False)
    chunk = b"\0" * 65536
    pushed, last_progress = 0, time.monotonic()
    peaks = dict.fromkeys(("node1", "node2", "node3"), 0)
    while time.monotonic() - last_progress < 1.0 and pushed < 64 * MIB:
        try:
            pushed += data.send(chunk)
            last_progress = time.monotonic()
        except BlockingIOError:
            select.select([], [data], [], 0.1)
            for name in peaks:
                held = sum(s.held for s in process_sockets(shared.nodes[name].pid))
                peaks[name] = max(peaks[name], held)
    for name in peaks:
        held = sum(s.held for s in process_sockets(shared.nodes[name].pid))
        peaks[name] = max(peaks[name], held)
    # Back-pressure reached the sender: it could not push more than the nodes hold.
    assert 0 < pushed < 3 * BUDGET, pushed
    for name, peak in peaks.items():
        # Kernel socket memory plus the pump's two pipes, on each node crossed.
        assert peak + 2 * PUMP_BUFFER <= BUDGET, (name, peak)
    # ...and the budget is spent where it buys speed: megabytes in flight in total.
    assert sum(peaks.values()) > 3 * MIB, peaks
    close_all(control, receiver, data)


# -- per-network shares -------------------------------------------------------------------

SHARE_FLAGS = ("--limit-loopback", "--max-active-transfers", "8", "--fair-share-addresses", "4")
"""8 transfers; once 2 run (a quarter), one network may hold ceil(3/4 * 8 / 4) = 2."""


def connect_from(source: str, address: str) -> socket.socket:
    """A connection from one loopback address (each is its own network to the relay)."""
    host, port = ptest.split_address(address)
    sock = socket.socket(socket.AF_INET)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def claim_from(source: str, at: str, nameplate: int) -> tuple[socket.socket, bytes]:
    """A claim left waiting for its join; what the relay said within a second (b"": held)."""
    sock = connect_from(source, at)
    sock.sendall(rv.encode(rv.ReceiveRequest(nameplate)) + PAKE_RECORD)  # as ./receive does
    sock.settimeout(1.0)
    try:
        said = line_from(sock)
    except TimeoutError:
        said = b""
    sock.settimeout(10)
    return sock, said


def test_a_network_gets_its_share_whichever_node_it_lands_on(tmp_path_factory):
    require_binaries()
    with cluster(tmp_path_factory.mktemp("cluster"), 3, *SHARE_FLAGS) as own:
        owner, via2, via3 = (own.nodes[f"node{i}"].address for i in (1, 2, 3))
        senders = []
        for _ in range(9):
            control = connect_from("127.0.0.1", owner)
            control.sendall(rv.encode(rv.SendRequest()))
            assigned = rv.parse_relay_line(line_from(control))
            assert isinstance(assigned, rv.NameplateAssigned), assigned
            senders.append((control, assigned.nameplate))
        # One network claims eight nameplates, alternating between the two nodes that
        # do not hold them (each claim is forwarded to node1 and waits for its join).
        claims = [
            claim_from("127.0.0.5", (via2, via3)[i % 2], nameplate)
            for i, (_, nameplate) in enumerate(senders[:8])
        ]
        held = [sock for sock, said in claims if said == b""]
        refused = [said for _, said in claims if said]
        assert len(held) <= 2, f"one network holds {len(held)} of 8 transfers"
        assert refused and all(said.startswith(b"ERROR busy ") for said in refused), refused
        # Another network still gets in, through a forwarding node, and pairs.
        control, nameplate = senders[8]
        receiver, said = claim_from("127.0.0.6", via2, nameplate)
        assert said == b"", said
        incoming = rv.parse_relay_line(line_from(control))
        assert isinstance(incoming, rv.Incoming), incoming
        data = connect_from("127.0.0.1", owner)
        data.sendall(rv.encode(rv.JoinRequest(nameplate, incoming.ticket)))
        assert line_from(receiver) == b"PAIRED\n"
        assert line_from(data) == b"PAIRED\n"
        close_all(receiver, data, *(sock for sock, _ in claims), *(c for c, _ in senders))
