"""A client's connection to the relay, up to PAIRED.

Maps every OS error to a ferry error at this edge: RelayUnreachable while
connecting, ConnectionLost afterwards, RelayRefused for an ERROR line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

from ferry.address import Address
from ferry.client.dial import Dialing
from ferry.config import ClientConfig
from ferry.errors import (
    BadRequest,
    ConnectionLost,
    FerryError,
    NotARelay,
    RelayLineTooLong,
    RelayRefused,
    RelayUnreachable,
    RemoteProtocolError,
    TimedOut,
)
from ferry.protocol import rendezvous as rv

log = logging.getLogger("ferry.client")

_REFUSAL_TEXT = {
    rv.REASON_UNKNOWN_NAMEPLATE: "unknown code: no sender is waiting with nameplate {n} "
    "(check the number, and that the sender is still running)",
    rv.REASON_CLAIMED: "code already in use: another receiver is using nameplate {n}",
    rv.REASON_RETRY: "another receiver is still pairing on nameplate {n}; try again",
    rv.REASON_BUSY: "relay busy, try again later",
    rv.REASON_VERSION: "the relay speaks another protocol version; update ferry",
    rv.REASON_TOO_MANY_ATTEMPTS: "too many attempts on nameplate {n}; ask for a new code",
    rv.REASON_TIMEOUT: "timed out at the relay",
    rv.REASON_SENDER_GONE: "the sender went away",
    rv.REASON_SHUTTING_DOWN: "the relay is shutting down, try again later",
    rv.REASON_RATE_LIMITED: "too many attempts from this address; wait a minute and try again",
    rv.REASON_TOO_MANY_CONNECTIONS: "relay busy: too many connections from this address, "
    "try again later",
    rv.REASON_UNAVAILABLE: "the relay cannot take this request right now; try again in a moment",
    rv.REASON_BAD_REQUEST: "the relay rejected the request as malformed",
    rv.REASON_STALE_TICKET: "the receiver that data connection was for is gone",
}


def refusal_error(message: rv.Refused, nameplate: int | None) -> RelayRefused:
    """Our own sentence for a refusal, never the relay's: its text (and an unknown
    reason) is the relay's to choose ("update now: curl ... | sh"), so only -v logs
    them, escaped."""
    from ferry.client.peer import shown  # only for refusals: off the path to the code

    log.info("the relay refused: %s %s", shown(message.reason), shown(message.text))
    template = _REFUSAL_TEXT.get(message.reason)
    if template is None:
        return RelayRefused(message.reason, "relay refused (unknown reason)")
    return RelayRefused(message.reason, template.format(n=nameplate))


def os_reason(exc: OSError) -> str:
    """An OS error in words: "connection refused", not asyncio's "Connect call failed
    ('127.0.0.1', 9021)" (its strerror names the address, the errno says what happened)."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


class RelayLink:
    """One TCP connection to the relay, speaking rendezvous lines until PAIRED."""

    def __init__(self, sock: socket.socket, address: Address) -> None:
        self.sock = sock
        self.address = address
        self._lines = rv.LineBuffer()
        self._heard = False
        """A valid relay line arrived: from then on, a bad one is the relay's error."""

    @classmethod
    async def connect(
        cls, address: Address, timeout: float, dialing: Dialing | None = None
    ) -> RelayLink:
        """Connect to the relay; `dialing` is a connect started earlier (client/dial.py)
        to take over, if its addresses were resolved."""
        loop = asyncio.get_running_loop()
        where = str(address)
        errors: list[OSError] = []
        try:
            async with asyncio.timeout(timeout):
                infos: Sequence[_AddrInfo] = []
                started: socket.socket | None = None
                if dialing is not None and (
                    dialing.wait(0) or await asyncio.to_thread(dialing.wait, timeout)
                ):
                    infos, started = dialing.take()
                if not infos:
                    infos = await loop.getaddrinfo(
                        address.host, address.port, type=socket.SOCK_STREAM
                    )
                sock = await _first_to_connect(infos, errors, started)
                if sock is not None:
                    return cls(sock, address)
        except TimeoutError:
            raise RelayUnreachable(f"relay not reachable at {where} (timed out)") from None
        except socket.gaierror as exc:
            raise RelayUnreachable(f"relay not reachable at {where} ({exc.strerror})") from None
        reason = os_reason(errors[-1]) if errors else "no address"
        raise RelayUnreachable(f"relay not reachable at {where} ({reason})")

    async def connect_again(self, timeout: float) -> RelayLink:
        """Another connection to the very address this one reached (no DNS on the way)."""
        sock = self.sock
        try:
            async with asyncio.timeout(timeout):
                return RelayLink(
                    await _open(sock.family, sock.type, sock.proto, sock.getpeername()),
                    self.address,
                )
        except (OSError, TimeoutError) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else "timed out"
            raise RelayUnreachable(f"relay not reachable at {self.address} ({reason})") from None

    async def send(self, message: rv.ClientMessage, pipelined: bytes = b"") -> None:
        """Send one line, and `pipelined` bytes for the peer right behind it.

        The relay holds bytes that follow a RECV or JOIN line and delivers
        them to the peer right after PAIRED, so a first flight sent here
        saves a round trip.
        """
        await self.send_raw(rv.encode(message) + pipelined)

    async def send_raw(self, data: bytes) -> None:
        """Bytes for the peer, sent after our line and before PAIRED (see send)."""
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError as exc:
            raise ConnectionLost(f"lost the connection to the relay ({exc.strerror})") from None

    async def receive(self) -> rv.RelayMessage:
        """The next line from the relay; an ERROR line is returned, not raised.

        Until a first valid line arrived, an answer that no relay sends
        (a line or the start of one: HTTP, an SSH banner, a TLS alert) is
        NotARelay; a server that closes without a byte may be a relay that
        failed, and is named as such a question.
        """
        loop = asyncio.get_running_loop()
        start = self._lines.peek()
        try:
            while (line := self._next_line()) is None:
                try:
                    data = await loop.sock_recv(self.sock, rv.MAX_LINE)
                except OSError as exc:
                    reason = exc.strerror
                    raise ConnectionLost(f"lost the connection to the relay ({reason})") from None
                if not data:
                    raise self._closed()
                self._lines.receive_data(data)
                start = self._lines.peek()
                if not self._heard and not rv.could_be_relay(start):
                    raise self._not_a_relay(start)
            message = rv.parse_relay_line(line)
        except RemoteProtocolError as exc:
            # An over-long line is a relay breaking the protocol (exit 7), not proof
            # that the server is something else: only a line's start can prove that.
            if self._heard or isinstance(exc, RelayLineTooLong):
                raise
            raise self._not_a_relay(start) from None
        self._heard = True
        return message

    def _closed(self) -> FerryError:
        if self._heard:
            return ConnectionLost("the relay closed the connection")
        return ConnectionLost(
            f"{self.address} closed the connection without answering (is it a ferry relay?)"
        )

    def _not_a_relay(self, start: bytes) -> NotARelay:
        speaks = " (it answered in HTTP)" if start.startswith(b"HTTP/") else ""
        return NotARelay(f"{self.address} is not a ferry relay{speaks}")

    def _next_line(self) -> bytes | None:
        try:
            return self._lines.next_line()
        except BadRequest:
            raise RelayLineTooLong(
                f"the relay sent a line longer than {rv.MAX_LINE} bytes (not a ferry relay)"
            ) from None

    async def expect(
        self,
        kind: type[rv.RelayMessage] | tuple[type[rv.RelayMessage], ...],
        nameplate: int | None,
        timeout: float | None,
    ) -> rv.RelayMessage:
        """Wait for one message of `kind` (or kinds), answering PINGs; raise on ERROR.

        timeout None waits as long as the connection lasts.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await self.receive()
                    if isinstance(message, kind):
                        return message
                    if isinstance(message, rv.Refused):
                        raise refusal_error(message, nameplate)
                    if isinstance(message, rv.Ping):
                        await self.send(rv.Pong())
                        continue
                    raise ConnectionLost(f"the relay sent an unexpected {type(message).__name__}")
        except TimeoutError:
            raise TimedOut(f"timed out waiting for the relay ({timeout or 0:.0f}s)") from None

    def take_rest(self) -> bytes:
        """Bytes that arrived after PAIRED: the start of the peer's stream."""
        return self._lines.take_rest()

    def close(self) -> None:
        self.sock.close()


HAPPY_EYEBALLS_DELAY = ClientConfig.happy_eyeballs_delay
"""Seconds to wait on one address before also trying the next (RFC 8305)."""

_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


async def _first_to_connect(
    infos: Sequence[_AddrInfo], errors: list[OSError], started: socket.socket | None = None
) -> socket.socket | None:
    """Connect to the resolved addresses in order, starting the next one after
    HAPPY_EYEBALLS_DELAY or as soon as one fails; the first to connect wins.

    A dead first address (broken IPv6, say) then costs a quarter second, not
    the whole connect timeout. The losers are cancelled and closed. `started`
    is a non-blocking socket already connecting to the first address
    (client/dial.py): it is that address's attempt.
    """
    pending: set[asyncio.Task[socket.socket]] = set()
    try:
        for index, (family, type_, proto, _, sockaddr) in enumerate(infos):
            if index == 0 and started is not None:
                attempt = _connected(started)
            else:
                attempt = _open(family, type_, proto, sockaddr)
            pending.add(asyncio.create_task(attempt))
            won = await _settle(pending, errors, HAPPY_EYEBALLS_DELAY)
            if won is not None:
                return won
        while pending:
            won = await _settle(pending, errors, None)
            if won is not None:
                return won
        return None
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                (await task).close()


async def _settle(
    pending: set[asyncio.Task[socket.socket]], errors: list[OSError], timeout: float | None
) -> socket.socket | None:
    """Wait up to timeout for an attempt to finish: its socket, or None (failures noted)."""
    done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        pending.discard(task)
        exc = task.exception()
        if exc is None:
            return task.result()
        if not isinstance(exc, OSError):
            raise exc
        errors.append(exc)
    return None


async def _connected(sock: socket.socket) -> socket.socket:
    """sock, once the connect started on it (non-blocking) has succeeded; its error if not."""
    loop = asyncio.get_running_loop()
    try:
        writable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not writable.done():
                writable.set_result(None)

        loop.add_writer(sock.fileno(), ready)
        try:
            await writable
        finally:
            loop.remove_writer(sock.fileno())
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def _open(family: int, type_: int, proto: int, sockaddr: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
