"""The driver of a session (protocol/sender_session.py, receiver_session.py) over a socket.

It only moves bytes and keeps the session's timer: reads go straight into
the session's buffer (recv_into), writes go out whole, and every wait is
bounded by the session's deadline. All protocol decisions are the
session's; socket errors become ConnectionLost here.

While a decision is local (the receiver's --ask prompt: the session is
DECIDING and has no timer), while_deciding() watches the socket too, so a
peer that goes away or gives up ends the wait instead of leaving it open
for ever.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

from ferry import platform
from ferry.client.peer import abort_for, lost, shown
from ferry.config import ClientConfig
from ferry.errors import (
    ConnectionLost,
    FerryError,
    PeerSourceChanged,
    RefusedByPeer,
    RemoteProtocolError,
    TimedOut,
)
from ferry.protocol import messages
from ferry.protocol.events import Event, NeedData, PeerAborted, State, Timeouts
from ferry.protocol.session import Session

ABORT_GRACE = ClientConfig.abort_grace
T = TypeVar("T")
E = TypeVar("E", bound=Event)


def timeouts(config: ClientConfig) -> Timeouts:
    return Timeouts(
        config.handshake_timeout, config.io_timeout, config.ack_timeout, config.answer_timeout
    )


class Wire:
    def __init__(self, sock: socket.socket, session: Session, early: bytes = b"") -> None:
        self.sock = sock
        self.session = session
        self._loop = asyncio.get_running_loop()
        if early:
            session.receive_data(early, self._loop.time())
        self.lost_message = lost(session.peer)

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
            raise self._gave_up(event)
        return event

    def _gave_up(self, event: PeerAborted) -> RefusedByPeer:
        if event.abort.reason == messages.REASON_NO_SPACE:
            return RefusedByPeer(f"the {self.session.peer} ran out of disk space")
        said = shown(event.abort.message or event.abort.reason)
        if event.abort.reason == messages.REASON_CHANGED:
            return PeerSourceChanged(f"the {self.session.peer} stopped: {said}")
        return RefusedByPeer(f"the {self.session.peer} gave up: {said}")

    def _lost(self) -> ConnectionLost | RefusedByPeer:
        """A write failed: the peer's ABORT if it is waiting to be read, else ConnectionLost.

        A peer that gives up while we send (a receiver whose disk filled up)
        sends ABORT and closes; our next write fails before we read again,
        and its reason is in the bytes already here.
        """
        session = self.session
        try:
            while True:
                event = session.next_event()
                if isinstance(event, PeerAborted):
                    return self._gave_up(event)
                if isinstance(event, NeedData):
                    n = self.sock.recv_into(session.writable(), 0, socket.MSG_DONTWAIT)
                    if not n:
                        break
                    session.commit(n, self._loop.time())
        except (OSError, FerryError):  # nothing (more) to read, or not a clean record
            pass
        return ConnectionLost(self.lost_message)

    def _unexpected(self, event: Event) -> RemoteProtocolError:
        peer = self.session.peer
        return RemoteProtocolError(f"unexpected {type(event).__name__} from the {peer}")

    async def expect(self, kind: type[E]) -> E:
        """The peer's next event, which must be a `kind`; anything else raises."""
        event = await self.next_event()
        if not isinstance(event, kind):
            raise self._unexpected(event)
        return event

    async def while_deciding(self, decision: Awaitable[T]) -> T:
        """The decision's result, unless the peer goes away or speaks first (then it raises).

        Only while the session is DECIDING: the peer waits for our answer and
        has nothing to say. The end of the stream or a socket error is
        ConnectionLost, an ABORT is RefusedByPeer with the peer's reason, any
        other record a RemoteProtocolError; the decision is then cancelled.
        The socket is only watched for readability and read here, never by a
        task that could be cancelled holding bytes it read. What the peer did
        wins over a decision made at the same moment: an answer to a peer that
        is gone would only fail later, and less clearly.
        """
        deciding = asyncio.ensure_future(decision)
        try:
            while True:
                readable = asyncio.ensure_future(platform.wait_readable(self._loop, self.sock))
                waiting: set[asyncio.Future[Any]] = {deciding, readable}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    heard = readable.done()
                    readable.cancel()
                if heard:
                    self._heard()
                elif deciding.done():
                    return deciding.result()
        finally:
            deciding.cancel()
            await asyncio.gather(deciding, return_exceptions=True)

    def _heard(self) -> None:
        """Read what the peer sent while we decide; raise if it went away or said anything."""
        session = self.session
        try:
            n = self.sock.recv_into(session.writable())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            raise ConnectionLost(self.lost_message) from None
        if n == 0:
            raise ConnectionLost(self.lost_message)
        session.commit(n, self._loop.time())
        event = session.next_event()  # the session raises on a record it does not expect
        if isinstance(event, NeedData):
            return  # part of a record: watch on
        if isinstance(event, PeerAborted):
            raise self._gave_up(event)
        raise self._unexpected(event)

    async def write(self, data: bytes | memoryview) -> None:
        """Write all of data. The session hears whether the write had to wait for room
        in the socket's send queue (a full queue: the network is behind), which is
        what decides whether a sender compresses (protocol/compression.py)."""
        view = memoryview(data)
        try:
            sent = self.sock.send(view)  # non-blocking: what fits now
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            raise self._lost() from None
        waited = sent < len(view)
        if waited:
            try:
                async with self._timeout():
                    await self._loop.sock_sendall(self.sock, view[sent:])
            except TimeoutError:
                raise self._expired() from None
            except OSError:
                raise self._lost() from None
        self.session.wrote(self._loop.time(), waited)

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

    async def abort_on(self, error: BaseException, after: str = "") -> None:
        """After a local failure: tell the peer why, by peer.abort_for's one rule (only
        the error's class and the offered name, never a local path). Best effort;
        nothing is sent once the transfer is done, or for an error the peer caused
        or already knows of (ConnectionLost, RefusedByPeer)."""
        if self.session.state is State.DONE:
            return
        offer: messages.Offer | None = getattr(self.session, "offer", None)
        side = self.session.side
        abort = abort_for(error, side, offer.name if offer is not None else "", after)
        if abort is not None:
            await self.abort(abort.reason, abort.message)

    def close(self) -> None:
        self.sock.close()
