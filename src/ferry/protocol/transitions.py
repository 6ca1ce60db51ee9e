"""Which state follows which: one table per side, checked in one place.

Theory of operation. A session moves only by a Step: a record from the
peer, or a call by its driver. Each side's table says, for every state,
which steps it takes and where each leads (state x step -> state, as in
h11's _state.py); Machine.advance() is the one place a session's state
changes, and a step the table does not hold raises: RemoteProtocolError
if the peer took it (a record out of turn), LocalProtocolError if the
driver did (a call out of turn). What a record means can depend on what
came before (the last of a tree's MANIFEST records, an ANSWER that keeps
bytes): the session picks the step, the table says whether it may be taken
now. Every state but DONE and FAILED can fail (an error, a timeout, our
abort()), and after the handshake the peer may send ABORT; DONE and FAILED
take no step at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol.events import HANDSHAKE_STATES, OVER, State
from ferry.protocol.records import RecordType


class Step(Enum):
    """What moves a session (its value says it in words, for errors)."""

    # both sides
    PAKE = "the peer's PAKE message"
    CONFIRM = "the peer's key confirmation"
    ABORT = "the peer's ABORT"
    GIVE_UP = "abort()"
    FAIL = "an error or a timeout"
    # sender
    REFUSAL = "an ANSWER refusing"
    ACCEPTANCE = "an ANSWER accepting"
    KEPT_ONE = "an ANSWER accepting with bytes kept (resume_from)"
    KEPT_LIST = "an ANSWER accepting with a list of kept files (RESUME records follow)"
    RESUME = "a RESUME record (more follow)"
    LAST_RESUME = "the last RESUME record"
    SEND_PROOFS = "send_proofs()"
    VERDICT = "a VERDICT record (more follow)"
    LAST_VERDICT = "the last VERDICT record"
    SEND_START = "start_file()"
    SEND_DATA = "send_data()"
    SEND_FINAL = "send_data() of the final record"
    SEND_DIGEST = "send_file_digest()"
    ACK = "the ACK"
    # receiver
    OFFER = "an OFFER (a file, a stream, a text, or a tree whose manifest is not read)"
    TREE_OFFER = "an OFFER of a tree (MANIFEST records follow)"
    MANIFEST = "a MANIFEST record (more follow)"
    LAST_MANIFEST = "the last MANIFEST record"
    UNREAD_MANIFEST = "a MANIFEST record of a tree not read"
    ACCEPT = "accept()"
    ACCEPT_KEPT = "accept() with bytes kept"
    REFUSE = "refuse()"
    PROOF = "a PROOF record (more follow)"
    LAST_PROOF = "the last PROOF record"
    SEND_VERDICT = "verdict()"
    DATA = "a DATA record"
    START_DUE = "the next file is a kept one (its START comes first)"
    START = "a START record"
    DIGEST_DUE = "a resumed file's last byte (its DIGEST comes next)"
    DIGEST = "a DIGEST record"
    ALL_RECEIVED = "every byte arrived"
    ACKNOWLEDGE = "acknowledge()"


@dataclass(frozen=True)
class Machine:
    """One side's table, and which of its steps are the peer's records (of which type)."""

    name: str
    table: Mapping[State, Mapping[Step, State]]
    records: Mapping[Step, RecordType]
    """The steps that are a record from the peer; all others are the driver's calls or
    what follows from them."""

    def advance(self, state: State, step: Step) -> State:
        """The state after `step`; raises if `state` does not take it."""
        after = self.table.get(state, {}).get(step)
        if after is None:
            error = RemoteProtocolError if step in self.records else LocalProtocolError
            raise error(f"{self.name} is {state.value}: {step.value} is out of turn")
        return after

    def expected(self, state: State) -> frozenset[RecordType]:
        """The record types the peer may send in `state`."""
        return frozenset(self.records[s] for s in self.table.get(state, {}) if s in self.records)


def _failing(table: dict[State, dict[Step, State]]) -> dict[State, dict[Step, State]]:
    """Every state but DONE and FAILED can fail; once the peer proved it holds the code,
    by its ABORT too (a sealed record is trusted only then)."""
    for state in State:
        if state in OVER:
            table[state] = {}
            continue
        moves = table.setdefault(state, {})
        moves[Step.FAIL] = moves[Step.GIVE_UP] = State.FAILED
        if state not in HANDSHAKE_STATES:
            moves[Step.ABORT] = State.FAILED
    return table


_S = State

SENDER: Final = Machine(
    "the sender's session",
    _failing(
        {
            _S.KEY_EXCHANGE: {Step.PAKE: _S.CONFIRMING},
            _S.CONFIRMING: {Step.CONFIRM: _S.AWAIT_ANSWER},
            _S.AWAIT_ANSWER: {
                Step.REFUSAL: _S.DONE,
                Step.ACCEPTANCE: _S.SENDING,
                Step.KEPT_ONE: _S.PROVING,
                Step.KEPT_LIST: _S.AWAIT_RESUME,
            },
            _S.AWAIT_RESUME: {Step.RESUME: _S.AWAIT_RESUME, Step.LAST_RESUME: _S.PROVING},
            _S.PROVING: {Step.SEND_PROOFS: _S.AWAIT_VERDICT},
            _S.AWAIT_VERDICT: {Step.VERDICT: _S.AWAIT_VERDICT, Step.LAST_VERDICT: _S.SENDING},
            _S.SENDING: {
                Step.SEND_START: _S.SENDING,
                Step.SEND_DATA: _S.SENDING,
                Step.SEND_DIGEST: _S.SENDING,
                Step.SEND_FINAL: _S.AWAIT_ACK,
            },
            # A tree whose last file resumed: its DIGEST follows the final record.
            _S.AWAIT_ACK: {Step.SEND_DIGEST: _S.AWAIT_ACK, Step.ACK: _S.DONE},
        }
    ),
    {
        Step.PAKE: RecordType.PAKE,
        Step.CONFIRM: RecordType.CONFIRM,
        Step.ABORT: RecordType.ABORT,
        Step.REFUSAL: RecordType.ANSWER,
        Step.ACCEPTANCE: RecordType.ANSWER,
        Step.KEPT_ONE: RecordType.ANSWER,
        Step.KEPT_LIST: RecordType.ANSWER,
        Step.RESUME: RecordType.RESUME,
        Step.LAST_RESUME: RecordType.RESUME,
        Step.VERDICT: RecordType.VERDICT,
        Step.LAST_VERDICT: RecordType.VERDICT,
        Step.ACK: RecordType.ACK,
    },
)

RECEIVER: Final = Machine(
    "the receiver's session",
    _failing(
        {
            _S.KEY_EXCHANGE: {Step.PAKE: _S.CONFIRMING},
            _S.CONFIRMING: {Step.CONFIRM: _S.AWAIT_OFFER},
            _S.AWAIT_OFFER: {Step.OFFER: _S.DECIDING, Step.TREE_OFFER: _S.AWAIT_MANIFEST},
            _S.AWAIT_MANIFEST: {Step.MANIFEST: _S.AWAIT_MANIFEST, Step.LAST_MANIFEST: _S.DECIDING},
            _S.DECIDING: {
                # An unread manifest's records may still arrive while the driver refuses.
                Step.UNREAD_MANIFEST: _S.DECIDING,
                Step.ACCEPT: _S.RECEIVING,
                Step.ACCEPT_KEPT: _S.AWAIT_PROOF,
                Step.REFUSE: _S.DONE,
            },
            _S.AWAIT_PROOF: {Step.PROOF: _S.AWAIT_PROOF, Step.LAST_PROOF: _S.VERIFYING},
            _S.VERIFYING: {Step.SEND_VERDICT: _S.RECEIVING},
            _S.RECEIVING: {
                Step.DATA: _S.RECEIVING,
                Step.START_DUE: _S.AWAIT_START,
                Step.DIGEST_DUE: _S.AWAIT_DIGEST,
                Step.ALL_RECEIVED: _S.STORING,
            },
            _S.AWAIT_START: {Step.START: _S.RECEIVING},
            _S.AWAIT_DIGEST: {Step.DIGEST: _S.RECEIVING},
            _S.STORING: {Step.ACKNOWLEDGE: _S.DONE},
        }
    ),
    {
        Step.PAKE: RecordType.PAKE,
        Step.CONFIRM: RecordType.CONFIRM,
        Step.ABORT: RecordType.ABORT,
        Step.OFFER: RecordType.OFFER,
        Step.TREE_OFFER: RecordType.OFFER,
        Step.MANIFEST: RecordType.MANIFEST,
        Step.LAST_MANIFEST: RecordType.MANIFEST,
        Step.UNREAD_MANIFEST: RecordType.MANIFEST,
        Step.PROOF: RecordType.PROOF,
        Step.LAST_PROOF: RecordType.PROOF,
        Step.DATA: RecordType.DATA,
        Step.START: RecordType.START,
        Step.DIGEST: RecordType.DIGEST,
    },
)
