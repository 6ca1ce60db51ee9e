"""An in-memory transport: a sender and a receiver session joined without sockets.

Each direction is a byte queue; `cut` decides how the bytes in flight are
split into deliveries (whole, one byte at a time, or arbitrary pieces), so
a test can check that the sessions behave the same however TCP slices the
stream. Only the sessions' public API is used, exactly as client/wire.py
uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ferry.protocol.events import OVER, Event, NeedData
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.sender_session import SenderSession
from ferry.protocol.session import Session

Cut = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@dataclass
class Clock:
    """A clock a test moves by hand: pass clock.now, or the clock itself where a
    callable returning the time is wanted."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class MemoryTransport:
    sender: SenderSession
    receiver: ReceiverSession
    cut: Cut = whole
    clock: Clock = field(default_factory=Clock)
    to_receiver: bytearray = field(default_factory=bytearray)
    to_sender: bytearray = field(default_factory=bytearray)

    def pair(self) -> None:
        """What the relay does: each first flight lands right behind PAIRED."""
        self.to_receiver += self.sender.first_flight()
        self.to_sender += self.receiver.first_flight()
        self.sender.paired(self.clock.now)
        self.receiver.paired(self.clock.now)

    def send(self, session: Session, data: bytes | bytearray | memoryview) -> None:
        queue = self.to_receiver if session is self.sender else self.to_sender
        queue += data

    def flush(self, session: Session) -> None:
        self.send(session, session.data_to_send())

    def events(self, session: Session) -> list[Event]:
        """Deliver everything in flight to `session`; the events it yields, views copied."""
        queue = self.to_sender if session is self.sender else self.to_receiver
        data, queue[:] = bytes(queue), b""
        events: list[Event] = []

        def drain() -> None:
            # Once over, a session has nothing more to say (and raises if asked).
            while session.state not in OVER and not isinstance(
                event := session.next_event(), NeedData
            ):
                events.append(_detached(event))

        drain()
        for piece in self.cut(data):
            view = memoryview(piece)
            while view:
                space = session.writable()
                n = min(len(space), len(view))
                space[:n] = view[:n]
                session.commit(n, self.clock.now)
                view = view[n:]
                drain()
        return events


def _detached(event: Event) -> Event:
    """An event whose data no longer points into the session's buffer."""
    from ferry.protocol.events import DataReceived, FileData

    if isinstance(event, DataReceived):
        return DataReceived(memoryview(bytes(event.data)), event.final)
    if isinstance(event, FileData):
        return FileData(event.index, memoryview(bytes(event.data)), event.done)
    return event
