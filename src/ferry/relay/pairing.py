"""A claim paired with the sender's data connection, and the pipe between them.

Theory of operation. A receiver (RECV n) spends one look-up of its
address's budget, reads the PAKE record behind its line
(rv.claim_record_missing: until it is whole the claim holds nothing), and
claims the nameplate; it takes the sender's parked data connection, or
sends the sender INCOMING and waits for one (JOIN n ticket, handed to the
waiting receiver's task by `join`); it says PAIRED to both and runs the
pump. A claim that finds another claim opening on the nameplate waits its
turn in the nameplate's queue (table.py), first come first served; its
task is woken (`answer_queued`) when the claim ahead ends, or with the
refusal it gets instead. A sender data connection that comes before any claim parks (standby,
no task) until one does.

Every move of a nameplate or a session is asked of lifecycle.py; what is
counted is taken as a Hold (capacity.py). The relay never parses a byte
after PAIRED: it cannot read what it carries. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ferry.config import EARLY_PAIRED_AFTER, MAX_PARKED_BYTES, OPENING_BYTES
from ferry.errors import Closed, Refusal
from ferry.netopts import keep_alive
from ferry.protocol import rendezvous as rv
from ferry.relay import logs
from ferry.relay.admission import OUT_OF_FDS
from ferry.relay.connection import Connection
from ferry.relay.context import RelayContext
from ferry.relay.limits import network_key
from ferry.relay.pump import PumpResult, pump
from ferry.relay.session import Ending, PipeReport
from ferry.relay.table import Entry, State


class Pairing:
    """Receivers' claims, senders' data connections, and the pipes (module docstring)."""

    def __init__(self, relay: RelayContext) -> None:
        self.relay = relay

    async def serve_receiver(self, conn: Connection, nameplate: int) -> Ending:
        relay = self.relay
        relay.look_up(conn)
        busy = relay.active + relay.table.count(State.CLAIMED)
        if busy >= relay.config.max_active_transfers:
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers, try later")
        relay.check_memory()
        network = network_key(conn.share_key)
        shares = relay.capacity.transfer_shares
        if not shares.may_take(network, busy):
            raise Refusal(rv.REASON_BUSY, "relay busy: too many transfers from your network")
        relay.table.claimable(nameplate)  # refuses at once what no record could change
        with shares.hold(network):
            await self._read_claim_record(conn)
            # Made before the claim: a queued claim's turn can come, and its data
            # connection join, before its task runs again.
            conn.joined = asyncio.get_running_loop().create_future()
            entry = relay.lifecycle.claim(nameplate, conn, relay.clock(), conn.share_key)
            if entry.receiver is not conn:
                await self._await_turn(conn, entry)
            return await self._pair_and_pipe(conn, entry)

    async def _await_turn(self, conn: Connection, entry: Entry[Connection]) -> None:
        """A claim queued behind the one opening on its nameplate: wait for its turn
        (the claims ahead ended; it holds the nameplate now), or raise the refusal
        it gets instead, Refusal(timeout) past its wait, Closed if it leaves."""
        turn = conn.turn = asyncio.get_running_loop().create_future()
        try:
            while not turn.done():
                delay = conn.session.delay(self.relay.clock())
                async with conn.watch_hang_up() as gone:
                    either: list[asyncio.Future[Any]] = [turn, gone]
                    done, _ = await asyncio.wait(
                        either, timeout=delay, return_when="FIRST_COMPLETED"
                    )
                if turn.done():
                    break
                if gone in done:
                    raise Closed()
                conn.session.timer_expired(self.relay.clock())  # raises Refusal(timeout)
            refusal = turn.result()
            if refusal is not None:
                raise refusal
        except BaseException:
            if entry.receiver is conn:  # its turn came as it left
                assert conn.joined is not None
                if conn.joined.done():
                    _close_joined(conn.joined.result())  # and its data connection
                self._end_claim(entry, None, refund=True)
            else:
                self.relay.lifecycle.leave_queue(entry, conn)
            raise

    def answer_queued(self, queued: list[Connection], refusal: Refusal | None) -> None:
        """End queued claims' waits: None, its turn came; else the refusal to answer."""
        for conn in queued:
            if conn.turn is not None and not conn.turn.done():
                conn.turn.set_result(refusal)

    async def _read_claim_record(self, conn: Connection) -> None:
        """A claim's PAKE record, whole (rv.claim_record_missing), by the session's deadline.

        Until it is here the claim holds neither the nameplate nor the
        sender's data connection: a claim that stays silent, or sends
        anything but a PAKE record, costs the sender nothing and keeps no
        one else out. The record stays in the line buffer for the pipe.

        A receiver from before the pipelined handshake sends its record only
        after PAIRED: a claim with nothing behind its line for
        EARLY_PAIRED_AFTER is told PAIRED now (it holds nothing still), and
        is paired for real once its record is in.
        """
        relay = self.relay
        loop = asyncio.get_running_loop()
        early_at = relay.clock() + EARLY_PAIRED_AFTER
        while missing := rv.claim_record_missing(conn.lines.rest()):
            deadline = conn.session.deadline()
            if not conn.paired_early and not conn.lines.rest():
                deadline = early_at if deadline is None else min(deadline, early_at)
            try:
                async with asyncio.timeout(relay.delay(deadline)):
                    data = await loop.sock_recv(conn.sock, missing)
            except TimeoutError:
                if relay.clock() >= early_at and not conn.paired_early and not conn.lines.rest():
                    conn.paired_early = True
                    await loop.sock_sendall(conn.sock, rv.encode(rv.Paired()))
                    continue
                conn.session.timer_expired(relay.clock())  # raises Refusal(timeout)
                continue
            if not data:
                raise Closed()
            conn.lines.receive_data(data)
        conn.session.claim_record_arrived(relay.clock())

    async def _pair_and_pipe(self, conn: Connection, entry: Entry[Connection]) -> Ending:
        """A claim is in: pair it with the sender's data connection and run the pipe."""
        data_conn = self.relay.lifecycle.take_parked(entry)
        if data_conn is not None:
            # A standby sender's data connection was waiting: pair at once.
            asyncio.get_running_loop().remove_reader(data_conn.sock.fileno())
        else:
            data_conn = await self._await_join(conn, entry)
        transfer = Ending(logs.ERRORY, "pipe failed")
        try:
            transfer = await self._run_pipe(conn, data_conn, entry)
            return transfer
        except asyncio.CancelledError:
            transfer = conn.session.cancelled()
            raise
        finally:
            _close_joined(data_conn)
            pipe = conn.session.pipe
            self._end_claim(entry, transfer, refund=pipe is None or not pipe.sender_replied)

    async def _await_join(self, conn: Connection, entry: Entry[Connection]) -> Connection:
        """Ask the sender for a data connection, and wait for it."""
        assert conn.joined is not None
        try:
            # No parked connection (a standby sender may be reconnecting, or it
            # could not get one in): ask for a data connection now, as for any
            # sender, unless it joined already (a queued claim's turn came, and the
            # connection with it, before this task ran again).
            if not conn.joined.done() and not entry.sender.send_nowait(rv.Incoming(entry.ticket)):
                raise Refusal(rv.REASON_SENDER_GONE, "the sender went away")
            while (data_conn := await self._wait_joined(conn)) is None:
                conn.session.timer_expired(self.relay.clock())  # raises Refusal(timeout)
            return data_conn
        except BaseException:
            if conn.joined.done() and not conn.joined.cancelled():
                _close_joined(conn.joined.result())  # joined, then we were cancelled
            if entry.receiver is conn:
                self._end_claim(entry, None, refund=True)
            raise

    def _end_claim(
        self, entry: Entry[Connection], transfer: Ending | None, refund: bool = False
    ) -> None:
        """A claim or pipe ended: the nameplate waits again (standby senders get a ticket
        when the last was used), and the oldest queued claim, if any, holds it now.

        refund: the claim never reached the key exchange (session.py), so the
        nameplate's claim budget gets it back.
        """
        ended = self.relay.lifecycle.end_claim(entry, transfer, self.relay.clock(), refund)
        if ended.ticket:
            entry.sender.send_nowait(rv.StandbyTicket(ended.ticket))
        if ended.turn is not None:
            self.answer_queued([ended.turn], None)
        spent = Refusal(rv.REASON_TOO_MANY_ATTEMPTS, "too many attempts on this nameplate")
        self.answer_queued(ended.refused, spent)

    async def _wait_joined(self, conn: Connection) -> Connection | None:
        """The sender's data connection; None at the session's deadline; Closed if
        this receiver leaves first."""
        assert conn.joined is not None
        delay = conn.session.delay(self.relay.clock())
        async with conn.watch_hang_up() as gone:
            either: list[asyncio.Future[Any]] = [conn.joined, gone]
            done, _ = await asyncio.wait(either, timeout=delay, return_when="FIRST_COMPLETED")
        if conn.joined in done:
            return conn.joined.result()
        if gone in done:
            raise Closed()
        return None

    def join(self, conn: Connection, nameplate: int, ticket: str) -> None:
        """A sender's data connection (JOIN): parked, or handed to the waiting receiver."""
        joined = self.relay.lifecycle.join(nameplate, ticket, conn)
        if joined.entry.parked is conn:
            if joined.displaced is not None:
                self.drop_parked(joined.displaced)
            self._park(conn, joined.entry)
            return
        receiver = joined.entry.receiver
        assert receiver is not None and receiver.joined is not None, receiver
        receiver.joined.set_result(conn)

    def _park(self, conn: Connection, entry: Entry[Connection]) -> None:
        """Hold a standby data connection, with no task, until a receiver claims.

        Watching it for readability catches the sender leaving (EOF or a
        reset): then it is unparked and closed. Bytes it sends early (its
        first handshake flight) are kept for the pipe, as far as the session
        allows; more than that is not a ferry client.
        """
        loop = asyncio.get_running_loop()
        fd = conn.sock.fileno()
        keep_alive(conn.sock)  # no traffic until a receiver comes: keep NATs open

        def readable() -> None:
            try:
                data = conn.sock.recv(MAX_PARKED_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if conn.session.may_park(len(conn.lines), len(data)):
                conn.lines.receive_data(data)
                return
            loop.remove_reader(fd)
            self.relay.lifecycle.unpark(entry, conn)
            self.drop_parked(conn)

        loop.add_reader(fd, readable)

    def drop_parked(self, conn: Connection) -> None:
        """Close a parked data connection (its sender left, or its nameplate ended)."""
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        _close_joined(conn)

    async def _run_pipe(
        self, receiver: Connection, sender: Connection, entry: Entry[Connection]
    ) -> Ending:
        relay = self.relay
        loop = asyncio.get_running_loop()
        # The sender's control connection is part of this transfer now: a drain
        # waits for it like for the pipe, and does not refuse it (its outcome
        # is what happens to the transfer).
        relay.lifecycle.start_pipe(entry, receiver)
        relay.metrics.transfers += 1
        with relay.capacity.pipes.hold():
            # The data direction gets the budget: sender -> relay window, relay ->
            # receiver unacknowledged bytes. Before PAIRED, so the first file
            # byte already finds the large window.
            relay.buffers.apply(sender.sock, receiver.sock)
            if not receiver.paired_early:
                await loop.sock_sendall(receiver.sock, rv.encode(rv.Paired()))
            await loop.sock_sendall(sender.sock, rv.encode(rv.Paired()))
            first_flight = sender.lines.take_rest()
            result = await self._pump(receiver, sender, first_flight, entry)
        return receiver.session.pipe_ended(PipeReport.of(result, len(first_flight)))

    def _count_bytes(self, count: int) -> None:
        self.relay.metrics.bytes_relayed += count

    async def _pump(
        self, receiver: Connection, sender: Connection, preload_down: bytes, entry: Entry[Any]
    ) -> PumpResult:
        """Run the pipe; preload_down: what the sender sent before PAIRED (its first flight)."""
        relay = self.relay
        preload_up = receiver.lines.take_rest()

        def opened() -> None:
            running = Refusal(rv.REASON_CLAIMED, "the nameplate's transfer is running")
            self.answer_queued(relay.lifecycle.opened(entry), running)

        use_splice = relay.config.use_splice
        while True:
            try:
                return await pump(
                    receiver.sock,
                    sender.sock,
                    buffer_size=relay.buffers.pump,
                    idle_timeout=relay.config.idle_timeout,
                    use_splice=use_splice,
                    preload_a_to_b=preload_up,
                    preload_b_to_a=preload_down,
                    on_moved=self._count_bytes,
                    clock=relay.given_clock,
                    opening_bytes=OPENING_BYTES,
                    on_opened=opened,
                )
            except OSError as exc:
                if not use_splice or exc.errno not in OUT_OF_FDS:
                    raise
                use_splice = False  # no descriptors for kernel pipes: copy instead


def _close_joined(data_conn: Connection) -> None:
    data_conn.sock.close()
    data_conn.release()
