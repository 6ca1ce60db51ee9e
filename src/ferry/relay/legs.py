"""The relay's end of a socketpair that stands for a browser's network leg.

A WebSocket bridge (bridge.py) and a TLS leg (tls.py) each put a socketpair
between the browser's TCP socket and the code that reads the plaintext, so
that code sees an ordinary socket. Socket options that describe the network
leg (buffer sizes, keep-alive, TCP options) are set on, and read from, the
browser's TCP socket instead: that is where bytes are in flight. A buffer
request is made smaller by half the bytes the module in between holds
(`hold`, both directions counted), so the leg's total stays within the
per-transfer budget (buffers.py); control-size requests stay as they are.
Standard library only.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Final

BUFFER_OPTIONS: Final = {
    socket.SO_SNDBUF,
    socket.SO_RCVBUF,
    getattr(socket, "SO_SNDBUFFORCE", 32),
    getattr(socket, "SO_RCVBUFFORCE", 33),
}
LEG_OPTIONS: Final = BUFFER_OPTIONS | {socket.SO_KEEPALIVE}


def leg_request(request: int, hold: int) -> int:
    """What to ask of the browser's TCP socket when ``request`` is asked of the pair's
    end (half the kernel's count): a data-direction buffer gives up half of `hold`;
    requests no larger than `hold` (the control buffers) stay as they are."""
    return request - hold // 2 if request > hold else request


class LegEnd(socket.socket):
    """One end of the pair, given to the code that reads the plaintext; `outer` is the
    browser's TCP socket, which takes the leg's socket options."""

    hold = 0
    """Bytes the module between the two holds, both directions (its subclass sets it)."""

    def __init__(self, fileno: int, outer: socket.socket) -> None:
        super().__init__(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno)
        self.outer = outer
        self.on_close: Callable[[], None] | None = None
        """Called once when this end is closed (the cue for the leg to end)."""

    def close(self) -> None:
        super().close()
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()

    def _is_leg_option(self, level: int, optname: int) -> bool:
        return level == socket.IPPROTO_TCP or (
            level == socket.SOL_SOCKET and optname in LEG_OPTIONS
        )

    def setsockopt(self, level: int, optname: int, value: Any, *rest: Any) -> None:
        if not self._is_leg_option(level, optname):
            super().setsockopt(level, optname, value, *rest)
            return
        if optname in BUFFER_OPTIONS and level == socket.SOL_SOCKET and isinstance(value, int):
            value = leg_request(value, self.hold)
        self.outer.setsockopt(level, optname, value, *rest)

    def getsockopt(self, level: int, optname: int, *rest: Any) -> Any:
        if self._is_leg_option(level, optname):
            return self.outer.getsockopt(level, optname, *rest)
        return super().getsockopt(level, optname, *rest)
