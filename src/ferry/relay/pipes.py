"""The pump's vocabulary: a pipe's two sides, how a pump run ends, what it reports.

Pure names and one record, shared by the pump that produces them (pump.py)
and the rules that judge them (session.py), which stays free of sockets.
They reach the relay's logs and metrics through session.py's `Ending`, so
they are string enums: a member is its wire-and-log text.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """A pump's side: the relay's server puts the receiver on A, the sender on B."""

    A = "a"
    B = "b"


class PumpEnd(StrEnum):
    """How one run of the pump ended."""

    CLOSED = "closed"
    """Both directions finished: each side's end of stream was delivered."""
    EARLY = "early"
    """One side finished (or failed) during the opening (pump.py)."""
    ERROR = "error"
    """A socket failed."""
    IDLE = "idle"
    """No byte moved for idle_timeout."""


@dataclass
class PumpResult:
    bytes_a_to_b: int
    bytes_b_to_a: int
    outcome: PumpEnd
    last_from: Side | None = None
    """The side whose bytes went out last (None if none moved)."""
    first_eof: Side | None = None
    """The side whose end of stream came first (None if none came)."""
