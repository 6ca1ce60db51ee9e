"""Node-to-node forwarding: a connection for a nameplate held by another node.

Theory of operation. Behind a load balancer, a receiver (or a sender's
data connection) may land on a node other than the one holding its
nameplate (the owner, found in the directory). That node opens an internal
connection to the owner, proves it is a cluster node, replays the client's
first line (and any bytes the client sent early) and from then on splices
the two sockets with the relay's pump. The owner treats the internal
connection as that client: it pairs it, pipes it, refuses it, exactly as a
direct one; its answers flow back through the pump unchanged.

    forwarding node                              owner node
    FERRY 1 NODE <from-id>            --->
                                      <---       CHALLENGE <32 hex, fresh>
    AUTH <hmac> <client-address>      --->
    <the client's first line + early bytes> --->  (served as that client)
    ════ pump: client ⇄ forwarding node ⇄ owner ════

    hmac = HMAC-SHA256(cluster secret, "ferry-node-v1" | challenge | from-id
                       | client-address), hex

Rules this module owns:
- an internal connection is trusted only after its AUTH line carries the
  HMAC of a challenge the owner made for this connection, under the shared
  cluster secret; where it comes from counts for nothing. A bad or missing
  AUTH is refused with ERROR unauthorized (and counted);
- a forwarded connection is never forwarded again (no loops): the owner
  answers unknown-nameplate if it does not hold the nameplate;
- the forwarding node spends the same per-transfer budget as a pipe: the
  data direction's socket buffers from buffers.plan and one pump buffer per
  direction, so every node a transfer crosses holds at most the budget;
- the client's look-up budget and per-address connection slot are spent on
  the node it reached (dialogue.py), the owner does not charge them again (the
  internal connection has no per-address key there);
- the pools' per-network shares hold on both nodes: the forwarding node
  counts a forwarded receiver in its transfer shares, and the owner counts
  it under the client address AUTH carries (Connection.client_key), so a
  network gets the same share whichever node it lands on.

PROXY protocol v2 from the balancer (another change) will give the
forwarding node the client's real address; it is what AUTH carries on.
Standard library only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Final

from ferry.address import parse_address
from ferry.config import RelayConfig
from ferry.errors import (
    BadRequest,
    DirectoryUnavailable,
    InvalidAddress,
    NodeHandshakeFailed,
    Refusal,
)
from ferry.protocol import rendezvous as rv
from ferry.relay import buffers, logs
from ferry.relay.admission import OUT_OF_FDS
from ferry.relay.capacity import Count
from ferry.relay.connection import Connection
from ferry.relay.directory import Directory
from ferry.relay.pump import SPLICE_AVAILABLE, pump
from ferry.relay.session import Ending, PipeReport, Role

REASON_UNAUTHORIZED: Final = "unauthorized"
NODE_HELLO: Final = b"FERRY 1 NODE "
MAC_LABEL: Final = b"ferry-node-v1"
CHALLENGE_HEX: Final = 32
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to reach the owner node and finish the node handshake."""
MIN_SECRET_BYTES: Final = 16
FDS_PER_FORWARD: Final = 1 + 4  # the internal socket, and two kernel pipes when splicing

_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")
_PEER = re.compile(r"[0-9A-Za-z.:\[\]_-]{1,60}")

ReadLine = Callable[[Connection], Awaitable[bytes | None]]


# -- the handshake, no I/O ---------------------------------------------------


def hello_line(node: str) -> bytes:
    return NODE_HELLO + node.encode() + b"\n"


def is_node_hello(line: bytes) -> bool:
    return line.startswith(NODE_HELLO)


def parse_hello(line: bytes) -> str:
    """The calling node's id. Raises Refusal for a malformed hello."""
    node = line[len(NODE_HELLO) :].rstrip(b"\r\n").decode("ascii", "replace")
    if not _NODE_ID.fullmatch(node):
        raise Refusal(REASON_UNAUTHORIZED, "malformed node hello")
    return node


def challenge_line(challenge: str) -> bytes:
    return f"CHALLENGE {challenge}\n".encode()


def parse_challenge(line: bytes) -> str:
    words = line.decode("ascii", "replace").split()
    if len(words) != 2 or words[0] != "CHALLENGE" or len(words[1]) != CHALLENGE_HEX:
        raise NodeHandshakeFailed(f"owner answered {line[:60]!r}")
    return words[1]


def mac(secret: bytes, challenge: str, node: str, peer: str) -> str:
    message = b"|".join([MAC_LABEL, challenge.encode(), node.encode(), peer.encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def auth_line(secret: bytes, challenge: str, node: str, peer: str) -> bytes:
    return f"AUTH {mac(secret, challenge, node, peer)} {peer}\n".encode()


def verify_auth(secret: bytes, challenge: str, node: str, line: bytes) -> str:
    """The client address the AUTH line vouches for. Raises Refusal(unauthorized)."""
    words = line.decode("ascii", "replace").rstrip("\r\n").split(" ")
    if len(words) != 3 or words[0] != "AUTH" or not _PEER.fullmatch(words[2]):
        raise Refusal(REASON_UNAUTHORIZED, "node authentication failed")
    if not hmac.compare_digest(words[1], mac(secret, challenge, node, words[2])):
        raise Refusal(REASON_UNAUTHORIZED, "node authentication failed")
    return words[2]


def printable_peer(peer: str) -> str:
    """A client address as AUTH may carry it."""
    return peer if _PEER.fullmatch(peer) else "unknown"


def peer_host(peer: str) -> str:
    """The host of an address AUTH carried ("[v6]:port" or "v4:port")."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    return peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer


# -- the links between nodes -------------------------------------------------


class NodeLinks:
    """This node's forwarding (outgoing) and node authentication (incoming)."""

    def __init__(
        self,
        config: RelayConfig,
        directory: Directory,
        secret: bytes,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.node = directory.node
        self._secret = secret
        self._clock = clock
        self._plan = buffers.plan(config)
        self._pipes = Count()
        self.forwarded = 0
        self.forwarded_bytes = 0
        self.accepted = 0
        self.auth_failures = 0

    @property
    def pipes(self) -> int:
        """Forwarded connections running now (each an internal socket and a pump)."""
        return self._pipes.value

    def fds_held(self) -> int:
        return self.pipes * (FDS_PER_FORWARD if self.config.use_splice and SPLICE_AVAILABLE else 1)

    def gauges(self) -> dict[str, tuple[str, float]]:
        return {
            "cluster_forwarded_pipes": (
                "Connections forwarded to their owner node now.", self.pipes,
            ),
            "cluster_forwarded_total": (
                "Connections forwarded to another node since start.", self.forwarded,
            ),
            "cluster_forwarded_bytes_total": (
                "Bytes moved by forwarded pipes since start.", self.forwarded_bytes,
            ),
            "cluster_node_connections_total": (
                "Authenticated connections from other nodes since start.", self.accepted,
            ),
            "cluster_node_auth_failures_total": (
                "Internal connections refused: bad or missing node authentication.",
                self.auth_failures,
            ),
        }  # fmt: skip

    # -- incoming: the owner's side ------------------------------------------

    async def accept(
        self, conn: Connection, hello: bytes, read_line: ReadLine
    ) -> tuple[str, bytes]:
        """Authenticate a node's connection; return the client's address AUTH vouched
        for and the client's first line it carries.

        conn.peer becomes the client's address. Raises Refusal (unauthorized,
        timeout) or Closed.
        """
        try:
            node = parse_hello(hello)
            challenge = secrets.token_hex(CHALLENGE_HEX // 2)
            data = challenge_line(challenge)
            if conn.sock.send(data) != len(data):
                raise Refusal(REASON_UNAUTHORIZED, "node did not read its challenge")
            line = await read_line(conn)
            if line is None:
                raise Refusal(rv.REASON_TIMEOUT, "node handshake timed out")
            peer = verify_auth(self._secret, challenge, node, line)
        except Refusal as refusal:
            if refusal.reason == REASON_UNAUTHORIZED:
                self.auth_failures += 1
            raise
        self.accepted += 1
        conn.peer = f"{peer} via {node}"
        conn.from_node = node
        first = await read_line(conn)
        if first is None:
            raise Refusal(rv.REASON_TIMEOUT, "handshake timed out")
        return peer, first

    # -- outgoing: the forwarding node's side ------------------------------

    async def forward(self, conn: Connection, line: bytes, nameplate: int) -> Ending:
        """Splice conn (its first line was `line`) to the node holding nameplate."""
        try:
            owner = await self.directory.locate(nameplate)
        except DirectoryUnavailable:
            raise Refusal(rv.REASON_UNAVAILABLE, "relay cluster directory unavailable") from None
        if owner is None:
            raise Refusal(
                rv.REASON_UNKNOWN_NAMEPLATE, f"no sender is waiting on nameplate {nameplate}"
            )
        upstream = await self._connect(owner.address, conn, line)
        self.forwarded += 1
        try:
            with self._pipes.hold():
                report = await self._pump(conn, upstream)
        finally:
            upstream.close()
        ending = conn.session.pipe_ended(report)
        detail = "; ".join(filter(None, [ending.detail, f"forwarded to {owner.node}"]))
        return Ending(ending.outcome, detail, ending.reason)

    async def _connect(self, address: str, conn: Connection, line: bytes) -> socket.socket:
        """A connection to the owner, authenticated, with the client's line sent on."""
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            where = parse_address(address)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                infos = await loop.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM)
                family, kind, proto, _, sockaddr = infos[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffers.set_both(sock, self._plan.control // 2)
                await loop.sock_connect(sock, sockaddr)
                await loop.sock_sendall(sock, hello_line(self.node))
                answer = rv.LineBuffer()
                while (reply := answer.next_line()) is None:
                    data = await loop.sock_recv(sock, rv.MAX_LINE)
                    if not data:
                        raise NodeHandshakeFailed("owner closed")
                    answer.receive_data(data)
                challenge = parse_challenge(reply)
                peer = printable_peer(conn.peer)
                first = auth_line(self._secret, challenge, self.node, peer) + line
                await loop.sock_sendall(sock, first + conn.lines.take_rest())
        except (OSError, TimeoutError, InvalidAddress, NodeHandshakeFailed, BadRequest) as exc:
            if sock is not None:
                sock.close()
            logs.log.warning("cannot forward to node at %s: %s", address, exc)
            raise Refusal(
                rv.REASON_UNAVAILABLE, "the relay node holding this code is unreachable"
            ) from None
        return sock

    async def _pump(self, conn: Connection, upstream: socket.socket) -> PipeReport:
        """The pump, receiver side as a, with the data direction's budget."""
        if conn.role is Role.RECEIVER:
            receiver, sender = conn.sock, upstream
        else:
            receiver, sender = upstream, conn.sock
        self._plan.apply(sender, receiver)
        conn.session.pipe_started()
        use_splice = self.config.use_splice
        while True:
            try:
                result = await pump(
                    receiver,
                    sender,
                    buffer_size=self._plan.pump,
                    idle_timeout=self.config.idle_timeout,
                    use_splice=use_splice,
                    on_moved=self._count,
                    clock=self._clock,
                )
                break
            except OSError as exc:
                if not use_splice or exc.errno not in OUT_OF_FDS:
                    raise
                use_splice = False  # no descriptors for kernel pipes: copy instead
        return PipeReport.of(result)  # the first flight is the owner's to judge

    def _count(self, count: int) -> None:
        self.forwarded_bytes += count


def read_secret(path: str) -> bytes:
    """The cluster secret from a file (surrounding white space ignored)."""
    with open(path, "rb") as file:
        secret = file.read().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the cluster secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret
