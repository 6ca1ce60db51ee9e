"""The relay's log lines: one per connection outcome, human-readable or JSON.

Theory of operation. Every connection the relay accepts ends with exactly
one call to `outcome()`, which writes one line naming how it ended:

    happy     a pipe ended as a delivered file does: both sides closed
              cleanly and the receiver's bytes (its ACK) moved last
              (receiver line); a sender left after such a transfer (sender
              line)
    lonely    a sender left with no transfer run (no receiver came, or none
              got as far as a pipe)
    lost      a waiting sender stopped answering PINGs
    idle      a pipe moved no byte for idle_timeout and was closed
    vanished  the peer closed or reset before its part was done
    refused   the relay answered ERROR <reason> (the reason is logged)
    errory    a pipe that did not end as a delivered file does: a socket
              failed, or the sender's bytes moved last (it stopped mid-file,
              or nobody answered it); detail= says which
    cut       a pipe still running at the end of the shutdown drain

A sender line ends as its last transfer did (session.py decides both, from
what the relay can see: it cannot read what it carries).
A sender's data connection has no line of its own once joined: the
receiver's line covers the pipe (bytes both ways).

What never appears here: a code's words, keys, file names, tickets, or any
byte a client sent. The relay cannot see the first three; the last two are
kept out by construction (fields are numbers, our own tokens, and peer
addresses).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import StrEnum
from typing import Final

LOGGER_NAME: Final = "ferry.relay"
FORMATS: Final = ("human", "json")


class Outcome(StrEnum):
    """How a connection ended (the table above); the member is its log text."""

    HAPPY = "happy"
    LONELY = "lonely"
    LOST = "lost"
    IDLE = "idle"
    VANISHED = "vanished"
    REFUSED = "refused"
    ERRORY = "errory"
    CUT = "cut"


HAPPY: Final = Outcome.HAPPY
LONELY: Final = Outcome.LONELY
LOST: Final = Outcome.LOST
IDLE: Final = Outcome.IDLE
VANISHED: Final = Outcome.VANISHED
REFUSED: Final = Outcome.REFUSED
ERRORY: Final = Outcome.ERRORY
CUT: Final = Outcome.CUT
OUTCOMES: Final = tuple(Outcome)

log = logging.getLogger(LOGGER_NAME)

Field = str | int | float


def outcome(name: Outcome, **fields: Field) -> None:
    """Log one connection's outcome with its fields (role, nameplate, peer, ...)."""
    log.info("connection", extra={"fields": {"outcome": name.value, **fields}})


def _fields(record: logging.LogRecord) -> dict[str, Field]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _timestamp(record: logging.LogRecord) -> str:
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{moment}.{int(record.msecs):03d}Z"


class HumanFormatter(logging.Formatter):
    """`<time> relay outcome=happy role=receiver nameplate=7 ...` or the plain message."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if fields:
            text = " ".join(f"{key}={_human(value)}" for key, value in fields.items())
        else:
            text = record.getMessage()
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{_timestamp(record)} relay {level}{text}"


def _human(value: Field) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if text and " " not in text else json.dumps(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event (or msg), then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        line: dict[str, Field] = {"ts": _timestamp(record), "level": record.levelname.lower()}
        if fields:
            line["event"] = record.getMessage()
            line.update({k: round(v, 6) if isinstance(v, float) else v for k, v in fields.items()})
        else:
            line["msg"] = record.getMessage()
        return json.dumps(line, separators=(",", ":"))


class NodeTag(logging.Filter):
    """A cluster node's id on every line: a node= field, or a prefix of a plain message."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields(record)
        if fields:
            record.fields = {"node": self.node, **fields}
        elif not getattr(record, "node_tagged", False):
            record.msg = f"node={self.node} {record.msg}"
            record.node_tagged = True
        return True


def setup(fmt: str = "human", quiet: bool = False, node: str = "") -> None:
    """Send the relay's log to stderr, one line per record, in the chosen format.
    node: a cluster node's id, on every line ("" for a single relay)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    if node:
        handler.addFilter(NodeTag(node))
    root = logging.getLogger("ferry")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False
