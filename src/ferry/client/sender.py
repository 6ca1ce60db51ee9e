"""The sending side: get a nameplate, show the code, serve receivers until one succeeds.

The control connection holds the nameplate. Each INCOMING ticket means a
receiver arrived: a data connection joins it, authenticates, and sends the
file. Two budgets, counted apart:

- wrong codes (max_wrong_codes): a receiver whose PAKE message the SPAKE2
  library accepted has had its one guess; if the key confirmation then
  fails (or it leaves, or stalls, after our CONFIRM), that is a wrong code;
- refusals (max_failed_attempts, --attempts): a receiver with the right
  code that refused the offer or left before answering.

A claim that never presented a well-formed PAKE message (it left, stayed
silent until the handshake timeout, sent another record, an oversize or
malformed one, or a point the library rejected) made no guess: it costs
nothing, whether a stranger or a malicious relay made it. The nameplate
is public, so anything else would let anyone end a transfer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from ferry.address import Address
from ferry.client.peer import lost, shown
from ferry.client.progress import Progress
from ferry.client.relay_link import RelayLink
from ferry.client.sources import Source
from ferry.client.tickets import TicketGate
from ferry.client.wire import Wire, timeouts
from ferry.codes import MAX_NAMEPLATE, Code, generate_code
from ferry.config import ClientConfig
from ferry.errors import (
    AttemptRefused,
    ConnectionLost,
    FerryError,
    RefusedByPeer,
    RelayRefused,
    RemoteProtocolError,
    SourceChanged,
    TimedOut,
    TooManyAttempts,
    WrongCode,
)
from ferry.netopts import keep_alive
from ferry.protocol import rendezvous as rv
from ferry.protocol.events import Acknowledged, Answered, Confirmed, Keyed
from ferry.protocol.sender_session import SenderSession
from ferry.protocol.session import load_crypto

log = logging.getLogger("ferry.send")

T = TypeVar("T")


class Sender:
    def __init__(
        self,
        address: Address,
        outgoing: Source,
        config: ClientConfig,
        progress: Progress,
        show_code: Callable[[Code], None],
        ask_web_url: bool = False,
    ) -> None:
        self.address = address
        self.outgoing = outgoing
        self.config = config
        self.progress = progress
        self.show_code = show_code
        self.ask_web_url = ask_web_url
        """Ask the relay for its web app's address (for a browser link)."""
        self.web_url = ""
        """The relay's web app, once registered: "" when not asked, or it has none."""
        self.failed_attempts = 0
        """Refusals by receivers that held the code (the --attempts budget)."""
        self.wrong_codes = 0
        """Receivers that made a guess at the code and were wrong."""
        self._engaged = 0  # attempts paired with a receiver and not yet over
        self._tickets = TicketGate()  # data connections the relay may make us open
        self._serving: set[str] = set()  # tickets an attempt of ours holds
        self._asked: set[str] = set()  # of those, tickets an INCOMING asked for meanwhile
        self._reasked: list[str] = []  # asked for, and their attempt ended unpaired

    async def run(self) -> None:
        control, assigned = await self._register()
        try:
            code = generate_code(assigned.nameplate)
            self.web_url = assigned.web_url
            self.show_code(code)
            # Load the crypto libraries now, while nobody waits on us, rather
            # than when the receiver arrives (they are kept off the path to the
            # code line to print it sooner).
            load_crypto()
            await self._serve_receivers(control, code)
        finally:
            control.close()

    async def _register(self) -> tuple[RelayLink, rv.NameplateAssigned]:
        """A control connection holding a nameplate.

        Asks for standby data connections (and the web address, if wanted); a
        relay from before them refuses that request as malformed, and then gets
        one without what it does not know.
        """
        requests = [rv.SendRequest(standby=True), rv.SendRequest()]
        if self.ask_web_url:
            requests.insert(0, rv.SendRequest(standby=True, web=True))
        for request in requests:
            control = await RelayLink.connect(self.address, self.config.connect_timeout)
            try:
                await control.send(request)
                assigned = await control.expect(
                    rv.NameplateAssigned, None, self.config.connect_timeout
                )
            except RelayRefused as refused:
                control.close()
                if refused.reason == rv.REASON_BAD_REQUEST and request != requests[-1]:
                    continue
                raise
            except BaseException:
                control.close()
                raise
            assert isinstance(assigned, rv.NameplateAssigned)
            if not 1 <= assigned.nameplate <= MAX_NAMEPLATE:
                control.close()
                raise RemoteProtocolError(
                    f"the relay assigned nameplate {assigned.nameplate}, outside 1 to "
                    f"{MAX_NAMEPLATE} (not a ferry relay)"
                )
            return control, assigned
        raise AssertionError("unreachable")

    async def _serve_receivers(self, control: RelayLink, code: Code) -> None:
        """Answer every ticket with a data connection until one delivers the file.

        The relay sends a TICKET as soon as the nameplate is ours and again
        after each failed attempt; the data connection opened with it waits
        at the relay, so a receiver is paired the moment it claims. (An
        INCOMING, from a relay that pairs the old way, is answered the same.)
        wait_timeout bounds the waiting only: a key exchange or transfer that
        has started runs to its end, however long it takes.
        """
        # The group owns the listening and the attempts: whatever ends the
        # supervision, it cancels and waits for each. The supervision's own
        # outcome leaves the group as a value, so it is raised as itself
        # rather than inside an ExceptionGroup.
        async with asyncio.TaskGroup() as group:
            supervised = await _settled(lambda: self._supervise(group, control, code))
        supervised.unwrap()

    async def _supervise(self, group: asyncio.TaskGroup, control: RelayLink, code: Code) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.wait_timeout
        listening: _Supervised[rv.RelayMessage] | None = _listen(group, control, code)
        attempts: set[_Supervised[bool]] = set()

        def running() -> set[asyncio.Task[Any]]:
            return {*attempts, listening} if listening else set(attempts)

        try:
            while True:
                timeout = None if self._engaged else max(0.0, deadline - loop.time())
                pending = running()
                if not pending:
                    raise ConnectionLost("lost the connection to the relay")
                done, _ = await asyncio.wait(
                    pending, timeout=timeout, return_when="FIRST_COMPLETED"
                )
                if not done and not self._engaged:
                    waited = self.config.wait_timeout
                    raise TimedOut(f"no receiver came within {waited:.0f}s")
                # Attempts first: when the relay dies mid-transfer, the transfer's own
                # error ("connection lost after 42%") and the control connection's
                # end can arrive in one wake-up; by then the attempt is no longer
                # engaged, and the control connection's loss would speak instead.
                for attempt in attempts & done:
                    attempts.discard(attempt)
                    if attempt.result().unwrap():
                        return
                while self._reasked:
                    # A receiver waits on a ticket whose connection failed on its way.
                    self._start_attempt(group, control, code, self._reasked.pop(), attempts)
                if listening in done:
                    listening = self._next_listen(group, control, code, listening, attempts)
        finally:
            for task in running():
                task.cancel()  # the group waits for them

    def _next_listen(
        self,
        group: asyncio.TaskGroup,
        control: RelayLink,
        code: Code,
        heard: _Supervised[rv.RelayMessage],
        attempts: set[_Supervised[bool]],
    ) -> _Supervised[rv.RelayMessage] | None:
        """Start an attempt for what the control connection said; listen on (or not)."""
        try:
            message = heard.result().unwrap()
        except FerryError:
            if self._engaged:
                return None  # the transfer under way does not need the control connection
            raise
        standby = isinstance(message, rv.StandbyTicket)
        assert isinstance(message, rv.StandbyTicket | rv.Incoming)
        if message.ticket in self._serving:
            # An INCOMING for the standby ticket our data connection is taking to the
            # relay already (a claim came before it arrived): it will serve that
            # claim; a second connection with the same ticket would be stale. Should
            # that connection fail unpaired, the ticket gets another (_attempt).
            self._asked.add(message.ticket)
        else:
            self._start_attempt(group, control, code, message.ticket, attempts, standby)
        return _listen(group, control, code)

    def _start_attempt(
        self,
        group: asyncio.TaskGroup,
        control: RelayLink,
        code: Code,
        ticket: str,
        attempts: set[_Supervised[bool]],
        standby: bool = False,
    ) -> None:
        """A data connection for the ticket, when the gate (tickets.py) allows one."""
        delay = self._tickets.admit(asyncio.get_running_loop().time())
        if delay is None:
            # Past what any honest relay sends (tickets.py): no socket for it.
            log.info("the relay sent a ticket while %d data connections are open; ignored",
                     self._tickets.open)  # fmt: skip
            return
        attempt = functools.partial(self._attempt, control, code, ticket, standby, delay)
        self._serving.add(ticket)
        attempts.add(group.create_task(_settled(attempt)))

    async def _attempt(
        self, control: RelayLink, code: Code, ticket: str, standby: bool, delay: float = 0.0
    ) -> bool:
        """Serve one receiver, after delay seconds; True when the file was delivered."""
        try:
            if delay:
                await asyncio.sleep(delay)
            return await self._serve_ticket(control, code, ticket, standby)
        finally:
            self._serving.discard(ticket)
            if ticket in self._asked:  # never paired: the receiver still waits on it
                self._asked.discard(ticket)
                self._reasked.append(ticket)
            self._tickets.done()

    async def _serve_ticket(
        self, control: RelayLink, code: Code, ticket: str, standby: bool
    ) -> bool:
        out = self.outgoing
        session = SenderSession(
            code.password, out.offer(), timeouts(self.config),
            manifest_records=out.manifest_records(), file_sizes=out.file_sizes(),
            compress=self.config.compress,
        )  # fmt: skip
        try:
            link = await self._join(control, code, ticket, standby, session)
        except (RelayRefused, ConnectionLost, TimedOut) as exc:
            # This data connection never reached a receiver: nothing is lost.
            # The relay says INCOMING when a receiver finds no parked
            # connection, and the control connection reports a relay that
            # is going away. A stale ticket is no failure: the claim it was
            # for was served by another connection, or left.
            if isinstance(exc, RelayRefused) and exc.reason == rv.REASON_STALE_TICKET:
                log.info("a data connection was not needed (%s); still waiting", exc.message)
                return False
            log.warning("a data connection to the relay failed (%s); still waiting", exc.message)
            return False
        self._asked.discard(ticket)  # paired: whichever claim asked, this serves it
        self._engaged += 1
        try:
            return await self._authenticated_transfer(link, session)
        finally:
            self._engaged -= 1

    async def _join(
        self,
        control: RelayLink,
        code: Code,
        ticket: str,
        standby: bool,
        session: SenderSession,
    ) -> RelayLink:
        """A data connection paired with a receiver, our first flight sent.

        A standby connection waits at the relay for as long as it takes; if
        it is lost meanwhile, the ticket is still good, so it reconnects.
        """
        join = rv.JoinRequest(code.nameplate, ticket)
        loop = asyncio.get_running_loop()
        quick_losses = 0
        while True:
            link = await control.connect_again(self.config.connect_timeout)
            opened = loop.time()
            if standby:
                keep_alive(link.sock)  # it may wait for hours without traffic
            try:
                await link.send(join, session.first_flight())
                await link.expect(rv.Paired, code.nameplate, None if standby else
                                  self.config.handshake_timeout)  # fmt: skip
                session.paired(loop.time())
                return link
            except ConnectionLost:
                link.close()
                # A connection that lived a while and then died is the path's
                # doing: start over. Quick losses in a row mean give up.
                quick = loop.time() - opened < self.config.standby_lifetime
                quick_losses = quick_losses + 1 if quick else 1
                if not standby or quick_losses > self.config.standby_retries:
                    raise
            except BaseException:
                link.close()
                raise
            await asyncio.sleep(self.config.standby_retry_delay)

    async def _authenticated_transfer(self, link: RelayLink, session: SenderSession) -> bool:
        """Key exchange (the OFFER rides with our CONFIRM), then the transfer."""
        wire = Wire(link.sock, session, link.take_rest())
        wire.lost_message = "the receiver went away during the key exchange"
        try:
            await wire.expect(Keyed)
            await wire.flush()  # our CONFIRM and the sealed OFFER, in one write
            await wire.expect(Confirmed)
        except (WrongCode, ConnectionLost, RemoteProtocolError, TimedOut) as exc:
            wire.close()
            if not session.peer_keyed:
                # No PAKE message the library accepted: no guess was made.
                log.warning("a receiver left without a valid key exchange; still waiting")
                return False
            self._count_wrong_code()
            what = "used a wrong code" if isinstance(exc, WrongCode) else "failed key exchange"
            log.warning("a receiver %s; waiting for another (%s)", what, self._codes_left())
            return False
        except BaseException:
            wire.close()
            raise
        try:
            await self._transfer(wire, session)
        except AttemptRefused as refused:
            # A refusal (names exist, no space, declined) keeps the code alive:
            # the user can run ./receive again, with --overwrite or another DIR.
            self._count_failed_attempt(RefusedByPeer(refused.message))
            log.warning("%s; still waiting (%s)", refused.message, self._attempts_left())
            return False
        except SourceChanged as changed:
            # Caught before its last record went out: the receiver stores
            # nothing, and the next offer describes the source as it is then.
            await self._abort_changed(wire, changed)
            return False
        except FerryError as exc:
            await wire.abort_on(exc)  # its class and the offered name: never a local path
            raise
        finally:
            wire.close()
        return True

    def _count_failed_attempt(self, last: FerryError) -> None:
        """One more refusal; at the --attempts limit, give up with `last`."""
        self.failed_attempts += 1
        if self.failed_attempts >= self.config.max_failed_attempts:
            raise last

    async def _abort_changed(self, wire: Wire, changed: SourceChanged) -> None:
        """Tell the receiver a file changed mid-send; count it like a refusal."""
        last = self.failed_attempts + 1 >= self.config.max_failed_attempts
        then = "the sender gave up" if last else "the same code works again"
        await wire.abort_on(changed, f"nothing was stored; {then}")
        self._count_failed_attempt(changed)
        log.warning(
            "%s; the receiver stored nothing; still waiting (%s)",
            changed.message, self._attempts_left(),
        )  # fmt: skip

    def _attempts_left(self) -> str:
        return f"{self.config.max_failed_attempts - self.failed_attempts} attempt(s) left"

    def _count_wrong_code(self) -> None:
        """One more guess that failed; at the max_wrong_codes limit, give up."""
        self.wrong_codes += 1
        if self.wrong_codes >= self.config.max_wrong_codes:
            raise TooManyAttempts(
                f"{self.wrong_codes} wrong codes were tried; giving up (send again for a new code)"
            )

    def _codes_left(self) -> str:
        return f"{self.config.max_wrong_codes - self.wrong_codes} wrong code(s) left"

    async def _transfer(self, wire: Wire, session: SenderSession) -> None:
        """After the handshake (which carried the OFFER): answer, data, ACK."""
        wire.lost_message = lost("receiver")
        try:
            answered = await wire.expect(Answered)
        except ConnectionLost:
            # Nothing moved yet (say, Ctrl-C at the receiver's --ask prompt): like a
            # refusal, this attempt is over and the code stays alive.
            raise AttemptRefused("the receiver left before answering") from None
        except TimedOut as exc:
            raise AttemptRefused(exc.message) from None
        if not answered.answer.accept:
            said = shown(answered.answer.message or answered.answer.reason)
            raise AttemptRefused(f"the receiver refused: {said}")
        await self.outgoing.send(wire, session, self.progress)
        log.info(
            "compressed %d of %d records: %d bytes of data took %d",
            session.compressed_records, session.data_records, session.delivered,
            session.wire_bytes,
        )  # fmt: skip
        wire.lost_message = lost("receiver", during=" before the receiver confirmed storing it")
        await wire.expect(Acknowledged)


@dataclass(frozen=True)
class _Settled(Generic[T]):
    """How a supervised task ended: its value, or the exception it raised."""

    value: T | None = None
    error: Exception | None = None

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


_Supervised = asyncio.Task[_Settled[T]]


async def _settled(work: Callable[[], Awaitable[T]]) -> _Settled[T]:
    """Run work(); its failure becomes a value. A task of the supervisor's group must
    not raise: the group would cancel its siblings, and a lost control connection
    is nothing to a transfer under way. The supervisor decides what a failure means.

    work is called here, not by the caller: a task cancelled before its first step
    never starts it, so no coroutine is left un-awaited."""
    try:
        return _Settled(await work())
    except Exception as exc:
        return _Settled(error=exc)


def _listen(
    group: asyncio.TaskGroup, control: RelayLink, code: Code
) -> _Supervised[rv.RelayMessage]:
    """The control connection's next ticket (TICKET or INCOMING), answering PINGs meanwhile."""
    kinds = (rv.StandbyTicket, rv.Incoming)
    return group.create_task(_settled(lambda: control.expect(kinds, code.nameplate, None)))
