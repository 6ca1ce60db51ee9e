"""One owner of every pairing's lifecycle: the nameplate's state and the sessions' phases.

Theory of operation. A transfer touches three state machines: the
nameplate's entry in the table (table.py: WAITING, CLAIMED, ACTIVE) and the
sessions of the sender's control connection, the receiver and the sender's
data connection (session.py: each its phase). They move together, and only
here: each method below is one event of a pairing, and it moves every
machine the event concerns, each through its own transition table (a move
the table does not list raises LocalProtocolError). The server asks; it
never sets a phase, a state or a field of a session itself.

    register    a sender's control connection takes a nameplate
    claim       a receiver's claim (its PAKE record whole) takes the nameplate,
                or queues behind the claim still opening on it
    leave_queue a queued claim left (or its wait ran out) before its turn
    join        a sender's data connection presents its ticket: parked, or
                handed to the receiver waiting for it
    take_parked the receiver takes the parked data connection
    unpark      a parked data connection left before a receiver came
    start_pipe  the pump runs
    end_claim   the claim (or its pipe) is over: the nameplate waits again, and
                the oldest queued claim takes it at once (its turn)
    opened      the pipe reached its data phase: queued claims are the caller's
                to refuse "claimed"
    unregister  the sender's control connection is gone: the nameplate is free,
                and a data connection parked on it is the caller's to close
                (drop_queue: so are the queued claims)

Pure: no sockets, no tasks; `now` is passed in. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ferry.config import RelayConfig
from ferry.errors import Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay.session import Ending, Session
from ferry.relay.table import Entry, PairingTable


class HasSession(Protocol):
    @property
    def session(self) -> Session: ...


C = TypeVar("C", bound=HasSession)


@dataclass(frozen=True)
class Joined(Generic[C]):
    """What a data connection's ticket did: parked it on the entry (entry.parked), or
    handed it to the receiver waiting for it (entry.receiver). displaced: a parked
    connection it replaced (the sender reconnected); the caller closes that one."""

    entry: Entry[C]
    displaced: C | None = None


@dataclass(frozen=True)
class ClaimEnded(Generic[C]):
    """What ending a claim did. ticket: the standby sender's next ticket ("" none to
    send). turn: the queued claim that holds the nameplate now. refused: queued
    claims the nameplate can no longer take (its claim budget is spent)."""

    ticket: str = ""
    turn: C | None = None
    refused: list[C] = field(default_factory=list)


class Lifecycle(Generic[C]):
    def __init__(self, config: RelayConfig, new_ticket: Callable[[], str]) -> None:
        self.table: PairingTable[C] = PairingTable(config, new_ticket)

    def register(
        self, sender: C, now: float, standby: bool = False, nameplate: int | None = None
    ) -> Entry[C]:
        entry = self.table.register(sender, now, standby, nameplate)
        sender.session.registered(entry.nameplate)
        return entry

    def unregister(self, entry: Entry[C]) -> C | None:
        """The nameplate is free; the data connection parked on it, if one was (the
        caller closes it: no receiver will take it now)."""
        self.table.unregister(entry)
        entry.sender.session.unregistered(entry.claims)
        return self.table.take_parked(entry)

    def claim(self, nameplate: int, receiver: C, now: float, source: str | None = None) -> Entry[C]:
        """The claim holds the nameplate (entry.receiver is receiver), or, with its
        source address's key given, waits in the nameplate's queue (table.py)."""
        entry = self.table.claim(nameplate, receiver, now, source)
        if entry.receiver is receiver:
            self._claimed(entry, receiver)
        else:
            receiver.session.queued(now)
        return entry

    def _claimed(self, entry: Entry[C], receiver: C) -> None:
        receiver.session.claimed(entry.claims)
        entry.sender.session.receiver_came()

    def leave_queue(self, entry: Entry[C], receiver: C) -> None:
        self.table.leave_queue(entry, receiver)

    def join(self, nameplate: int, ticket: str, data: C) -> Joined[C]:
        """Raises Refusal (bad-request) for a ticket nobody waits on."""
        entry = self.table.join(nameplate, ticket, data)
        if entry.parked is data:
            data.session.parked()
            displaced, entry.displaced = entry.displaced, None
            return Joined(entry, displaced)
        receiver = entry.receiver
        if receiver is None or not receiver.session.awaits_join:
            raise Refusal(rv.REASON_BAD_REQUEST, "no such pairing ticket")
        data.session.handed()
        return Joined(entry)

    def take_parked(self, entry: Entry[C]) -> C | None:
        """The parked data connection, now the claim's (None if there is none)."""
        data = self.table.take_parked(entry)
        if data is not None:
            data.session.handed()
        return data

    def unpark(self, entry: Entry[C], data: C) -> None:
        self.table.unpark(entry, data)

    def start_pipe(self, entry: Entry[C], receiver: C) -> None:
        """The pump runs: the receiver pipes, and the sender's control connection is
        part of this transfer (a drain waits for it like for the pipe)."""
        receiver.session.pipe_started()
        entry.sender.session.pipe_started()

    def end_claim(
        self, entry: Entry[C], transfer: Ending | None, now: float, refund: bool = False
    ) -> ClaimEnded[C]:
        """The claim or its pipe ended: the nameplate waits again, and the oldest
        queued claim, if any, takes it in the same step (no newcomer goes first).

        refund: the claim never reached the key exchange (session.py), so the
        nameplate's claim budget gets it back.
        """
        entry.sender.session.claim_ended(transfer, now)
        if not entry.live:
            return ClaimEnded()
        ticket = self.table.release(entry, refund)
        turn = self.table.take_turn(entry, now)
        if turn is None:
            return ClaimEnded(ticket, refused=self.table.drain_queue(entry))
        turn.session.turn_came(now)
        self._claimed(entry, turn)
        return ClaimEnded(ticket, turn)

    def opened(self, entry: Entry[C]) -> list[C]:
        """The pipe reached its data phase; the queued claims, to be refused "claimed"."""
        return self.table.opened(entry)

    def drop_queue(self, entry: Entry[C]) -> list[C]:
        """The queued claims of an entry that is gone, to be refused."""
        return self.table.drain_queue(entry)
