"""How far a sender trusts the relay's tickets: data connections at once, and how fast.

Theory of operation. Every TICKET (or INCOMING) line on the control
connection makes the sender open a data connection to the relay. An honest
relay sends one when the nameplate is assigned and one more each time an
attempt ends, so a sender holds one or two data connections; a malicious
relay could send them without end and make the sender open a socket per
line. The gate bounds both:

- at most `max_open` data connections (attempts) at once: a ticket that
  arrives past that is ignored (the relay is lying about receivers, or the
  sender is already busy with more than it can serve);
- connections are opened at most `burst` at once and then one every
  `interval` seconds (a token bucket): a ticket that arrives too soon waits
  for its turn, so a flood of claims costs the sender delay, never an error.

The sender itself (sender.py) opens one connection per ticket: an INCOMING
for the standby ticket it is already taking to the relay is not a second
receiver, and is not given a second connection.

Pure bookkeeping, no I/O and no clock of its own: `now` is passed in.
"""

from __future__ import annotations

from typing import Final

MAX_OPEN: Final = 8
"""Data connections a sender holds at once, at most (an honest relay needs 1 or 2)."""
BURST: Final = 8
"""Data connections a sender may open back to back."""
INTERVAL: Final = 0.1
"""Seconds per data connection once the burst is spent (10 a second). Each claim a
sender turns away (a receiver that sent no valid PAKE message) costs it one data
connection, and the relay serves claims on a nameplate one at a time, first come
first served: the rate bounds how long an honest receiver waits behind a flood of
bogus claims (50 claims ahead: about 5 s). A lying relay gets at most 10 short
connections a second out of the sender, each one SPAKE2 message (~6 ms of CPU)."""


class TicketGate:
    def __init__(
        self, max_open: int = MAX_OPEN, burst: int = BURST, interval: float = INTERVAL
    ) -> None:
        self.max_open = max_open
        self.burst = float(burst)
        self.interval = interval
        self._tokens = float(burst)
        self._updated: float | None = None
        self.open = 0
        """Attempts holding (or about to open) a data connection now."""

    def admit(self, now: float) -> float | None:
        """A ticket arrived: None to ignore it (max_open reached), else the seconds
        to wait before opening its data connection. An admitted ticket holds one of
        max_open until done() is called."""
        if self.open >= self.max_open:
            return None
        if self._updated is not None:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed / self.interval)
        self._updated = now
        self._tokens -= 1.0  # may go negative: the later tickets queue behind
        self.open += 1
        return 0.0 if self._tokens >= 0.0 else -self._tokens * self.interval

    def done(self) -> None:
        """An admitted attempt ended (its data connection is closed)."""
        self.open -= 1
