"""How the relay spends its per-transfer memory budget on socket buffers.

Theory of operation. A TCP leg that carries X bytes/s over a round trip of
R seconds needs about X * R bytes in flight, and the relay holds those
bytes until they are acknowledged. So the socket buffers decide both the
relay's memory per transfer and the fastest a transfer can go over a long
path. Data flows one way: sender -> relay -> receiver. Per transfer:

    sender --data--> [rcvbuf S sndbuf] --pump--> [sndbuf R rcvbuf] --data--> receiver
                      DATA     small     pipe     DATA     small

- the sender-side socket's receive buffer (S.rcv) sets the window the
  sender may have in flight to the relay;
- the receiver-side socket's send buffer (R.snd) holds what the relay has
  sent the receiver and not yet had acknowledged;
- the reverse direction (receiver -> sender: key confirmation, answer,
  ACK, a few hundred bytes) gets small buffers, and so does every socket
  before it is paired (handshakes, waiting senders), so idle connections
  can never pin more than a few KiB each.

The worst case is a receiver that stops reading (or acknowledging) while
the sender pushes: R.snd fills, the pump's pipe fills, S.rcv fills. So the
budget is split as

    budget = 2 * data_kernel           (S.rcv and R.snd, both full)
           + 2 * pump_buffer           (one pipe or copy buffer per direction)
           + 2 * control_kernel        (S.snd and R.rcv, the reverse direction)
           + 2 * SKB_SLACK             (a queue may pass its limit by one skb)

where *_kernel is what Linux really allows: it doubles every SO_RCVBUF /
SO_SNDBUF request to cover its bookkeeping, and `ss -tm` reports that
doubled figure as rb/tb and the truesize of queued data (overhead included)
as r/w. With the default 4 MiB budget each data buffer is about 1.8 MiB.

The window-scale factor is fixed in the SYN exchange from the listening
socket's receive buffer, before the relay knows what a connection is for,
and it caps every window the connection can ever advertise at 65535 <<
scale. So the listening socket asks for LISTEN_FACTOR times the data
buffer, enough for one more scale step than the data buffer needs (a
smaller listener reintroduces the cliff where a 1.9 MiB buffer gets scale
4 and so a 1 MiB window). Every accepted socket is shrunk to the control
size at once, and only the two data-direction buffers of a paired transfer
are raised, when the pipe starts. Buffers are limits, not allocations: a
socket with nothing queued costs no buffer memory whatever its limit.

Linux caps unprivileged requests at net.core.rmem_max / wmem_max (208 KiB
by default). The relay asks with SO_RCVBUFFORCE / SO_SNDBUFFORCE first,
which a process with CAP_NET_ADMIN may use, and reads back what it got.

Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import Final

from ferry.config import RelayConfig

KIB: Final = 1024

CONTROL_BUFFER: Final = 16 * KIB
"""Request for every socket before pairing, and for the reverse direction."""

SKB_SLACK: Final = 64 * KIB
"""How far one queue may pass its limit: the kernel admits one more skb (a GSO
segment of up to 64 KiB) when the queue is just under its limit."""

LISTEN_FACTOR: Final = 2
"""Listening socket's buffer request, in data buffers (window scale headroom)."""

_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", None)
_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", None)


@dataclass(frozen=True)
class BufferPlan:
    """Socket buffer requests, in bytes as passed to setsockopt (the kernel doubles them)."""

    data: int
    """S.rcv and R.snd of a running transfer: the data direction."""

    control: int
    """Every socket until it is paired, and S.snd and R.rcv afterwards."""

    listen: int
    """The listening sockets' requests, inherited by accepted sockets until shrunk."""

    pump: int
    """Bytes per direction in the pump's pipe or copy buffer."""

    def worst_case(self) -> int:
        """Most bytes one transfer can hold at the relay, kernel overhead included."""
        return 2 * (2 * self.data) + 2 * self.pump + 2 * (2 * self.control) + 2 * SKB_SLACK


def plan(config: RelayConfig) -> BufferPlan:
    """The largest data buffers whose worst case stays within the transfer budget."""
    budget, pump_buffer = config.transfer_budget, config.pump_buffer
    fixed = 2 * pump_buffer + 2 * (2 * CONTROL_BUFFER) + 2 * SKB_SLACK
    data = max(0, budget - fixed) // 4
    data -= data % KIB
    return BufferPlan(
        data=data, control=CONTROL_BUFFER, listen=LISTEN_FACTOR * data, pump=pump_buffer
    )


def set_receive_buffer(sock: socket.socket, request: int) -> int:
    """Ask for a receive buffer of request bytes; return what the kernel granted."""
    return _set(sock, socket.SO_RCVBUF, _RCVBUFFORCE, request)


def set_send_buffer(sock: socket.socket, request: int) -> int:
    """Ask for a send buffer of request bytes; return what the kernel granted."""
    return _set(sock, socket.SO_SNDBUF, _SNDBUFFORCE, request)


def set_both(sock: socket.socket, request: int) -> None:
    set_receive_buffer(sock, request)
    set_send_buffer(sock, request)


def _set(sock: socket.socket, option: int, force: int | None, request: int) -> int:
    # FORCE passes the rmem_max/wmem_max cap where we have CAP_NET_ADMIN;
    # without it the kernel says EPERM and the capped option is the fallback.
    forced = False
    if force is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, request)
            forced = True
    if not forced:
        sock.setsockopt(socket.SOL_SOCKET, option, request)
    return sock.getsockopt(socket.SOL_SOCKET, option)


def granted_data_buffers(plan_: BufferPlan) -> tuple[int, int]:
    """(receive, send) bytes the kernel grants a data socket here, as the kernel counts them.

    Used at start-up to say truthfully what a transfer gets, and to warn when
    the system caps the requests below the plan.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return set_receive_buffer(probe, plan_.data), set_send_buffer(probe, plan_.data)
