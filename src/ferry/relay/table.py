"""The relay's rendezvous table: who holds which nameplate, who is pairing.

Theory of operation. Pure bookkeeping, no I/O, no clock of its own: every
method that cares about time takes `now` (seconds, monotonic), so tests
drive time by hand.

A nameplate moves through three states:

    register()          claim()             join()
    ---------> WAITING ---------> CLAIMED ---------> ACTIVE
                  ^                  |                  |
                  +---- release() ---+------------------+

    unregister() (the sender's control connection closed) removes it from
    any state; a claim or pipe in flight simply finishes on its own.

A standby sender (SEND STANDBY) holds one ticket whenever it is WAITING:
issued at register() and again at each release(). Its data connection may
present that ticket before any receiver comes; join() then parks it on the
entry (still WAITING), and claim() finds it there and goes straight to
ACTIVE, with no INCOMING round trip. A claim that finds no parked
connection waits for the join as usual (the relay then sends INCOMING with
the standby ticket). A parked connection that goes away
is unparked; its ticket stays valid for the sender's next try.

Rules this module owns:
- a nameplate is the smallest positive number not in use, and is never
  handed out twice while in use;
- one claim at a time, the others first come first served: a claim for a
  CLAIMED or ACTIVE nameplate whose claim is still opening (pairing, key
  exchange, offer: seconds at most) joins the nameplate's queue, when the
  server passes its source address, and takes the nameplate the moment
  the claim ahead of it ends (take_turn(), right after release(): no
  newcomer can slip in between). At most MAX_QUEUED_CLAIMS wait, at most
  one per source address; past that, and without a source, the claim is
  refused "retry". Once the claim's transfer runs, a newcomer is refused
  "claimed", and opened() hands back the queue for the same answer;
- a nameplate accepts at most max_claims_per_nameplate claims in its life
  (each one a code guess); a claim released as a refund (it never reached
  the key exchange: no guess was made) is given back;
- at most max_waiting_senders nameplates are WAITING at once (claimed and
  active ones are bounded by the relay's max_active_transfers);
- tickets are one-time: the join that pairs a claim consumes its ticket; a
  standby ticket no join consumed stays valid when its claim ends (the
  sender's connection for it may be on its way), so no new one is issued;
  a ticket used or replaced is remembered (the last STALE_TICKETS), and a
  join presenting it is refused "stale-ticket": that receiver is gone,
  wait for the next ticket;
- at most one data connection is parked per nameplate; presenting the
  ticket again replaces it (the old one is handed back as `displaced`).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Generic, TypeVar

from ferry.config import MAX_QUEUED_CLAIMS, STALE_TICKETS, RelayConfig
from ferry.errors import LocalProtocolError, Refusal
from ferry.protocol import rendezvous as rv

Conn = TypeVar("Conn")


class State(Enum):
    WAITING = "waiting"
    CLAIMED = "claimed"
    ACTIVE = "active"


MOVES: Final[frozenset[tuple[State, State]]] = frozenset(
    {
        (State.WAITING, State.CLAIMED),  # claim()
        (State.CLAIMED, State.ACTIVE),  # join(), or claim() finding a parked connection
        (State.CLAIMED, State.WAITING),  # release()
        (State.ACTIVE, State.WAITING),  # release()
        (State.WAITING, State.WAITING),  # release() of an entry already waiting again
    }
)
"""Every move a nameplate may make (the diagram above); _move() refuses any other."""


@dataclass(eq=False)
class Entry(Generic[Conn]):
    nameplate: int
    sender: Conn
    registered_at: float
    state: State = State.WAITING
    receiver: Conn | None = None
    ticket: str = ""
    claimed_at: float = 0.0
    claims: int = 0
    opening: bool = False
    """The current claim has not reached its data phase (the server says when it has)."""
    live: bool = field(default=True)
    standby: bool = False
    """The sender connects its data connections ahead (SEND STANDBY)."""
    parked: Conn | None = None
    """A standby data connection waiting for the next receiver."""
    displaced: Conn | None = None
    """A parked connection the sender replaced (it reconnected): the caller closes it."""
    queue: deque[tuple[Conn, str]] = field(default_factory=deque)
    """Claims waiting for the one in its opening to end, oldest first, each with its
    source address's key ("" = not limited)."""
    stale: deque[str] = field(default_factory=lambda: deque(maxlen=STALE_TICKETS))
    """Tickets of this nameplate that were used or replaced, newest last."""


class PairingTable(Generic[Conn]):
    def __init__(self, config: RelayConfig, new_ticket: Callable[[], str]) -> None:
        self._config = config
        self._new_ticket = new_ticket
        self._entries: dict[int, Entry[Conn]] = {}
        self._free: list[int] = []  # heap of released numbers below _next
        self._next = 1
        self._counts = dict.fromkeys(State, 0)  # entries in the table, by state
        self._external: set[int] = set()  # numbers a cluster directory allocated

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Entry[Conn]]:
        return list(self._entries.values())

    def count(self, state: State) -> int:
        return self._counts[state]

    def _move(self, entry: Entry[Conn], state: State) -> None:
        """The one place an entry's state changes (MOVES)."""
        if (entry.state, state) not in MOVES:
            raise LocalProtocolError(f"nameplate cannot move from {entry.state} to {state}")
        if self._entries.get(entry.nameplate) is entry:
            self._counts[entry.state] -= 1
            self._counts[state] += 1
        entry.state = state

    def holds(self, nameplate: int) -> bool:
        return nameplate in self._entries

    def register(
        self, sender: Conn, now: float, standby: bool = False, nameplate: int | None = None
    ) -> Entry[Conn]:
        """nameplate: the number a cluster directory allocated (None: the smallest free here)."""
        # Only senders still waiting count: those whose transfer runs are
        # bounded by max_active_transfers instead.
        if self._counts[State.WAITING] >= self._config.max_waiting_senders:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many waiting senders, try later")
        if nameplate is not None:
            if nameplate in self._entries:
                # The directory lost this node's entry (Redis restarted) and
                # handed the number out again before the next refresh.
                raise Refusal(rv.REASON_UNAVAILABLE, "relay directory out of step")
            number = nameplate
            self._external.add(number)
        elif self._free:
            number = heapq.heappop(self._free)
        else:
            number, self._next = self._next, self._next + 1
        entry = Entry(number, sender, registered_at=now, standby=standby)
        if standby:
            entry.ticket = self._new_ticket()
        self._entries[number] = entry
        self._counts[State.WAITING] += 1
        return entry

    def claimable(self, nameplate: int) -> Entry[Conn]:
        """The entry a claim may take once its PAKE record is in; refuses what would not.

        Checked twice: when the claim arrives (its answer comes at once) and
        again by claim() (the entry may have changed meanwhile).
        """
        entry = self._entries.get(nameplate)
        if entry is None:
            raise Refusal(
                rv.REASON_UNKNOWN_NAMEPLATE, f"no sender is waiting on nameplate {nameplate}"
            )
        if entry.claims >= self._config.max_claims_per_nameplate:
            raise Refusal(rv.REASON_TOO_MANY_ATTEMPTS, "too many attempts on this nameplate")
        return entry

    def claim(
        self, nameplate: int, receiver: Conn, now: float, source: str | None = None
    ) -> Entry[Conn]:
        """The receiver takes the nameplate, or (source given: its address's key) joins
        its queue behind a claim still opening; entry.receiver says which."""
        entry = self._entries.get(nameplate)
        if entry is None:
            raise Refusal(
                rv.REASON_UNKNOWN_NAMEPLATE, f"no sender is waiting on nameplate {nameplate}"
            )
        if entry.state is not State.WAITING and entry.opening:
            if source is not None and self._may_queue(entry, source):
                entry.queue.append((receiver, source))
                return entry
            raise Refusal(
                rv.REASON_RETRY, f"another receiver is pairing on nameplate {nameplate}; retry"
            )
        if entry.state is not State.WAITING:
            raise Refusal(rv.REASON_CLAIMED, f"nameplate {nameplate} is in use by another receiver")
        if entry.claims >= self._config.max_claims_per_nameplate:
            raise Refusal(rv.REASON_TOO_MANY_ATTEMPTS, "too many attempts on this nameplate")
        self._take(entry, receiver, now)
        return entry

    def _may_queue(self, entry: Entry[Conn], source: str) -> bool:
        if len(entry.queue) >= MAX_QUEUED_CLAIMS:
            return False
        return not source or all(key != source for _, key in entry.queue)

    def _take(self, entry: Entry[Conn], receiver: Conn, now: float) -> None:
        """The receiver's claim holds the (WAITING) nameplate now."""
        self._move(entry, State.CLAIMED)
        entry.receiver = receiver
        if not entry.standby:
            self._retire(entry)
            entry.ticket = self._new_ticket()
        entry.claimed_at = now
        entry.claims += 1
        entry.opening = True
        if entry.parked is not None:
            self._move(entry, State.ACTIVE)
            self._retire(entry)

    def _retire(self, entry: Entry[Conn]) -> None:
        """The entry's ticket was used or replaced: a join presenting it now is stale."""
        if entry.ticket:
            entry.stale.append(entry.ticket)
        entry.ticket = ""

    def take_turn(self, entry: Entry[Conn], now: float) -> Conn | None:
        """The oldest queued claim takes the nameplate, which just waits again (None: no
        claim is queued, or the nameplate's claim budget is spent: drain_queue())."""
        if entry.state is not State.WAITING or not entry.live or not entry.queue:
            return None
        if entry.claims >= self._config.max_claims_per_nameplate:
            return None
        receiver, _ = entry.queue.popleft()
        self._take(entry, receiver, now)
        return receiver

    def leave_queue(self, entry: Entry[Conn], receiver: Conn) -> None:
        """A queued claim left, or its wait ran out."""
        for queued in entry.queue:
            if queued[0] is receiver:
                entry.queue.remove(queued)
                return

    def drain_queue(self, entry: Entry[Conn]) -> list[Conn]:
        """Every queued claim, oldest first, now the caller's to refuse."""
        queued = [receiver for receiver, _ in entry.queue]
        entry.queue.clear()
        return queued

    def join(self, nameplate: int, ticket: str, conn: Conn) -> Entry[Conn]:
        """A sender's data connection presents a ticket.

        Pairs it with the claiming receiver (the entry becomes ACTIVE), or,
        for a standby sender with no receiver yet, parks it (still WAITING).
        """
        entry = self._entries.get(nameplate)
        if entry is not None and ticket != entry.ticket and ticket in entry.stale:
            raise Refusal(
                rv.REASON_STALE_TICKET, "that ticket was used or replaced; wait for the next"
            )
        if entry is None or not entry.ticket or entry.ticket != ticket:
            raise Refusal(rv.REASON_BAD_REQUEST, "no such pairing ticket")
        if entry.state is State.CLAIMED:
            self._move(entry, State.ACTIVE)
            self._retire(entry)
        elif entry.state is State.WAITING and entry.standby:
            # A second connection with the same ticket is the sender
            # reconnecting (its path to the relay died unnoticed): the newer
            # one wins. Only the sender knows the ticket.
            entry.displaced, entry.parked = entry.parked, conn
        else:
            raise Refusal(rv.REASON_BAD_REQUEST, "no such pairing ticket")
        return entry

    def opened(self, entry: Entry[Conn]) -> list[Conn]:
        """The claim's pipe reached its data phase: a newcomer is told "claimed" now,
        and so is every queued claim (handed back, oldest first)."""
        entry.opening = False
        return self.drain_queue(entry)

    def take_parked(self, entry: Entry[Conn]) -> Conn | None:
        """The parked data connection, now the claim's (None if there is none)."""
        conn, entry.parked = entry.parked, None
        return conn

    def unpark(self, entry: Entry[Conn], conn: Conn) -> None:
        """A parked data connection went away before a receiver came."""
        if entry.parked is conn:
            entry.parked = None

    def release(self, entry: Entry[Conn], refund: bool = False) -> str:
        """The claim or pipe of this entry ended; the sender may take another receiver.

        refund: the claim never reached the key exchange, so it is not counted.
        Returns the standby sender's next ticket: "" for other senders, and when
        no join used the ticket it holds (it stays valid: the sender's data
        connection for it may be on its way). take_turn() may follow.
        """
        if refund and entry.state is not State.WAITING:
            entry.claims -= 1
        entry.opening = False
        self._move(entry, State.WAITING)
        entry.receiver = None
        if not (entry.standby and entry.live):
            self._retire(entry)
            return ""
        if entry.ticket:
            return ""
        entry.ticket = self._new_ticket()
        return entry.ticket

    def unregister(self, entry: Entry[Conn]) -> None:
        """The sender's control connection is gone; free the nameplate."""
        if self._entries.get(entry.nameplate) is entry:
            del self._entries[entry.nameplate]
            self._counts[entry.state] -= 1
            if entry.nameplate in self._external:
                self._external.discard(entry.nameplate)  # the directory's to free
            else:
                heapq.heappush(self._free, entry.nameplate)
        entry.live = False

    def overdue(self, entry: Entry[Conn], now: float) -> bool:
        """True when a waiting sender has held its nameplate past max_sender_wait."""
        return (
            entry.state is State.WAITING
            and now - entry.registered_at > self._config.max_sender_wait
        )
