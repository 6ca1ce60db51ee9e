"""What a session says to its driver: its states, its events, its timeouts.

Dependency-free on purpose (no crypto, no I/O): the client imports these
names at start-up, before the crypto libraries are loaded, and tests match
on them without building a session. The sessions themselves live in
protocol/sender_session.py and protocol/receiver_session.py; which state
follows which is protocol/transitions.py's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ferry.protocol import manifest, messages


class State(Enum):
    KEY_EXCHANGE = "key-exchange"
    """Our PAKE message is out; waiting for the peer's (it has had no guess yet)."""
    CONFIRMING = "confirming"
    """Keys derived, our MAC out (sender: with the OFFER); waiting for the peer's MAC."""
    AWAIT_OFFER = "await-offer"
    """Receiver: the sender is authenticated; its OFFER comes next."""
    AWAIT_MANIFEST = "await-manifest"
    """Receiver: a tree was offered; its MANIFEST records come next."""
    DECIDING = "deciding"
    """Receiver: holds the offer; accept() or refuse() next (local)."""
    AWAIT_ANSWER = "await-answer"
    """Sender: waiting for the receiver to accept or refuse."""
    AWAIT_RESUME = "await-resume"
    """Sender: a tree was accepted; the RESUME records saying what the receiver kept follow."""
    PROVING = "proving"
    """Sender: accepted with bytes kept; send_proofs() next, once they are hashed (local)."""
    AWAIT_VERDICT = "await-verdict"
    """Sender: proofs sent; the receiver's VERDICT records say which kept files resume."""
    AWAIT_PROOF = "await-proof"
    """Receiver: accepted with bytes kept; the sender's PROOF records come next."""
    VERIFYING = "verifying"
    """Receiver: holds the sender's proofs; verdict() next (local)."""
    SENDING = "sending"
    """Sender: accepted; send_data() (and a kept file's START and DIGEST) until the final
    record."""
    RECEIVING = "receiving"
    """Receiver: DATA records arrive until the final one."""
    AWAIT_START = "await-start"
    """Receiver: the next file was kept in part; its START comes before any of its bytes."""
    AWAIT_DIGEST = "await-digest"
    """Receiver: a resumed file's bytes all arrived; its whole-content hash comes next."""
    STORING = "storing"
    """Receiver: every byte arrived and checked; acknowledge() once stored (local)."""
    AWAIT_ACK = "await-ack"
    """Sender: everything sent (a resumed last file's DIGEST may still follow); waiting
    for the receiver's ACK."""
    DONE = "done"
    """Over as agreed: acknowledged, or the offer was refused."""
    FAILED = "failed"
    """Over: an error, or an ABORT either way."""


HANDSHAKE_STATES: Final = frozenset({State.KEY_EXCHANGE, State.CONFIRMING})
"""The handshake timer runs."""
LOCAL_STATES: Final = frozenset({State.DECIDING, State.STORING, State.PROVING, State.VERIFYING})
"""The next move is the driver's: no timer runs."""
OVER: Final = frozenset({State.DONE, State.FAILED})
"""Nothing more is read or sent."""


@dataclass(frozen=True)
class Timeouts:
    handshake: float
    """Seconds from PAIRED until both sides have proved they hold the code."""
    io: float
    """Seconds without progress before the peer counts as gone."""
    ack: float
    """Seconds the sender waits for the ACK after its last DATA record."""
    answer: float = 600.0
    """Seconds the sender waits for the receiver to accept or refuse (a person may be
    deciding, with --ask)."""


@dataclass(frozen=True)
class Keyed:
    """The key exchange finished; the peer has had its one guess at the code."""


@dataclass(frozen=True)
class Confirmed:
    """The peer proved it holds the same code."""


@dataclass(frozen=True)
class OfferReceived:
    offer: messages.Offer
    entries: tuple[manifest.Entry, ...] = ()
    """A tree's manifest, complete (empty for other kinds, or a tree not read: see
    ReceiverSession.max_entries)."""


@dataclass(frozen=True)
class Answered:
    answer: messages.Answer


@dataclass(frozen=True)
class DataReceived:
    """Bytes of the one file, stream or text (a tree's come as FileData)."""

    data: memoryview
    """The plaintext, valid until the session receives more bytes."""
    final: bool


@dataclass(frozen=True)
class FileData:
    """Bytes of one file of a tree (entry `index` of the manifest)."""

    index: int
    data: memoryview
    """The plaintext, valid until the session receives more bytes."""
    done: bool
    """These are the file's last bytes (an empty file: no bytes, done)."""


@dataclass(frozen=True)
class Started:
    """Where a kept file's DATA starts (the receiver offered to resume): 0 or what was
    kept."""

    offset: int
    index: int | None = None
    """tree: the manifest entry whose DATA starts (None for a file or a stream)."""


@dataclass(frozen=True)
class DigestReceived:
    """A resumed file's whole SHA-256 (hex), as the sender computed it."""

    sha256: str
    index: int | None = None
    """tree: the manifest entry it is the digest of (None for a file or a stream)."""


@dataclass(frozen=True)
class ProofReceived:
    """Receiver: the sender's MAC (hex) of each kept file, in the order they were kept."""

    macs: tuple[str, ...]


@dataclass(frozen=True)
class VerdictReceived:
    """Sender: for each kept file, in order, whether it resumes (its proof matched)."""

    matched: tuple[bool, ...]


@dataclass(frozen=True)
class AllReceived:
    """Every byte of a tree arrived and was authenticated (receiver: STORING)."""


@dataclass(frozen=True)
class Acknowledged:
    ack: messages.Ack


@dataclass(frozen=True)
class PeerAborted:
    abort: messages.Abort


@dataclass(frozen=True)
class NeedData:
    """No whole record yet: read more bytes."""


NEED_DATA: Final = NeedData()

Event = (
    Keyed
    | Confirmed
    | OfferReceived
    | Answered
    | DataReceived
    | FileData
    | AllReceived
    | Started
    | DigestReceived
    | ProofReceived
    | VerdictReceived
    | Acknowledged
    | PeerAborted
)
