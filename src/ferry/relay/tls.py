"""https on the relay's own port: TLS for browsers (--tls-cert, --tls-key).

Theory of operation. Browsers give WebCrypto and service workers only to
secure contexts, so a relay reached by a name needs https. The relay keeps
one port: the web front (web.py) peeks at a connection's first byte, and a
TLS handshake record (0x16, http.sniff says TLS) is wrapped here, while
rendezvous lines stay in the clear (the CLI's records are end-to-end
encrypted already; TLS would hide only the nameplate).

    browser ==TLS records== TCP socket  [TlsLeg]  pair end ---- PlainEnd == web front
                            (the real leg) decrypt,  (fixed small   (HTTP, WebSocket,
                                           encrypt    buffers)       as in the clear)

The handshake runs on an ssl.SSLObject over memory buffers (the event
loop's sock_* calls on the TCP socket, no SSLSocket), under the caller's
deadline: the web front starts it inside the handshake deadline, so a
ClientHello that never completes costs what a silent rendezvous line
costs, and the connection keeps the per-address slot the gate gave it.
Then the plaintext goes through one end of a socketpair (PlainEnd), which
the web front serves exactly as a plain-http socket: HTTP answers, and a
WebSocket leg bridged into the server (bridge.py). Two tasks copy: up
(records in, plaintext to the pair) and down (the pair to records out).

Ending. Up ends at the browser's close_notify, its TCP close or a TLS
error: the pair's write side is shut, so the web front sees an EOF as
from a plain client. Down ends when the web front closes its end (an
answer sent, a leg over): what it wrote before still goes out (at most
FLUSH_TIMEOUT), then close_notify and the TCP close.

Memory. Socket options that describe the network leg (buffer sizes,
keep-alive, TCP options) set on the PlainEnd go to the TCP socket, minus
TLS_HOLD, the most this module holds (both directions): so a WebSocket
leg inside TLS holds no more than a transfer's budget, as in the clear.
The socketpair keeps fixed small buffers. Certificate and key are loaded
once at start-up (server_context): a file that is missing, unreadable, not
PEM, or a key that does not match the certificate is one line and exit
code 14 (errors.BadTlsFiles), before the relay listens.

Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Final

from ferry.errors import BadTlsFiles
from ferry.relay.legs import LegEnd

KIB: Final = 1024

CHUNK: Final = 64 * KIB
"""Most bytes read at once from either side."""

PAIR_BUFFER: Final = 64 * KIB
"""Send buffer of each socketpair end, as the kernel counts it (the request is half)."""

RECORD_OVERHEAD: Final = 16 * KIB + 256
"""A TLS record's worth (16 KiB of plaintext and its framing): what OpenSSL keeps of a
partial record, and what one CHUNK grows by once sealed, at most."""

TLS_HOLD: Final = 2 * (PAIR_BUFFER + PAIR_BUFFER // 2 + 2 * CHUNK + 2 * RECORD_OVERHEAD)
"""Most a TLS leg holds, both directions: per direction the pair's queue (its send
buffer, and one buffer's worth of overshoot), the bytes read and their decrypted
or sealed copy, and a partial record on each side of OpenSSL."""

MAX_PEM: Final = 1024 * KIB
"""Largest certificate chain or key file read (a chain is a few KiB)."""

FLUSH_TIMEOUT: Final = 10.0
"""Seconds the leg keeps writing to the browser what the web front sent before it
closed its end; a browser that takes nothing for that long is dropped."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds to write the close_notify alert at the end."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The relay's TLS context; BadTlsFiles (one line) for files it cannot use."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])

    def no_password() -> bytes:
        raise BadTlsFiles(f"--tls-key {key}: the key is encrypted; give it unencrypted")

    for flag, path, marker in (
        ("--tls-cert", cert, b"-----BEGIN CERTIFICATE-----"),
        ("--tls-key", key, b"PRIVATE KEY-----"),
    ):
        try:
            with open(path, "rb") as file:
                text = file.read(MAX_PEM + 1)
        except OSError as exc:
            raise BadTlsFiles(f"{flag} {path}: {exc.strerror or exc}") from None
        if marker not in text or len(text) > MAX_PEM:
            what = "certificate" if flag == "--tls-cert" else "private key"
            raise BadTlsFiles(f"{flag} {path}: not a PEM {what}")
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        mismatch = exc.reason == "KEY_VALUES_MISMATCH"
        what = "is not the key of" if mismatch else "and its certificate are not usable with"
        raise BadTlsFiles(
            f"--tls-key {key} {what} --tls-cert {cert} ({exc.reason or exc.library or 'ssl'})"
        ) from None
    return context


class PlainEnd(LegEnd):
    """The web front's end of a TLS leg's socketpair: what it reads and writes is the
    plaintext; socket options of the network leg go to the TCP socket (module
    docstring: Memory; legs.py)."""

    hold = TLS_HOLD


class TlsLeg:
    """One browser's TLS connection, from its handshake to its close."""

    def __init__(self, raw: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
        self.raw = raw
        self.tls = tls
        self.incoming = incoming
        self.outgoing = outgoing
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (left, right):
            end.setblocking(False)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER // 2)
        self.plain = PlainEnd(left.detach(), raw)
        self.plain.setblocking(False)
        self.mine = right
        self.released = asyncio.Event()
        self.plain.on_close = self.released.set
        self._write_lock = asyncio.Lock()

    async def run(self) -> None:
        """Copy both ways until the web front lets go; close the TCP socket."""
        up = asyncio.create_task(self._up())
        down = asyncio.create_task(self._down())
        gone = asyncio.create_task(self.released.wait())
        try:
            done, _ = await asyncio.wait({up, down, gone}, return_when=asyncio.FIRST_COMPLETED)
            if up in done:
                # The browser is done sending: the web front sees an EOF, answers
                # what it has and closes its end, which ends down.
                with contextlib.suppress(OSError):
                    self.mine.shutdown(socket.SHUT_WR)
            if down not in done:
                await asyncio.wait({down}, timeout=FLUSH_TIMEOUT)
            if down.done() and not down.cancelled() and down.exception() is None:
                await self._close_notify()
        finally:
            for task in (up, down, gone):
                task.cancel()
            await asyncio.gather(up, down, gone, return_exceptions=True)
            self.mine.close()
            self.plain.close()
            self.raw.close()

    async def _up(self) -> None:
        """Browser -> web front: records in, plaintext out, until close_notify or EOF."""
        loop = asyncio.get_running_loop()
        while True:
            # First what the handshake's last read brought along (a request sent
            # with the client's Finished), then what arrives.
            while True:
                try:
                    plain = self.tls.read(CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    return
                if not plain:
                    return
                await loop.sock_sendall(self.mine, plain)
            await self._flush()  # what reading made OpenSSL say (a KeyUpdate's answer)
            data = await loop.sock_recv(self.raw, CHUNK)
            if not data:
                return
            self.incoming.write(data)

    async def _down(self) -> None:
        """Web front -> browser: plaintext in, records out, until the web front closes."""
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(self.mine, CHUNK):
            self.tls.write(data)
            await self._flush()

    async def _flush(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        async with self._write_lock, asyncio.timeout(timeout):
            if self.outgoing.pending:
                await loop.sock_sendall(self.raw, self.outgoing.read())

    async def _close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLError):
            self.tls.unwrap()
        with contextlib.suppress(OSError, TimeoutError):
            await self._flush(CLOSE_TIMEOUT)


async def accept(raw: socket.socket, context: ssl.SSLContext) -> TlsLeg:
    """Run the server side of the handshake on an accepted, non-blocking socket.

    No deadline of its own: the caller bounds it (the handshake deadline).
    ssl.SSLError for a handshake that fails (the alert is sent first, if it
    can go at once), ConnectionResetError if the browser closes during it.
    """
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            if outgoing.pending:
                with contextlib.suppress(OSError):
                    raw.send(outgoing.read())
            raise
        else:
            break
        if outgoing.pending:
            await loop.sock_sendall(raw, outgoing.read())
        data = await loop.sock_recv(raw, CHUNK)
        if not data:
            raise ConnectionResetError("closed during the TLS handshake")
        incoming.write(data)
    if outgoing.pending:
        await loop.sock_sendall(raw, outgoing.read())
    return TlsLeg(raw, tls, incoming, outgoing)
