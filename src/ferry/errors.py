"""Every error ferry raises, in one flat hierarchy.

Theory of operation: I/O edges (sockets, files, libraries) catch what the
operating system or a library raises and re-raise one of these, so the CLI
can map any failure to one line of text and one exit code without knowing
where it came from. The docstring of each class is the sentence a user reads
when no more specific message was given. The relay imports this module too,
so it must stay standard-library only.

Exit codes are decided here and nowhere else: each class carries its own,
and `exit_code_for()` maps anything else (a bug, an interrupt) at the edge
(cli/common.py), the one place a failure becomes a line and a status.
"""

from __future__ import annotations

# Exit codes, one per class of failure. Documented in README.md; keep in sync.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_LOCAL_FILE = 3
EXIT_RELAY_UNREACHABLE = 4
EXIT_RELAY_REFUSED = 5
EXIT_WRONG_CODE = 6
EXIT_PEER_GONE = 7
EXIT_INTEGRITY = 8
EXIT_TIMEOUT = 9
EXIT_REFUSED_BY_PEER = 10
# 11: scripts/bootstrap.py, the first run could not install (it cannot import this module).
EXIT_SOURCE_CHANGED = 12
EXIT_NOT_FOR_TERMINAL = 13
EXIT_TLS_FILES = 14
EXIT_INTERRUPTED = 130


class FerryError(Exception):
    """ferry failed."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(FerryError):
    """invalid arguments."""

    exit_code = EXIT_USAGE


class InvalidCode(UsageError):
    """that is not a ferry code (expected something like 7-guitar-orbit-velvet)."""


class InvalidAddress(UsageError):
    """invalid relay address (expected host:port or [v6]:port)."""


class LocalFileError(FerryError):
    """cannot read or write a local file."""

    exit_code = EXIT_LOCAL_FILE


class NoSpace(LocalFileError):
    """out of disk space."""


class OutputClosed(LocalFileError):
    """cannot write the code to standard output (closed, or a full device)."""


class SourceChanged(LocalFileError):
    """a file changed while it was being sent."""

    exit_code = EXIT_SOURCE_CHANGED

    def __init__(self, message: str, offered: str) -> None:
        super().__init__(message)
        self.offered = offered
        """The file's name as the receiver knows it (the message may hold a local path)."""


class StdinMismatch(LocalFileError):
    """standard input does not begin with the bytes kept from an earlier try: send again."""


class FileExists(LocalFileError):
    """the file already exists."""


class NotForTerminal(FerryError):
    """a file is not written to a terminal: its bytes could mess it up (use --force)."""

    exit_code = EXIT_NOT_FOR_TERMINAL


class UnsafeName(FerryError):
    """the sender offered a file name that cannot be stored safely."""

    exit_code = EXIT_REFUSED_BY_PEER


class ProtocolError(FerryError):
    """protocol violation."""

    exit_code = EXIT_INTERNAL


class LocalProtocolError(ProtocolError):
    """ferry misused its own protocol (a bug)."""


class RemoteProtocolError(ProtocolError):
    """the other side sent something that is not valid ferry protocol."""

    exit_code = EXIT_PEER_GONE


class RelayLineTooLong(RemoteProtocolError):
    """the relay sent a line longer than the protocol allows."""


class BadRequest(RemoteProtocolError):
    """the relay received a malformed request."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """The rendezvous refusal token the relay answers with (protocol/rendezvous.py)."""


class HttpError(RemoteProtocolError):
    """The browser's request was not one the relay can answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        """The HTTP status to answer with."""


class WebSocketError(RemoteProtocolError):
    """The browser broke the WebSocket protocol."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        """The close code to send (protocol/websocket.CloseCode)."""


class TooCostly(FerryError):
    """checking the offered list of entries took longer than it was given."""


class RelayUnreachable(FerryError):
    """relay not reachable."""

    exit_code = EXIT_RELAY_UNREACHABLE


class NotARelay(RelayUnreachable):
    """that is not a ferry relay."""


class RelayRefused(FerryError):
    """the relay refused the request."""

    exit_code = EXIT_RELAY_REFUSED

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"relay refused: {reason}")
        self.reason = reason


class WrongCode(FerryError):
    """wrong code."""

    exit_code = EXIT_WRONG_CODE


class TooManyAttempts(WrongCode):
    """too many wrong codes were tried; start a new transfer."""


class ConnectionLost(FerryError):
    """the connection was lost."""

    exit_code = EXIT_PEER_GONE


class IntegrityError(FerryError):
    """the data was altered in transit (authentication failed)."""

    exit_code = EXIT_INTEGRITY


class ResumeMismatch(IntegrityError):
    """a resumed file does not match the sender's; it starts over next time."""


class TimedOut(FerryError):
    """timed out."""

    exit_code = EXIT_TIMEOUT


class RefusedOffer(FerryError):
    """this receiver refused the offer."""

    exit_code = EXIT_REFUSED_BY_PEER


class RefusedByPeer(FerryError):
    """the other side refused the transfer."""

    exit_code = EXIT_REFUSED_BY_PEER


class AttemptRefused(RefusedByPeer):
    """the receiver refused the offer (this attempt is over; the code stays alive)."""


class PeerSourceChanged(RefusedByPeer):
    """the sender's file changed while it was being sent; nothing was stored."""

    exit_code = EXIT_SOURCE_CHANGED


class Interrupted(FerryError):
    """interrupted."""

    exit_code = EXIT_INTERRUPTED


class CannotListen(FerryError):
    """the relay cannot listen on that address."""

    exit_code = EXIT_RELAY_UNREACHABLE


class BadTlsFiles(FerryError):
    """the relay cannot use its TLS certificate and key (--tls-cert, --tls-key)."""

    exit_code = EXIT_TLS_FILES


# -- inside the relay (never shown to a client as an exception) ------------------------


class Refusal(FerryError):
    """A request the relay turns down; reason is the wire token."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


class Closed(FerryError):
    """The peer closed or reset the connection."""


class AddressFull(FerryError):
    """The proxied client's address holds its connection limit already."""


class TlsFailed(FerryError):
    """The TLS handshake failed, or the browser closed during it."""


class NetworkBusy(FerryError):
    """The proxied client's network holds its share of the handshakes already."""

    def __init__(self, peer: str = "", key: str = "") -> None:
        super().__init__(peer)
        self.peer = peer
        self.key = key


class NodeHandshakeFailed(FerryError):
    """The owner did not complete the node handshake."""


class DirectoryUnavailable(FerryError):
    """The directory (Redis) did not answer; the request that needed it is refused."""


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a program that stops with this exception."""
    if isinstance(exc, FerryError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL
