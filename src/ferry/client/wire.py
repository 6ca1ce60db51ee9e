"""The driver of a session (protocol/session.py) over the paired socket.

It only moves bytes and keeps the session's timer: reads go straight into
the session's buffer (recv_into), writes go out whole, and every wait is
bounded by the session's deadline. All protocol decisions are the
session's; socket errors become ConnectionLost here.
"""

from __future__ import annotations

import asyncio
import socket

from ferry.client.peer import shown
from ferry.config import ClientConfig
from ferry.errors import ConnectionLost, RefusedByPeer, RemoteProtocolError, TimedOut
from ferry.protocol.session import Event, NeedData, PeerAborted, Session, Timeouts

ABORT_GRACE = ClientConfig.abort_grace


def timeouts(config: ClientConfig) -> Timeouts:
    return Timeouts(config.handshake_timeout, config.io_timeout, config.ack_timeout)


class Wire:
    def __init__(self, sock: socket.socket, session: Session, early: bytes = b"") -> None:
        self.sock = sock
        self.session = session
        self._loop = asyncio.get_running_loop()
        if early:
            session.receive_data(early, self._loop.time())
        self.lost_message = f"the {session.peer} went away"

    def _timeout(self) -> asyncio.Timeout:
        return asyncio.timeout_at(self.session.deadline)

    def _expired(self) -> TimedOut:
        error = self.session.expire(self._loop.time())
        return error or TimedOut(f"the {self.session.peer} stopped responding")

    async def next_event(self) -> Event:
        """The peer's next event, reading as much as it takes; an ABORT raises RefusedByPeer."""
        session = self.session
        while isinstance(event := session.next_event(), NeedData):
            try:
                async with self._timeout():
                    n = await self._loop.sock_recv_into(self.sock, session.writable())
            except TimeoutError:
                raise self._expired() from None
            except OSError:
                raise ConnectionLost(self.lost_message) from None
            if n == 0:
                raise ConnectionLost(self.lost_message)
            session.commit(n, self._loop.time())
        if isinstance(event, PeerAborted):
            said = shown(event.abort.message or event.abort.reason)
            raise RefusedByPeer(f"the {session.peer} gave up: {said}")
        return event

    async def expect(self, kind: type[Event]) -> Event:
        event = await self.next_event()
        if not isinstance(event, kind):
            peer = self.session.peer
            raise RemoteProtocolError(f"unexpected {type(event).__name__} from the {peer}")
        return event

    async def write(self, data: bytes | memoryview) -> None:
        try:
            async with self._timeout():
                await self._loop.sock_sendall(self.sock, data)
        except TimeoutError:
            raise self._expired() from None
        except OSError:
            raise ConnectionLost(self.lost_message) from None
        self.session.wrote(self._loop.time())

    async def flush(self) -> None:
        """Write out whatever records the session produced."""
        data = self.session.data_to_send()
        if data:
            await self.write(data)

    async def abort(self, reason: str, message: str) -> None:
        """Best effort: tell the peer why we stop. Never raises."""
        self.session.abort(reason, message, self._loop.time())
        data = self.session.data_to_send()
        if not data:
            return
        try:
            async with asyncio.timeout(ABORT_GRACE):
                await self._loop.sock_sendall(self.sock, data)
        except (OSError, TimeoutError):
            pass

    def close(self) -> None:
        self.sock.close()
