"""Every tunable limit, named, with its unit. Standard library only.

The relay's settings can be changed by flag or by environment variable
(FERRY_RELAY_<FIELD NAME IN UPPER CASE>); see README.md.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

KIB = 1024
MIB = 1024 * KIB

# -- fixed limits inside the relay: not settings, but named here with their units -------

REFUSAL_LINGER_SECONDS: Final = 0.5
"""Seconds a refused connection lingers (discarding input) so its ERROR line is read."""
REFUSAL_LINGER_BYTES: Final = 64 * KIB
"""Bytes a refused connection discards at most while it lingers."""
MAX_LINGERING: Final = 512
"""Refused sockets lingering at once; past it a refusal closes at once (after discarding)."""
SENDER_GRACE: Final = 1.0
"""Seconds a draining relay waits for senders whose transfer ended to close."""
CANCEL_GRACE: Final = 5.0
"""Seconds a closing relay gives the connection tasks it cancelled (its own and the
web front's) to log their outcome and send their refusal."""
ACCEPT_GRACE: Final = 1.0
"""Seconds a closing relay gives its cancelled accept loops to end."""
MAX_PARKED_BYTES: Final = 4096
"""Early bytes a parked standby data connection may send (its PAKE flight is ~40)."""
MAX_EARLY_BYTES: Final = 8 * KIB
"""Bytes a connection may have sent when the relay first looks at it, right after
accepting it (a PROXY header, its first line, a first flight of at most
MAX_PARKED_BYTES). A connection with more queued is refused at once, so no
accepted socket keeps more than its small pre-pairing buffers (relay/buffers.py)."""
EARLY_PAIRED_AFTER: Final = 3.0
"""Seconds a claim may go without a byte behind its RECV line before the relay says
PAIRED to it ahead of pairing: receivers from before the pipelined handshake send
their PAKE record only after PAIRED (docs/PROTOCOL.md); ./receive sends it with the line."""
OPENING_BYTES: Final = 68 * KIB
"""Bytes a sender sends before its first DATA record, at most (docs/PROTOCOL.md caps
PAKE and CONFIRM at 1 KiB, the OFFER at 64 KiB + 16, plus six header bytes each)."""
MAX_QUEUED_CLAIMS: Final = 64
"""Claims that may wait on one nameplate behind the one in its opening, first come
first served (at most one per source address); past that a claim is told `retry`."""
CLAIM_QUEUE_WAIT: Final = 30.0
"""Seconds a queued claim may wait for its turn (a receiver's own pairing timeout)
before it is refused `timeout`."""
STALE_TICKETS: Final = 16
"""Tickets a nameplate remembers after they were used or replaced, so that a data
connection presenting one late is told `stale-ticket`, not `bad-request`."""
METRICS_MAX_CLIENTS: Final = 16
"""Connections the /metrics endpoint serves at once."""
METRICS_MAX_REQUEST: Final = 8192
"""Bytes of a /metrics request head, at most."""
METRICS_REQUEST_TIMEOUT: Final = 5.0
"""Seconds a /metrics client has to send its request."""


@dataclass(frozen=True)
class RelayConfig:
    """The relay's limits. Every one is enforced by the relay and covered by a test
    (tests/relay, tests/faults); docs/OPERATIONS.md says which to tune."""

    handshake_timeout: float = 10.0
    """Seconds a new connection has to send its complete first line."""

    max_hello_bytes: int = 128
    """Longest first line (or later control line) a client may send, in bytes, LF
    included; longer is refused as a bad request. At most 128, the protocol's MAX_LINE."""

    max_handshakes: int = 4000
    """Connections allowed at once that have not yet sent their first line."""

    max_waiting_senders: int = 20_000
    """Senders allowed at once to wait for a receiver, in senders (those whose
    transfer is running count against max_active_transfers instead)."""

    max_sender_wait: float = 24 * 3600.0
    """Seconds a sender may hold a nameplate before the relay drops it."""

    max_active_transfers: int = 2000
    """Pipes allowed at once (each is one sender/receiver pair)."""

    join_timeout: float = 15.0
    """Seconds a claiming receiver waits for the sender's data connection."""

    ping_interval: float = 30.0
    """Seconds between PINGs to a waiting sender."""

    pong_timeout: float = 90.0
    """Seconds without any byte from a waiting sender before it is dropped."""

    idle_timeout: float = 600.0
    """Seconds an active pipe may move no byte in either direction."""

    max_claims_per_nameplate: int = 32
    """Receivers that may claim one nameplate over its lifetime and reach the key
    exchange, in attempts. Each can be one code guess, so this caps the guesses per
    nameplate whatever the sender does; above a ferry sender's own budgets (20 wrong
    codes, 3 refusals), so that the sender, which can say why, is the one to stop."""

    max_connections_per_address: int = 200
    """Connections allowed at once from one source address (IPv6: one /64 network)."""

    lookups_per_minute: int = 60
    """Nameplate look-ups (receiver requests) one source address may make per minute,
    as a token bucket of that size refilled evenly over the minute. Makes guessing
    codes, and probing for live nameplates, slow."""

    fair_share_addresses: int = 2000
    """Distinct networks (IPv4 addresses, IPv6 /48s) it takes to fill any of the pools
    above (handshakes, waiting senders, transfers). Once a pool is a quarter full, one
    network may hold at most 3/4 of it divided by this (rounded up), so a flood from
    a few networks leaves room for everyone else."""

    limit_loopback: bool = False
    """Apply the per-address limits above (connections, look-ups, pool shares) to
    loopback clients too. Off by default: behind a local proxy or tunnel every client
    appears as loopback, so the limits could not tell users apart, and local
    tools (tests, benchmarks) are trusted. Turn it on when loopback clients are
    untrusted."""

    trusted_proxy: tuple[str, ...] = ()
    """Networks of TCP proxies (CIDR like 10.0.0.5/32, repeatable) whose connections
    start with a PROXY protocol header, v1 or v2 as HAProxy's send-proxy and
    send-proxy-v2 write it. From them the relay requires the header and takes the
    client's real address for every per-address limit and log line; from anyone
    else a header is refused. The environment variable takes them comma-separated."""

    max_tracked_addresses: int = 100_000
    """Source addresses whose look-up budget the relay remembers at once, in entries
    (about 200 bytes each). Past it, new addresses are refused as rate-limited."""

    fd_reserve: int = 16
    """File descriptors kept free for the relay's own use, in descriptors. New
    connections are refused ("busy") when fewer would remain, so transfers already
    running never fail for lack of one."""

    transfer_budget: int = 4 * MIB
    """Memory one transfer may hold at the relay, in bytes: kernel socket memory on
    both of its sockets (as `ss -tm` counts it, with the kernel's bookkeeping
    overhead), the pump's buffers, everything. The relay spends it on socket
    buffers for the data direction, which decide the fastest a transfer can go
    over a long path: about a third of the budget in flight per leg, so the
    default allows ~28 MB/s at 50 ms round trip per leg (relay/buffers.py has
    the arithmetic; docs/ARCHITECTURE.md explains it)."""

    max_memory: int = 0
    """Memory all transfers together may hold at the relay, in bytes: a new transfer
    is refused `busy` when the sum of per-transfer budgets (transfer_budget each,
    forwarded pipes included) would pass it. 0, the default: a quarter of the
    machine's physical memory (relay/buffers.py, memory_ceiling)."""

    pump_buffer: int = 64 * KIB
    """Bytes the relay holds per direction of a pipe in user space (or the
    kernel pipe it splices through); part of transfer_budget."""

    use_splice: bool = True
    """Move bytes with os.splice where the platform has it (zero-copy)."""

    drain_timeout: float = 30.0
    """Seconds active pipes may keep running after SIGTERM before the relay exits."""

    web: bool = True
    """Answer browser connections on the relay's port too: the web app's files over
    HTTP and WebSocket legs on /ws, bridged to the same pairing and limits as a
    command-line client (relay/web.py). --no-web: HTTP requests get the rendezvous
    refusal."""

    web_root: str = ""
    """Directory of the web app's files to serve to browser connections (default: the
    one shipped in the package, ferry/webapp). A missing directory serves 404s."""

    tls_cert: str = ""
    """PEM file of the certificate (chain) for https on the relay's port (with
    --tls-key): browser connections that open with a TLS ClientHello are served
    HTTP and WebSocket inside TLS; rendezvous lines stay in the clear (relay/tls.py)."""

    tls_key: str = ""
    """PEM file of the private key (unencrypted) of --tls-cert, for the same connections."""

    web_url: str = ""
    """The web app's public address as browsers reach it (https://relay.example:9021/),
    given to senders that ask, which print the link URL#CODE for a browser receiver.
    Empty: no link. Needs the web app (not with --no-web)."""

    def problems(self) -> list[str]:
        """What is wrong with these settings, one sentence each (empty when usable)."""
        found: list[str] = []
        for name, value in vars(self).items():
            if isinstance(value, bool | tuple | str):
                continue
            if isinstance(value, float) and not value > 0:
                found.append(f"{name} must be a positive number of seconds, not {value}")
            least = 0 if name in ("fd_reserve", "max_memory") else 1  # 0: none / automatic
            if isinstance(value, int) and value < least:
                found.append(f"{name} must be at least 1, not {value}")
        if not 16 <= self.max_hello_bytes <= MAX_HELLO_BYTES:
            found.append(f"max_hello_bytes must be 16 to {MAX_HELLO_BYTES}")
        for network in self.trusted_proxy:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                found.append(f"trusted_proxy: {network!r} is not an address or CIDR network")
        if bool(self.tls_cert) != bool(self.tls_key):
            found.append("--tls-cert and --tls-key go together")
        elif self.tls_cert and not self.web:
            found.append("--tls-cert serves the web app over https: it needs the web (no --no-web)")
        if self.web_url:
            from ferry.protocol.weblink import web_url_problem  # standard library only

            problem = web_url_problem(self.web_url)
            if problem is not None:
                found.append(f"--web-url {self.web_url!r} is not usable: {problem}")
            elif not self.web:
                found.append("--web-url names the web app, which --no-web turns off: drop one")
        if self.max_memory and self.max_memory < self.transfer_budget:
            found.append("max_memory must be 0 (automatic) or at least transfer_budget")
        least = 2 * self.pump_buffer + 384 * KIB
        if self.transfer_budget < least:
            found.append(
                f"transfer_budget must be at least {least} bytes with a {self.pump_buffer}-byte "
                "pump_buffer (2 pump buffers + 384 KiB of socket buffers)"
            )
        return found


@dataclass(frozen=True)
class ClusterConfig:
    """A relay cluster node's settings (docs/CLUSTER.md); all empty: a single relay."""

    cluster: str = ""
    """Redis URL of the cluster's directory (redis://HOST:6379/0; needs `pip install
    ferry[cluster]`); empty: run as a single relay, standard library only."""

    node_address: str = ""
    """HOST:PORT where the other nodes reach this one (required with --cluster; port 0:
    the port this relay bound)."""

    cluster_secret_file: str = ""
    """File holding the secret every node of the cluster shares (at least 16 bytes), with
    which nodes prove themselves to each other (required with --cluster)."""

    node_id: str = ""
    """This node's name in logs, metrics and the directory (1 to 40 letters, digits,
    '-', '_' or '.'); empty: a random one."""

    cluster_ttl: float = 10.0
    """Seconds a node's nameplates and heartbeat outlive it in the directory when it
    dies; refreshed every third of that while it lives."""

    directory_timeout: float = 1.0
    """Seconds one Redis operation may take before the request that needed it is
    refused as unavailable."""

    def problems(self) -> list[str]:
        if not self.cluster:
            return []
        found: list[str] = []
        if not self.node_address:
            found.append("--cluster needs --node-address (where the other nodes reach this one)")
        if not self.cluster_secret_file:
            found.append("--cluster needs --cluster-secret-file")
        for name in ("cluster_ttl", "directory_timeout"):
            if not getattr(self, name) > 0:
                found.append(f"{name} must be a positive number of seconds")
        return found


MAX_HELLO_BYTES = 128
"""The rendezvous protocol's MAX_LINE (ferry.protocol.rendezvous), restated here so
this module stays free of imports; a test checks the two agree."""


@dataclass(frozen=True)
class ClientConfig:
    connect_timeout: float = 10.0
    """Seconds to reach the relay."""

    wait_timeout: float = 24 * 3600.0
    """Seconds a sender waits for a receiver before giving up."""

    handshake_timeout: float = 10.0
    """Seconds from PAIRED until both sides proved they hold the code: the PAKE
    messages cross (sent ahead, with the rendezvous lines) and then the
    confirmations, one round trip. Short, because a receiver that claims the
    nameplate and then stays silent holds the sender this long."""

    pairing_timeout: float = 30.0
    """Seconds a receiver tries to get paired with the sender: its claim, the relay's
    "retry" answers while another receiver's claim is still being settled, the
    sender's data connection joining."""

    io_timeout: float = 120.0
    """Seconds without progress in the middle of a transfer before giving up."""

    answer_timeout: float = 600.0
    """Seconds a sender waits for the receiver to accept or refuse (a person answering
    --ask); past it that attempt ends like a refusal and the code stays alive."""

    ack_timeout: float = 300.0
    """Seconds the sender waits for the receiver to store the file (fsync) and acknowledge."""

    max_failed_attempts: int = 3
    """Refusals (a receiver with the right code refused the offer, or left before
    answering) a sender takes before it gives up (--attempts, FERRY_ATTEMPTS)."""

    max_wrong_codes: int = 20
    """Wrong codes (receivers that made a guess at the code, and failed) a sender takes
    before it gives up (--wrong-codes, FERRY_WRONG_CODES). An attacker who knows only
    the nameplate gets in with odds of at most max_wrong_codes / 2**27 (20: about 1 in
    6.7 million); claims that made no guess are not counted (client/sender.py)."""

    record_size: int = 128 * KIB
    """Plaintext bytes per DATA record (env FERRY_RECORD_SIZE for send). Chosen by
    measurement: bench/records.py, docs/PERFORMANCE-NOTEBOOK.md."""

    compress: bool = True
    """A sender compresses DATA records when that helps, if the receiver can inflate them
    (protocol/compression.py); send --no-compress turns it off."""

    max_entries: int = 100_000
    """Files and directories one tree transfer may hold, in entries. The sender
    refuses to offer more; the receiver refuses a larger offer before reading
    its manifest (env FERRY_MAX_ENTRIES, both sides)."""

    max_depth: int = 64
    """Deepest path a tree transfer may hold, in components (env FERRY_MAX_DEPTH)."""

    max_manifest_bytes: int = 32 * MIB
    """Bytes of manifest (the list of a tree's entries) a receiver holds at most; a
    sender refuses to offer a tree whose manifest is larger (100,000 entries with
    paths of 200 characters take about 27 MB)."""

    manifest_timeout: float = 10.0
    """Seconds a receiver spends checking a tree's manifest (names, collisions)
    before it answers; past it the offer is refused as too large."""

    max_text: int = 1 * MIB
    """Longest text message (send --text), in bytes; a receiver refuses a longer one."""

    # -- tuning, not user settings -------------------------------------------------

    happy_eyeballs_delay: float = 0.25
    """Seconds before trying the relay's next address while one is still connecting."""

    claimed_retries: int = 3
    """Claims a receiver retries while the relay says the nameplate is in use."""

    claimed_retry_delay: float = 0.5
    """Seconds between those claims (the previous pipe may still be closing)."""

    pairing_retry_delay: float = 1.0
    """Seconds between claims while the relay says another claim is being settled
    ("retry"; each claim costs one of the address's look-ups, so not faster)."""

    standby_retries: int = 3
    """Standby data connections lost in quick succession before the sender gives up."""

    standby_retry_delay: float = 1.0
    """Seconds before reconnecting a standby data connection that was lost."""

    standby_lifetime: float = 60.0
    """Seconds a standby connection must have lived for its loss not to count as quick."""

    abort_grace: float = 2.0
    """Seconds an ABORT may take to go out before the connection is closed anyway."""

    writeback_window: int = 8 * 1024 * KIB
    """Bytes the receiver writes between asking the kernel to start writing them to disk."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass (empty if the source is gone)."""
    # Imported here: only --help and tests need them, and clients start faster without.
    import ast
    import inspect
    import itertools

    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    found: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            found[node.target.id] = str(following.value.value)
    return found
