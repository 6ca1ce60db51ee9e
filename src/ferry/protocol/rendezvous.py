"""Relay rendezvous: the only part of the protocol the relay understands.

Theory of operation. Every connection to the relay starts with one ASCII
line from the client; the relay answers with lines of its own. A line ends
with LF and is at most MAX_LINE bytes, LF included: anything longer is a
protocol error, so a client can never make the relay buffer more than that.

    sender (control)        relay                    receiver       sender (data)
    FERRY 1 SEND      --->
                      <---  NAMEPLATE 7
                                        <---  FERRY 1 RECV 7 + PAKE record
                      <---  INCOMING <ticket>
                                                          <---  FERRY 1 JOIN 7 <ticket>
                            PAIRED  --->                    --->  PAIRED
                            (from here on a blind byte pipe: receiver <-> sender data)

    with standby (the data connection waits at the relay before the receiver comes):
    FERRY 1 SEND STANDBY --->
                      <---  NAMEPLATE 7
                      <---  TICKET <ticket>
                                                          <---  FERRY 1 JOIN 7 <ticket>
                                        <---  FERRY 1 RECV 7 + PAKE record
                            PAIRED  --->                    --->  PAIRED
                      <---  TICKET <next>   (once that attempt has ended, if the sender stays)

    relay -> control: PING now and then; control -> relay: PONG
    any refusal:      ERROR <reason> <text>, then the relay closes

    a sender that wants the relay's web address for a browser link asks for it:
    FERRY 1 SEND STANDBY WEB --->
                      <---  NAMEPLATE 7 https://relay.example:9021/   (if it has one)

A relay answers WEB only to a sender that asked (a sender from before it
reads `NAMEPLATE 7` and nothing else); a relay from before it refuses the
request as bad-request, and the sender asks again without WEB (weblink.py
has the URL's rules).

The relay pairs a claim only once the PAKE record behind its RECV line has
arrived whole (claim_record_missing): a claim that stays silent or sends
anything else holds neither the nameplate nor the sender's data
connection. The sender's control connection owns the nameplate for as
long as it stays open. Each receiver that names the nameplate makes the relay hand the sender
a fresh one-time ticket; the sender opens a data connection with it and the
relay joins the two. If the receiver typed a wrong code, only that data
connection dies, and the nameplate is free for the next attempt.

Only the nameplate travels here, never the code's words. This module does no
I/O: parse_* take one line, encode() returns the bytes to write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ferry.errors import BadRequest, RemoteProtocolError
from ferry.protocol.records import HEADER, MAX_HANDSHAKE_LENGTH, RecordType
from ferry.protocol.weblink import web_url_problem

PROTOCOL_VERSION: Final = 1
MAX_LINE: Final = 128
"""Longest line either side may send, in bytes, LF included."""

TICKET_HEX_LEN: Final = 32

# Reasons a relay gives for refusing (the token after ERROR).
REASON_VERSION: Final = "version"
REASON_BAD_REQUEST: Final = "bad-request"
REASON_UNKNOWN_NAMEPLATE: Final = "unknown-nameplate"
REASON_CLAIMED: Final = "claimed"
"""Another receiver's transfer runs on this nameplate."""
REASON_RETRY: Final = "retry"
"""Another receiver's claim is still in its key exchange: try again in a moment."""
REASON_BUSY: Final = "busy"
REASON_TIMEOUT: Final = "timeout"
REASON_TOO_MANY_ATTEMPTS: Final = "too-many-attempts"
REASON_SHUTTING_DOWN: Final = "shutting-down"
REASON_SENDER_GONE: Final = "sender-gone"
REASON_RATE_LIMITED: Final = "rate-limited"
"""This source address made too many nameplate look-ups in the last minute."""
REASON_TOO_MANY_CONNECTIONS: Final = "too-many-connections"
"""This source address holds too many connections to the relay at once."""
REASON_STALE_TICKET: Final = "stale-ticket"
"""A sender's data connection presented a ticket of its nameplate that was already
used or replaced (the receiver it was for was served, or left): wait for the next."""
REASON_UNAVAILABLE: Final = "unavailable"
"""A relay cluster node cannot take the request now (its directory, Redis, or the
node holding the nameplate is unreachable); running transfers are not affected."""


# Client -> relay


@dataclass(frozen=True)
class SendRequest:
    """A sender asks for a nameplate (opens its control connection).

    With standby, the sender asks to connect its data connections ahead of
    time: the relay gives it a TICKET for the next receiver at once (and a
    new one after each attempt) instead of an INCOMING when a receiver comes.
    With web, it asks for the relay's web address on its NAMEPLATE line.
    """

    standby: bool = False
    web: bool = False


@dataclass(frozen=True)
class ReceiveRequest:
    """A receiver names the nameplate from its code."""

    nameplate: int


@dataclass(frozen=True)
class JoinRequest:
    """A sender's data connection, answering an INCOMING ticket."""

    nameplate: int
    ticket: str


@dataclass(frozen=True)
class Pong:
    """A waiting sender's answer to PING."""


# Relay -> client


@dataclass(frozen=True)
class NameplateAssigned:
    nameplate: int
    web_url: str = ""
    """The relay's web app, for a browser link (weblink.py); only to a sender that
    asked, and "" when the relay has none."""


@dataclass(frozen=True)
class Incoming:
    """A receiver claimed the nameplate; join it with this ticket."""

    ticket: str


@dataclass(frozen=True)
class StandbyTicket:
    """Connect a data connection now with this ticket; the next receiver gets it."""

    ticket: str


@dataclass(frozen=True)
class Paired:
    """From the next byte on, the connection is a pipe to the peer."""


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Refused:
    reason: str
    text: str


ClientMessage = SendRequest | ReceiveRequest | JoinRequest | Pong
RelayMessage = NameplateAssigned | Incoming | StandbyTicket | Paired | Ping | Refused


_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
_TICKET = re.compile(rf"[0-9a-f]{{{TICKET_HEX_LEN}}}")
_REASON = re.compile(r"[a-z][a-z-]{0,31}")


def encode(message: ClientMessage | RelayMessage) -> bytes:
    """The wire line for a message, LF included."""
    match message:
        case SendRequest(standby, web):
            line = f"FERRY {PROTOCOL_VERSION} SEND" + (" STANDBY" if standby else "")
            line += " WEB" if web else ""
        case ReceiveRequest(nameplate):
            line = f"FERRY {PROTOCOL_VERSION} RECV {nameplate}"
        case JoinRequest(nameplate, ticket):
            line = f"FERRY {PROTOCOL_VERSION} JOIN {nameplate} {ticket}"
        case Pong():
            line = "PONG"
        case NameplateAssigned(nameplate, web_url):
            line = f"NAMEPLATE {nameplate}" + (f" {web_url}" if web_url else "")
        case Incoming(ticket):
            line = f"INCOMING {ticket}"
        case StandbyTicket(ticket):
            line = f"TICKET {ticket}"
        case Paired():
            line = "PAIRED"
        case Ping():
            line = "PING"
        case Refused(reason, text):
            line = f"ERROR {reason} {_printable(text)}"
    data = line.encode("ascii", "replace")[: MAX_LINE - 1] + b"\n"
    return data


def _printable(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _words(line: bytes) -> list[str]:
    if not line.endswith(b"\n"):
        raise BadRequest(REASON_BAD_REQUEST, "line not terminated")
    try:
        text = line[:-1].removesuffix(b"\r").decode("ascii")  # tolerate CRLF (telnet)
    except UnicodeDecodeError:
        raise BadRequest(REASON_BAD_REQUEST, "line is not ASCII") from None
    if not text.isprintable():
        raise BadRequest(REASON_BAD_REQUEST, "control characters in line")
    return text.split(" ")


def _number(text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise BadRequest(REASON_BAD_REQUEST, "malformed nameplate")
    return int(text)


def parse_client_line(line: bytes) -> ClientMessage:
    """Parse the first (or a later) line a client sent to the relay.

    Raises BadRequest with the reason token the relay should answer with.
    """
    words = _words(line)
    if words == ["PONG"]:
        return Pong()
    if len(words) < 3 or words[0] != "FERRY":
        raise BadRequest(REASON_BAD_REQUEST, "not a ferry client")
    if words[1] != str(PROTOCOL_VERSION):
        raise BadRequest(REASON_VERSION, f"this relay speaks ferry protocol {PROTOCOL_VERSION}")
    match words[2:]:
        case ["SEND"]:
            return SendRequest()
        case ["SEND", "STANDBY"]:
            return SendRequest(standby=True)
        case ["SEND", "WEB"]:
            return SendRequest(web=True)
        case ["SEND", "STANDBY", "WEB"]:
            return SendRequest(standby=True, web=True)
        case ["RECV", nameplate]:
            return ReceiveRequest(_number(nameplate))
        case ["JOIN", nameplate, ticket] if _TICKET.fullmatch(ticket):
            return JoinRequest(_number(nameplate), ticket)
    raise BadRequest(REASON_BAD_REQUEST, "unknown request")


def parse_relay_line(line: bytes) -> RelayMessage:
    """Parse a line the relay sent to a client. Raises RemoteProtocolError."""
    try:
        words = _words(line)
    except BadRequest as exc:
        raise RemoteProtocolError(f"relay sent a malformed line: {exc.message}") from None
    match words:
        case ["NAMEPLATE", nameplate] if _NUMBER.fullmatch(nameplate):
            return NameplateAssigned(int(nameplate))
        case ["NAMEPLATE", nameplate, web_url] if _NUMBER.fullmatch(nameplate):
            problem = web_url_problem(web_url)
            if problem is not None:
                raise RemoteProtocolError(f"the relay sent an unusable web address: {problem}")
            return NameplateAssigned(int(nameplate), web_url)
        case ["INCOMING", ticket] if _TICKET.fullmatch(ticket):
            return Incoming(ticket)
        case ["TICKET", ticket] if _TICKET.fullmatch(ticket):
            return StandbyTicket(ticket)
        case ["PAIRED"]:
            return Paired()
        case ["PING"]:
            return Ping()
        case ["ERROR", reason, *text] if _REASON.fullmatch(reason):
            return Refused(reason, " ".join(text))
    raise RemoteProtocolError("the server is not a ferry relay (or speaks another version)")


def claim_record_missing(early: bytes | bytearray) -> int:
    """Bytes still missing from the PAKE record that must follow a RECV line (0: whole).

    A receiver sends its PAKE record right behind its claim (docs/PROTOCOL.md);
    the relay pairs a claim only once that record has arrived whole, so a
    claim that stays silent, or sends anything else, never occupies the
    sender. This is a framing check, no cryptography: the six header bytes
    must say PAKE, no flags, a body of 1 to MAX_HANDSHAKE_LENGTH bytes.
    Raises BadRequest otherwise. `early` is what followed the line so far
    (never more than the record: read only what this says is missing).
    """
    header_size = HEADER.size
    if len(early) < header_size:
        return header_size - len(early)
    length, record_type, flags = HEADER.unpack_from(early)
    if record_type != RecordType.PAKE or flags or not 0 < length <= MAX_HANDSHAKE_LENGTH:
        raise BadRequest(REASON_BAD_REQUEST, "a claim must be followed by a key exchange message")
    whole: int = header_size + length
    return max(0, whole - len(early))


_RELAY_WORDS: Final = (b"NAMEPLATE", b"INCOMING", b"TICKET", b"PAIRED", b"PING", b"ERROR")


def could_be_relay(start: bytes) -> bool:
    """Whether bytes a server sent first can begin a relay's line.

    A relay's every line starts with one of its words in capitals, so a
    first answer that starts otherwise ("HTTP/1.1 400", "SSH-2.0", a TLS
    alert) proves the server is something else.
    """
    word = re.split(rb"[ \r\n]", start, maxsplit=1)[0]
    if len(word) < len(start):  # the word is complete
        return word in _RELAY_WORDS
    return any(known.startswith(word) for known in _RELAY_WORDS)


class LineBuffer:
    """Collects bytes and splits them into lines, never holding more than MAX_LINE.

    receive_data() adds bytes; next_line() returns one complete line (LF
    included) or None when more data is needed. Bytes after the last line
    stay buffered; take_rest() hands them over when the connection becomes a
    pipe, so nothing a client sent early is lost.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | None:
        end = self._buffer.find(b"\n", 0, self._max_line)
        if end < 0:
            if len(self._buffer) >= self._max_line:
                raise BadRequest(REASON_BAD_REQUEST, "line too long")
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        return line

    def rest(self) -> bytes:
        """What follows the last line, left in place."""
        return bytes(self._buffer)

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def __len__(self) -> int:
        return len(self._buffer)

    def peek(self) -> bytes:
        """The bytes held (an incomplete line), left in place."""
        return bytes(self._buffer)
