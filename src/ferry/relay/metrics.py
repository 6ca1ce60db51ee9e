"""Relay metrics: counters, Prometheus text, and a tiny HTTP endpoint.

Theory of operation. `Metrics` is plain counters the server bumps; gauges
(connections open, waiting senders, ...) are read from the server when
scraped, so they can never drift. `render()` is a pure function to the
Prometheus text exposition format (version 0.0.4).

The endpoint is optional and listens on its own address (keep it private:
bind it to localhost or a management network). It is deliberately small:
GET /metrics, GET /healthz (200 "ok", 503 "draining" during shutdown),
anything else 404/405, and a first line that is not an HTTP request line (a
ferry client pointed at this port) 400 at once. Its own bounds: at most
METRICS_MAX_CLIENTS connections at once, a request head of at most
METRICS_MAX_REQUEST bytes (else the connection is closed) read within
METRICS_REQUEST_TIMEOUT seconds, one request per connection. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ferry.config import METRICS_MAX_CLIENTS, METRICS_MAX_REQUEST, METRICS_REQUEST_TIMEOUT

PREFIX: Final = "ferry_relay_"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    """Counters since the relay started. Labels are our own tokens, never client input."""

    connections: int = 0
    bytes_relayed: int = 0
    transfers: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1

    def ended(self, role: str, outcome: str) -> None:
        self.outcomes[(role, outcome)] += 1


Gauges = Mapping[str, tuple[str, float]]
"""name -> (help text, value), read from the server at scrape time; a name that ends
in _total is a Prometheus counter (it only counts up from the start), any other a gauge."""


def render(metrics: Metrics, gauges: Gauges) -> str:
    """The Prometheus text exposition of metrics and gauges."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = PREFIX + name
        out.append(f"# HELP {full} {help_text}")
        out.append(f"# TYPE {full} {kind}")
        return full

    for name, (help_text, value) in gauges.items():
        # Read at scrape time, but a name in _total counts up from the start: a counter.
        kind = "counter" if name.endswith("_total") else "gauge"
        out.append(f"{family(name, kind, help_text)} {_number(value)}")
    name = family("connections_total", "counter", "Connections accepted.")
    out.append(f"{name} {metrics.connections}")
    name = family("bytes_relayed_total", "counter", "Bytes piped, both ways, counted as they move.")
    out.append(f"{name} {metrics.bytes_relayed}")
    name = family("transfers_total", "counter", "Pipes that started (sender and receiver paired).")
    out.append(f"{name} {metrics.transfers}")
    name = family("refusals_total", "counter", "ERROR answers, by reason.")
    for reason, count in sorted(metrics.refusals.items()):
        out.append(f'{name}{{reason="{reason}"}} {count}')
    name = family("outcomes_total", "counter", "Ended connections, by role and outcome.")
    for (role, outcome), count in sorted(metrics.outcomes.items()):
        out.append(f'{name}{{role="{role}",outcome="{outcome}"}} {count}')
    name = family("start_time_seconds", "gauge", "Unix time the relay started.")
    out.append(f"{name} {metrics.started:.3f}")
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MetricsServer:
    """Serves /metrics and /healthz on its own listening sockets."""

    def __init__(self, text: Callable[[], str], healthy: Callable[[], bool]) -> None:
        self._text = text
        self._healthy = healthy
        self._servers: list[asyncio.Server] = []
        self._slots = METRICS_MAX_CLIENTS

    async def start(self, listeners: list[socket.socket]) -> None:
        for listener in listeners:
            server = await asyncio.start_server(
                self._handle, sock=listener, limit=METRICS_MAX_REQUEST
            )
            self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots <= 0:
            writer.close()
            return
        self._slots -= 1
        try:
            async with asyncio.timeout(METRICS_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\n")
                if _HTTP_REQUEST_LINE.fullmatch(head):
                    head += await _rest_of_head(reader, len(head))
                    status, body = self._respond(head)
                else:  # a ferry client sent here by mistake: answer now, not at the timeout
                    status, body = "400 Bad Request", NOT_HTTP
                writer.write(_response(status, body))
                await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._slots += 1
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, str]:
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if method != b"GET":
            return "405 Method Not Allowed", "only GET\n"
        if target == b"/metrics":
            return "200 OK", self._text()
        if target == b"/healthz":
            if self._healthy():
                return "200 OK", "ok\n"
            return "503 Service Unavailable", "draining\n"
        return "404 Not Found", "try /metrics or /healthz\n"


_HTTP_REQUEST_LINE: Final = re.compile(rb"[A-Z]+ \S+ HTTP/1\.[01]\r?\n")
NOT_HTTP: Final = "not an HTTP request: this is a ferry relay's metrics endpoint, not the relay\n"


async def _rest_of_head(reader: asyncio.StreamReader, have: int) -> bytes:
    """The header lines after the request line, up to the empty one, within the size bound."""
    rest = b""
    while not rest.endswith((b"\n\r\n", b"\n\n")) and rest not in (b"\r\n", b"\n"):
        rest += await reader.readuntil(b"\n")
        if have + len(rest) > METRICS_MAX_REQUEST:
            raise asyncio.LimitOverrunError("request head too long", 0)
    return rest


def _response(status: str, body: str) -> bytes:
    data = body.encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data
