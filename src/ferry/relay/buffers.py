"""How the relay spends its per-transfer memory budget on socket buffers.

Theory of operation. A TCP leg that carries X bytes/s over a round trip of
R seconds needs about X * R bytes in flight, and the relay holds those
bytes until they are acknowledged. So the socket buffers decide both the
relay's memory per transfer and the fastest a transfer can go over a long
path. Data flows one way: sender -> relay -> receiver. Per transfer:

    sender --data--> [rcvbuf S sndbuf] --pump--> [sndbuf R rcvbuf] --data--> receiver
                      window   small     pipe     in flight small

- S's receive buffer sets the window the sender may have in flight to the
  relay. Linux announces only part of a receive buffer as window (about
  two thirds with 1448-byte segments; the rest covers its per-packet
  overhead), and every byte it announced may land in S's queue;
- R's send buffer holds what the relay sent the receiver and has not had
  acknowledged;
- the reverse direction (confirmation, answer, ACK: a few hundred bytes)
  and every socket before pairing (handshakes, waiting senders) get small
  buffers, so idle connections never pin more than 32 KiB and a segment each.

The worst case is a receiver that stops reading, or stops acknowledging,
while the sender pushes: R's queue fills, the pump's pipe fills, the relay
stops reading S, and S's queue fills to its limit. Everything is counted
as the kernel counts it (`ss -tm`): Linux doubles every SO_RCVBUF /
SO_SNDBUF request for its bookkeeping, and a queue may pass its limit by
one packet. So the budget is split as

    budget = receiver_send + sender_receive                (the data direction)
           + 2 * pump_buffer + 2 * control + 2 * SKB_SLACK  (pipes, reverse, overshoot)

and the data part is split between R and S by the legs' round trips. A
leg carries its bytes in flight per round trip, so a transfer runs at
min(window_S / RTT_S, window_R / RTT_R), and the split that wastes none of
the budget gives each leg in proportion to its round trip. On equal legs
the split is RECEIVER_SHARE to R and the rest to S, so that both legs carry
about the same bytes in flight (S's window is the smaller part of its
buffer); on unequal legs each side's weight is that share times its round
trip (split_data, a pure function). Round trips are the kernel's smoothed
estimates (TCP_INFO tcpi_rtt) of the two sockets when the pipe starts: the
SYN exchange and the rendezvous lines have given both a few samples. A
round trip under RTT_FLOOR counts as RTT_FLOOR (on a LAN or loopback the
buffers are not the limit, and sub-millisecond estimates are mostly
noise), and each leg keeps at least MIN_LEG_SHARE of the data part, so a
wrong estimate can slow a transfer but never starve a leg. A socket with
no TCP_INFO (another system, a browser leg's socketpair) gets the equal
split.

The split is chosen once and never changed while the transfer runs:
moving budget from one leg to the other means lowering a buffer, and a
lowered buffer frees nothing at once (S keeps honouring the window it
announced, R keeps what it queued) while the raised one is usable at
once, so the relay would hold more than the budget until the lowered
side drains. The sum of the two parts is the same whatever the split, so
the worst case below does not depend on it.

Every byte the relay ever announces fits in the budget at once, so no
receiver, however it misbehaves, makes the relay hold more. The price:
with the default 4 MiB a transfer has about 1.4 MB in flight per leg on
equal legs (about 28 MB/s at 50 ms round trip per leg, 14 at 100); at
10 ms to the sender and 90 ms to the receiver, R gets about 2.9 MiB.

A larger window for the sender, lowered when the receiver falls behind,
was built and measured (docs/PERFORMANCE-NOTEBOOK.md): it reached 42 MB/s
at 50 ms, but Linux keeps honouring a window it has announced after the
buffer is lowered, so a receiver that stopped made the relay hold 6.8 MiB; on
loopback the lowered buffer dropped data and cost retransmission
timeouts. The budget is the contract, so the split stays fixed.

The window-scale factor is fixed in the SYN exchange, before the relay
knows what a connection is for, and it caps every window the connection
can ever announce at 65535 << scale. Linux takes it from the listening
socket's receive buffer only when that buffer was set (SO_RCVBUF locks it,
and the scale follows the locked size); otherwise from the largest buffer
the system allows (net.ipv4.tcp_rmem's maximum, 6 MiB by default: scale 7,
windows up to 8 MiB, room for budgets up to ~16 MiB). So the listening
socket sets no buffer at all: a connection not yet accepted keeps the
kernel's small default (tcp_rmem's middle value, 128 KiB) whatever it
sends, yet gets the large scale. (A listener asking for S's buffer, as
before, made each connection that sent data from connect hold megabytes
until the relay shrank it.) The server shrinks every accepted socket to
the control size as it accepts it and refuses one that already sent more
than a client may before pairing (config.MAX_EARLY_BYTES); only the
data-direction buffers of a paired transfer are raised, when the pipe
starts, and S's window clamp is raised with its buffer where the kernel
does not do so by itself. Buffers are limits, not allocations: a socket
with nothing queued costs nothing whatever its limit.

Relay-wide, memory_ceiling() is what all transfers together may hold
(RelayConfig.max_memory, by default a quarter of the machine's memory);
the server refuses a new transfer `busy` before the sum of budgets would
pass it.

Linux caps unprivileged requests at net.core.rmem_max / wmem_max (208 KiB
by default). The relay asks with SO_RCVBUFFORCE / SO_SNDBUFFORCE first,
which a process with CAP_NET_ADMIN may use, and reads back what it got.

Standard library only.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from dataclasses import dataclass, replace
from typing import Final

from ferry import platform
from ferry.config import RelayConfig

KIB: Final = 1024

CONTROL_BUFFER: Final = 16 * KIB
"""Request for every socket before pairing, and for the reverse direction."""

SKB_SLACK: Final = 64 * KIB
"""How far one queue may pass its limit: the kernel admits one more skb (a GSO
segment of up to 64 KiB) when the queue is just under its limit."""

RECEIVER_SHARE: Final = 0.45
"""Part of the data budget for R's send buffer (the rest is S's receive buffer).
Measured (bench/wan.py, 256 MiB at 50 ms per leg): 0.35 / 0.4 / 0.45 / 0.5 gave
20.5 / 24.7 / 25.3 / 23.8 MB/s."""

RTT_FLOOR: Final = 1000
"""Microseconds: a shorter round trip counts as this long when the budget is split."""

MIN_LEG_SHARE: Final = 0.1
"""Least part of the data budget each leg keeps, whatever the round trips say."""

CEILING_SHARE: Final = 4
"""The default relay-wide ceiling is the machine's memory divided by this."""

# Python's socket module does not export the FORCE options; their values are
# Linux's (asm-generic/socket.h), and no other platform has them.
_LINUX: Final = platform.LINUX
_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", 32 if _LINUX else None)
_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33 if _LINUX else None)


@dataclass(frozen=True)
class BufferPlan:
    """Socket buffer limits for one transfer, in bytes as the kernel counts them
    (twice the setsockopt request)."""

    budget: int
    receiver_send: int
    """R's send buffer: bytes in flight to the receiver, unacknowledged."""

    sender_receive: int
    """S's receive buffer: the sender's window, with the kernel's overhead."""

    control: int
    """Every socket until it is paired, and S's send and R's receive buffers."""

    pump: int
    """Bytes per direction in the pump's pipe or copy buffer."""

    def worst_case(self) -> int:
        """Most one transfer holds: R and S full, pipes full, reverse queues, overshoot."""
        return _fixed(self.pump, self.control) + self.receiver_send + self.sender_receive

    def for_round_trips(self, sender_rtt: int | None, receiver_rtt: int | None) -> BufferPlan:
        """This plan with its data part split by the legs' round trips (microseconds;
        None where unknown): see split_data."""
        receiver_send, sender_receive = split_data(
            self.receiver_send + self.sender_receive, sender_rtt, receiver_rtt
        )
        return replace(self, receiver_send=receiver_send, sender_receive=sender_receive)

    def apply(self, sender: socket.socket, receiver: socket.socket) -> BufferPlan:
        """Give a paired transfer's data direction its buffers (before PAIRED), split
        by the two legs' measured round trips; return the plan applied."""
        plan_ = self.for_round_trips(round_trip(sender), round_trip(receiver))
        granted = set_receive_buffer(sender, plan_.sender_receive // 2)
        _raise_window_clamp(sender, granted // 2)
        set_send_buffer(receiver, plan_.receiver_send // 2)
        return plan_


def split_data(data: int, sender_rtt: int | None, receiver_rtt: int | None) -> tuple[int, int]:
    """(receiver_send, sender_receive): `data` bytes split so that both legs carry the
    same bytes per second (module comment). Round trips in microseconds, None where
    unknown (then the equal-legs split). The two parts never add up to more than
    `data`, and each is a whole even number of KiB."""
    share = RECEIVER_SHARE
    if sender_rtt is not None and receiver_rtt is not None:
        to_receiver = RECEIVER_SHARE * max(receiver_rtt, RTT_FLOOR)
        to_sender = (1 - RECEIVER_SHARE) * max(sender_rtt, RTT_FLOOR)
        share = min(max(to_receiver / (to_receiver + to_sender), MIN_LEG_SHARE), 1 - MIN_LEG_SHARE)
    receiver_send = _whole_kib(int(data * share))
    return receiver_send, _whole_kib(data - receiver_send)


_TCP_INFO: Final = getattr(socket, "TCP_INFO", None)
_TCPI_RTT: Final = struct.Struct("=I")
_TCPI_RTT_OFFSET: Final = 68
"""Where tcpi_rtt (u32, microseconds) sits in Linux's struct tcp_info: eight u8
fields, then fifteen u32 (tcpi_rto ... tcpi_rcv_ssthresh) before it."""


def round_trip(sock: socket.socket) -> int | None:
    """The kernel's smoothed round-trip estimate of a TCP socket in microseconds, or
    None where the system cannot say (not Linux, not TCP, no sample yet)."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < _TCPI_RTT_OFFSET + _TCPI_RTT.size:
        return None
    (rtt,) = _TCPI_RTT.unpack_from(info, _TCPI_RTT_OFFSET)
    return int(rtt) or None


def plan(config: RelayConfig) -> BufferPlan:
    """Split the transfer budget (see the module comment)."""
    control = 2 * CONTROL_BUFFER
    data = max(0, config.transfer_budget - _fixed(config.pump_buffer, control))
    receiver_send, sender_receive = split_data(data, None, None)
    return BufferPlan(
        budget=config.transfer_budget,
        receiver_send=receiver_send,
        sender_receive=sender_receive,
        control=control,
        pump=config.pump_buffer,
    )


def memory_ceiling(config: RelayConfig) -> int:
    """Bytes all transfers together may hold: max_memory, or a quarter of the machine's
    physical memory (max_active_transfers budgets where the system does not say)."""
    if config.max_memory:
        return config.max_memory
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        physical = 0
    if physical <= 0:
        return config.max_active_transfers * config.transfer_budget
    return physical // CEILING_SHARE


def queued(sock: socket.socket) -> int:
    """Bytes waiting in a socket's receive queue (0 where the system cannot say)."""
    try:
        import fcntl  # Unix only, like the relay (cli/relay.py refuses Windows)
        import termios

        data = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (ImportError, OSError, AttributeError):
        return 0
    return int.from_bytes(data, sys.byteorder, signed=True)


_WINDOW_CLAMP: Final = getattr(socket, "TCP_WINDOW_CLAMP", None)


def _raise_window_clamp(sock: socket.socket, window: int) -> None:
    """Let the window grow to `window` bytes. Linux 6 raises the clamp with SO_RCVBUF;
    older kernels keep the one fixed when the connection opened with the default
    buffer (about 64 KiB), which would cap the sender's window there."""
    if _WINDOW_CLAMP is None:
        return
    try:
        if sock.getsockopt(socket.IPPROTO_TCP, _WINDOW_CLAMP) < window:
            sock.setsockopt(socket.IPPROTO_TCP, _WINDOW_CLAMP, window)
    except OSError:
        pass


def _fixed(pump: int, control: int) -> int:
    """The budget's part outside the data queues: pipes, reverse queues, overshoot."""
    return 2 * pump + 2 * control + 2 * SKB_SLACK


def _whole_kib(n: int) -> int:
    # An even number of KiB, so that the request (half) is whole KiB too.
    return n - n % (2 * KIB)


def set_receive_buffer(sock: socket.socket, request: int) -> int:
    """Ask for a receive buffer of request bytes; return what the kernel granted."""
    return _set(sock, socket.SO_RCVBUF, _RCVBUFFORCE, request)


def set_send_buffer(sock: socket.socket, request: int) -> int:
    """Ask for a send buffer of request bytes; return what the kernel granted."""
    return _set(sock, socket.SO_SNDBUF, _SNDBUFFORCE, request)


def set_both(sock: socket.socket, request: int) -> None:
    set_receive_buffer(sock, request)
    set_send_buffer(sock, request)


_force_refused = False
"""Set once the kernel said EPERM to a FORCE option: this process lacks CAP_NET_ADMIN,
so every later call goes straight to the capped option (one syscall, not two)."""


def _set(sock: socket.socket, option: int, force: int | None, request: int) -> int:
    # FORCE passes the rmem_max/wmem_max cap where we have CAP_NET_ADMIN;
    # without it the kernel says EPERM and the capped option is the fallback.
    global _force_refused
    forced = False
    if force is not None and not _force_refused:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, request)
            forced = True
        except PermissionError:
            _force_refused = True
        except OSError:
            pass
    if not forced:
        sock.setsockopt(socket.SOL_SOCKET, option, request)
    return sock.getsockopt(socket.SOL_SOCKET, option)


def granted_data_buffers(plan_: BufferPlan) -> tuple[int, int]:
    """(receive, send) bytes the kernel grants a data socket here, as the kernel counts them.

    Used at start-up to say truthfully what a transfer gets, and to warn when
    the system caps the requests below the plan.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        receive = set_receive_buffer(probe, plan_.sender_receive // 2)
        return receive, set_send_buffer(probe, plan_.receiver_send // 2)
