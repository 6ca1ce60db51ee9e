"""A delay line between two network namespaces: a WAN with real per-packet latency.

Theory of operation
-------------------
The kernel here has no netem qdisc, so the latency is added in user space.
Two network namespaces are created, CLIENT_NS (10.77.0.1/24) and RELAY_NS
(10.77.0.2/24). Each has `lo` and one TUN device, `wan0`, and nothing else:
no default route and no link to the outside, so the lab subnet can never
leak off the machine. The only way from one namespace to the other is one
small Python process, the forwarder, that holds both TUN file descriptors:

    client ns                 forwarder (root ns)                 relay ns
    10.77.0.1 wan0  --read-->  deque (due, packet)  --write-->  wan0 10.77.0.2
                    <--write-- deque (due, packet)  <--read--

Every packet read from one TUN is stamped due = now + RTT/2, appended to that
direction's FIFO, and written to the other TUN once it is due. There is no
bandwidth cap and no queue limit: the link is as fast as the forwarder, so
what limits TCP is the bandwidth-delay product against its windows, exactly
the effect a WAN benchmark is after. Optional random loss drops packets.

Two legs, two delays. The relay namespace also holds FAR_IP (10.77.0.4) on
the same device. A packet to or from FAR_IP is delayed by its own RTT/2
(--far-rtt-ms; by default the same as --rtt-ms), every other packet by
RTT/2. So a benchmark that sends to RELAY_IP and receives from FAR_IP, with
the relay listening on both, gets a sender leg and a receiver leg of
different round trips through one forwarder. Each direction keeps one FIFO
per delay, so packets of one leg stay in order and never wait behind the
other leg's.

Speed. A TUN device normally hands user space one MTU-sized packet per
read(), which would make a Python forwarder the bottleneck. With IFF_VNET_HDR
and TUNSETOFFLOAD(CSUM|TSO4|TSO6) the device advertises TSO, so TCP in the
namespace sends ~64 KiB GSO super-packets (the MTU stays a realistic 1500:
the segments on the "wire" are still 1448-byte MSS), and each read returns
a 10-byte virtio_net_hdr plus one super-packet. The forwarder passes that
verbatim to the other TUN, whose kernel side turns it back into a GSO skb
(checksum still "partial", as on veth), so one syscall pair moves up to 44
segments. Loss is applied per super-packet with probability 1 - (1 - p)^n
for its n segments, so the average segment loss rate is p, but the losses
come in bursts of one super-packet.

A TUN fd is bound to its device in the namespace where TUNSETIFF ran, so the
forwarder enters each namespace with setns(2) through ctypes (Python 3.11 has
no os.setns), opens its TUN, and returns to its own namespace. The devices
are not persistent: they vanish with the forwarder. The forwarder exits when
its stdin reaches EOF, so it dies with whatever started it, even on SIGKILL.

`up()` creates everything and always removes it (forwarder stopped,
processes in the namespaces killed, namespaces deleted), also on Ctrl-C and
errors; leftovers of a crashed run are removed before starting. `verify()`
checks the line: TCP connect time should be the RTT, and one autotuned TCP
stream should not be capped by the forwarder.

    sudo python3 -m bench.delayline --rtt 50          # up, verify, wait for Ctrl-C
    sudo python3 -m bench.delayline --rtt 0 --loss 0.001
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CLIENT_NS = "ferry-wan-c"
RELAY_NS = "ferry-wan-r"
CLIENT_IP = "10.77.0.1"
RELAY_IP = "10.77.0.2"
FAR_IP = "10.77.0.4"
"""A second address of the relay namespace, reached through its own delay (--far-rtt-ms)."""
PREFIX = 24
TUN_NAME = "wan0"
TXQUEUELEN = 5000  # room for bursts between two forwarder wake-ups; the delay queue is the link
PIDFILE = Path("/run/ferry-wan-delayline.pid")
HERE = Path(__file__).resolve()
COMMAND_TIMEOUT = 20.0
READY_TIMEOUT = 15.0

# <linux/if_tun.h>, <sched.h>
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
CLONE_NEWNET = 0x40000000

VNET_HDR = struct.Struct("<BBHHHH")
"""struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset."""
READ_SIZE = 65536 + 1024  # one GSO super-packet (IP caps it at 64 KiB) plus the vnet header
READ_BATCH = 64  # reads per wake-up per device, so one direction cannot starve the other


# -- the forwarder (runs as its own process) ----------------------------------


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def open_tun(namespace: str) -> int:
    """Create TUN_NAME inside `namespace` (vnet header + TSO) and return its fd."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            ifreq = struct.pack("16sH22x", TUN_NAME.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
            fcntl.ioctl(fd, TUNSETIFF, ifreq)
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            return fd
        finally:
            _setns(home)  # always back, or later TUNs would land in the wrong namespace
    finally:
        os.close(target)
        os.close(home)


IPV4_SOURCE = VNET_HDR.size + 12
IPV4_DESTINATION = VNET_HDR.size + 16


class Direction:
    """One way of the line: packets read from `src`, delayed, written to `dst`.

    A packet whose relay-side address (at byte `far_at`: the destination going to
    the relay, the source coming back) is FAR_IP waits `far_delay`, any other `delay`;
    one FIFO per delay keeps each leg in order."""

    def __init__(
        self, src: int, dst: int, delays: tuple[float, float], far_at: int, loss: float,
        rng: random.Random,
    ) -> None:  # fmt: skip
        self.src, self.dst, self.loss, self.rng = src, dst, loss, rng
        self.delay, self.far_delay = delays
        self.far_at = far_at
        self.far = socket.inet_aton(FAR_IP)
        self.queues: dict[float, deque[tuple[float, bytes]]] = {delay: deque() for delay in delays}
        self.packets = self.segments = self.octets = self.drops = self.errors = 0

    def take(self, packet: bytes, now: float) -> None:
        segments = _segments(packet)
        self.packets += 1
        self.segments += segments
        self.octets += len(packet) - VNET_HDR.size
        if self.loss > 0 and self.rng.random() < 1.0 - (1.0 - self.loss) ** segments:
            self.drops += 1
            return
        far = packet[self.far_at : self.far_at + 4] == self.far
        delay = self.far_delay if far else self.delay
        if delay <= 0:
            self._write(packet)
        else:
            self.queues[delay].append((now + delay, packet))

    def flush(self, now: float) -> None:
        for queue in self.queues.values():
            while queue and queue[0][0] <= now:
                self._write(queue.popleft()[1])

    def heads(self) -> list[float]:
        """When the first packet of each FIFO is due."""
        return [queue[0][0] for queue in self.queues.values() if queue]

    def _write(self, packet: bytes) -> None:
        try:
            os.write(self.dst, packet)
        except OSError:
            self.errors += 1  # e.g. the device went down: lost, as on a wire

    def stats(self) -> dict[str, int]:
        return {
            "packets": self.packets,
            "segments": self.segments,
            "bytes": self.octets,
            "drops": self.drops,
            "errors": self.errors,
        }


def _segments(packet: bytes) -> int:
    """TCP segments in one read: 1, or ceil(payload / gso_size) for a GSO super-packet."""
    _flags, gso_type, hdr_len, gso_size, _start, _offset = VNET_HDR.unpack_from(packet)
    if gso_type == 0 or gso_size == 0:
        return 1
    payload = len(packet) - VNET_HDR.size - hdr_len
    return max(1, -(-int(payload) // int(gso_size)))


def forward(
    tun_c: int, tun_r: int, delays: tuple[float, float], loss: float, control: int, seed: int
) -> dict[str, dict[str, int]]:
    """Move packets both ways until `control` (stdin) reaches EOF; return per-direction stats.
    delays: (one way to and from RELAY_IP, one way to and from FAR_IP), seconds."""
    rng = random.Random(seed)
    ways = {
        tun_c: Direction(tun_c, tun_r, delays, IPV4_DESTINATION, loss, rng),
        tun_r: Direction(tun_r, tun_c, delays, IPV4_SOURCE, loss, rng),
    }
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    # select(), not epoll: its timeout has microsecond resolution where epoll's and
    # poll()'s are rounded up to whole milliseconds, which would add up to 1 ms each way.
    watched = [tun_c, tun_r, control]
    while True:
        readable, _, _ = select.select(watched, [], [], _timeout(list(ways.values())))
        for fd in readable:
            if fd == control:
                if not os.read(control, 4096):
                    return {"c_to_r": ways[tun_c].stats(), "r_to_c": ways[tun_r].stats()}
                continue
            _drain(ways[fd], buffer, view)
        now = time.monotonic()
        for way in ways.values():
            way.flush(now)


def _timeout(ways: list[Direction]) -> float | None:
    """Seconds until the earliest queued packet is due (None: nothing queued, wait for input)."""
    heads = [head for way in ways for head in way.heads()]
    return max(0.0, min(heads) - time.monotonic()) if heads else None


def _drain(way: Direction, buffer: bytearray, view: memoryview) -> None:
    now = time.monotonic()
    for _ in range(READ_BATCH):
        try:
            size = os.readv(way.src, [buffer])
        except BlockingIOError:
            return
        way.take(bytes(view[:size]), now)


def forwarder_main(args: argparse.Namespace) -> int:
    tun_c, tun_r = open_tun(CLIENT_NS), open_tun(RELAY_NS)
    PIDFILE.write_text(f"{os.getpid()}\n")
    print("ready", flush=True)
    far_rtt_ms = args.rtt_ms if args.far_rtt_ms is None else args.far_rtt_ms
    delays = (args.rtt_ms / 2000.0, far_rtt_ms / 2000.0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stats: dict[str, dict[str, int]] = {}
    try:
        stats = forward(tun_c, tun_r, delays, args.loss, sys.stdin.fileno(), args.seed)
    finally:
        with contextlib.suppress(OSError):
            PIDFILE.unlink()
        print(json.dumps({"forwarder": stats}), file=sys.stderr, flush=True)
    return 0


# -- setting up and tearing down (runs in the driver) -------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit(
            "the WAN benchmark needs root (network namespaces and TUN devices); run it with sudo"
        )


def run(argv: Sequence[str], check: bool = True) -> str:
    """Run a short command; its stdout. Bounded, so a wedged `ip` cannot hang the bench."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def in_ns(namespace: str, argv: Sequence[str | Path]) -> list[str]:
    """argv run inside `namespace` (ip netns exec execs it: the pid is the program's)."""
    return ["ip", "netns", "exec", namespace, *(str(arg) for arg in argv)]


def cleanup() -> None:
    """Remove whatever a previous run left: its forwarder, its namespaces and their processes."""
    _kill_stale_forwarder()
    listed = run(["ip", "netns", "list"], check=False)
    present = {line.split()[0] for line in listed.splitlines() if line.strip()}
    for namespace in (CLIENT_NS, RELAY_NS):
        if namespace not in present:
            continue
        for pid in run(["ip", "netns", "pids", namespace], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", namespace], check=False)


def _kill_stale_forwarder() -> None:
    try:
        pid = int(PIDFILE.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"delayline.py" in cmdline and b"forward" in cmdline:  # ours, not a recycled pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        PIDFILE.unlink()


def _create_namespaces() -> None:
    for namespace in (CLIENT_NS, RELAY_NS):
        run(["ip", "netns", "add", namespace])
        run(in_ns(namespace, ["ip", "link", "set", "lo", "up"]))
        # No IPv6 inside: router solicitations and MLD would only add noise to the line.
        run(in_ns(namespace, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]))
        run(in_ns(namespace, ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]))


def _configure_tuns() -> None:
    for namespace, address in ((CLIENT_NS, CLIENT_IP), (RELAY_NS, RELAY_IP), (RELAY_NS, FAR_IP)):
        run(in_ns(namespace, ["ip", "addr", "add", f"{address}/{PREFIX}", "dev", TUN_NAME]))
        if address == FAR_IP:
            continue  # the relay namespace's device, configured with RELAY_IP
        run(in_ns(namespace, ["ip", "link", "set", TUN_NAME, "txqueuelen", str(TXQUEUELEN)]))
        run(in_ns(namespace, ["ip", "link", "set", TUN_NAME, "up"]))


@dataclass
class Line:
    rtt_ms: float
    loss: float
    forwarder: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU (user + system) the forwarder has used; system time includes the
        receiving side's TCP stack, which runs in the forwarder's write()."""
        with open(f"/proc/{self.forwarder.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def up(
    rtt_ms: float, loss: float = 0.0, seed: int = 1, far_rtt_ms: float | None = None
) -> Iterator[Line]:
    """The two namespaces joined by a forwarder with this RTT (far_rtt_ms to and from
    FAR_IP, by default the same), until the block ends."""
    far = [] if far_rtt_ms is None else ["--far-rtt-ms", str(far_rtt_ms)]
    require_root()
    cleanup()
    forwarder: subprocess.Popen[bytes] | None = None
    try:
        _create_namespaces()
        forwarder = subprocess.Popen(
            [sys.executable, str(HERE), "forward", "--rtt-ms", str(rtt_ms), "--loss", str(loss),
             "--seed", str(seed), *far],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        _wait_ready(forwarder)
        _configure_tuns()
        yield Line(rtt_ms, loss, forwarder)
    finally:
        if forwarder is not None:
            _stop_forwarder(forwarder)
        cleanup()


def _wait_ready(forwarder: subprocess.Popen[bytes]) -> None:
    assert forwarder.stdout is not None
    ready, _, _ = select.select([forwarder.stdout], [], [], READY_TIMEOUT)
    line = forwarder.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        raise RuntimeError(f"delay line forwarder did not start (exit {forwarder.poll()})")


def _stop_forwarder(forwarder: subprocess.Popen[bytes]) -> None:
    """Close its stdin (it exits and prints its stats), then make sure it is gone."""
    for stream in (forwarder.stdin, forwarder.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    try:
        forwarder.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(forwarder.pid, signal.SIGKILL)
        forwarder.wait(5)


# -- checks -------------------------------------------------------------------

SYSCTLS = (
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.ipv4.tcp_congestion_control",
)


def sysctls() -> dict[str, dict[str, str]]:
    """The TCP buffer and congestion settings, per namespace: new namespaces do not
    copy the root namespace's tcp_rmem/tcp_wmem, they start from kernel defaults."""
    table: dict[str, dict[str, str]] = {}
    for namespace in ("root", CLIENT_NS, RELAY_NS):
        argv = ["sysctl", "-n", *SYSCTLS]
        out = run(argv if namespace == "root" else in_ns(namespace, argv))
        values = [" ".join(line.split()) for line in out.splitlines()]
        table[namespace] = dict(zip(SYSCTLS, values, strict=False))
    return table


@dataclass(frozen=True)
class Verification:
    rtt_ms: float
    connect_ms: list[float]
    stream_bytes: int
    stream_seconds: float
    forwarder_cpu: float
    """Forwarder CPU-seconds per second of the stream (1.0 = one core busy)."""

    @property
    def stream_mbps(self) -> float:
        return self.stream_bytes / self.stream_seconds / 1e6

    def summary(self) -> str:
        connect = statistics.median(self.connect_ms)
        return (
            f"RTT {self.rtt_ms:g} ms: TCP connect {connect:.1f} ms (median of "
            f"{len(self.connect_ms)}), one autotuned TCP stream "
            f"{self.stream_mbps:.0f} MB/s ({self.stream_bytes >> 20} MiB), "
            f"forwarder CPU {self.forwarder_cpu * 100:.0f} % of a core"
        )


def verify(line: Line, stream_bytes: int = 256 << 20, connects: int = 5) -> Verification:
    """Connect times and one plain TCP stream, client namespace -> relay namespace."""
    port = 5001
    sink = subprocess.Popen(
        in_ns(RELAY_NS, [sys.executable, HERE, "sink", f"{RELAY_IP}:{port}"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_listening(RELAY_NS, port, proc=sink)
        cpu_before, wall_before = line.cpu_seconds(), time.perf_counter()
        argv: list[str | Path] = [sys.executable, HERE, "source", f"{RELAY_IP}:{port}"]
        argv.append(str(stream_bytes))
        out = run(in_ns(CLIENT_NS, [*argv, "--connects", str(connects)]))
        result = json.loads(out)
        cpu = (line.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sink.pid, signal.SIGKILL)
        sink.wait(5)
    return Verification(line.rtt_ms, result["connect_ms"], stream_bytes, result["seconds"], cpu)


def wait_listening(
    namespace: str, port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once a socket listens on `port` in `namespace` (asked with ss: a probe
    connection would cross the delay line and show up in the server's logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode} before listening")
        listening = run(in_ns(namespace, ["ss", "-tlnH", f"( sport = :{port} )"]), check=False)
        if listening.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} in {namespace} after {timeout:.0f}s")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def sink_main(args: argparse.Namespace) -> int:
    """Accept connections forever; read each to EOF, then close (the source's end marker)."""
    server = socket.create_server(_split(args.address))
    while True:
        conn, _ = server.accept()
        with conn:
            buffer = bytearray(1 << 20)
            while conn.recv_into(buffer):
                pass


def source_main(args: argparse.Namespace) -> int:
    """`connects` timed connect+close, then one stream; JSON on stdout."""
    address = _split(args.address)
    connect_ms = []
    for _ in range(args.connects):
        started = time.perf_counter()
        with socket.create_connection(address, timeout=10):
            connect_ms.append((time.perf_counter() - started) * 1000)
    block = os.urandom(1 << 20)
    started = time.perf_counter()
    with socket.create_connection(address, timeout=60) as conn:
        remaining = args.bytes
        while remaining > 0:
            remaining -= conn.send(memoryview(block)[: min(len(block), remaining)])
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the sink closes once it has read everything: delivery, not just sending
        seconds = time.perf_counter() - started
    print(json.dumps({"connect_ms": connect_ms, "seconds": seconds}))
    return 0


# -- standalone ---------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    fwd = sub.add_parser("forward", help="(internal) the forwarder process")
    fwd.add_argument("--rtt-ms", type=float, required=True)
    fwd.add_argument("--loss", type=float, default=0.0)
    fwd.add_argument("--seed", type=int, default=1)
    fwd.add_argument("--far-rtt-ms", type=float, default=None)
    sink = sub.add_parser("sink", help="(internal) TCP sink for verify()")
    sink.add_argument("address")
    source = sub.add_parser("source", help="(internal) TCP source for verify()")
    source.add_argument("address")
    source.add_argument("bytes", type=int)
    source.add_argument("--connects", type=int, default=5)
    parser.add_argument("--rtt", type=float, default=50.0, help="round-trip time, ms")
    parser.add_argument("--loss", type=float, default=0.0, help="segment loss rate, e.g. 0.001")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "forward":
        return forwarder_main(args)
    if args.command == "sink":
        return sink_main(args)
    if args.command == "source":
        return source_main(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C
    with up(args.rtt, args.loss) as line:
        for namespace, values in sysctls().items():
            print(f"{namespace}: " + "; ".join(f"{k}={v}" for k, v in values.items()))
        result = verify(line)
        print(result.summary(), [round(x, 1) for x in result.connect_ms], flush=True)
        print(
            f"up: {CLIENT_NS} {CLIENT_IP} <-> {RELAY_NS} {RELAY_IP}; "
            f"e.g. ip netns exec {RELAY_NS} bash. Ctrl-C tears it down.",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while line.forwarder.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
