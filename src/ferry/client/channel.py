"""Records over the paired socket: the client's I/O edge after PAIRED.

One preallocated receive buffer holds at least one whole record, so a
record is parsed where it landed (memoryviews, no copies) and the next
recv_into fills the space behind it. Sealed records are opened into a
second preallocated buffer, sealed DATA is built in a third; the hot path
allocates nothing per record. Socket errors become ConnectionLost here.
"""

from __future__ import annotations

import asyncio
import socket

from ferry.crypto import Opener, Sealer, SessionKeys
from ferry.errors import ConnectionLost, RefusedByPeer, RemoteProtocolError, TimedOut
from ferry.protocol import messages
from ferry.protocol.records import (
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    MAX_SEALED_LENGTH,
    TAG_SIZE,
    Header,
    RecordType,
    parse_header,
)

_RECEIVE_BUFFER = 2 * (HEADER_SIZE + MAX_SEALED_LENGTH)


class Channel:
    def __init__(self, sock: socket.socket, early: bytes, peer: str, io_timeout: float) -> None:
        self.sock = sock
        self.peer = peer
        self.io_timeout = io_timeout
        self._loop = asyncio.get_running_loop()
        self._in = memoryview(bytearray(max(_RECEIVE_BUFFER, len(early))))
        self._in[: len(early)] = early
        self._start = 0
        self._end = len(early)
        self._plain = memoryview(bytearray(MAX_DATA_PAYLOAD))
        self._out = memoryview(bytearray(0))
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self.lost_message = f"the {peer} went away"

    # -- raw I/O -----------------------------------------------------------

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(self.lost_message)

    async def _fill(self, need: int) -> None:
        """Make at least `need` bytes available from _start."""
        if self._end - self._start >= need:
            return
        if self._start + need > len(self._in):  # compact: move the partial record to the front
            held = self._end - self._start
            self._in[:held] = self._in[self._start : self._end]
            self._start, self._end = 0, held
        try:
            async with asyncio.timeout(self.io_timeout):
                while self._end - self._start < need:
                    n = await self._loop.sock_recv_into(self.sock, self._in[self._end :])
                    if n == 0:
                        raise self._lost()
                    self._end += n
        except TimeoutError:
            raise TimedOut(f"the {self.peer} stopped responding ({self.io_timeout:.0f}s)") from None
        except OSError:
            raise self._lost() from None

    async def _send(self, data: bytes | memoryview) -> None:
        try:
            async with asyncio.timeout(self.io_timeout):
                await self._loop.sock_sendall(self.sock, data)
        except TimeoutError:
            raise TimedOut(f"the {self.peer} stopped reading ({self.io_timeout:.0f}s)") from None
        except OSError:
            raise self._lost() from None

    async def read_record(self) -> tuple[Header, memoryview]:
        """The next record; the body view is valid until the next read."""
        await self._fill(HEADER_SIZE)
        header = parse_header(self._in[self._start : self._start + HEADER_SIZE])
        await self._fill(HEADER_SIZE + header.length)
        body_at = self._start + HEADER_SIZE
        self._start = body_at + header.length
        return header, self._in[body_at : self._start]

    # -- handshake (unsealed) records ------------------------------------

    async def send_raw(self, data: bytes) -> None:
        """Send already-encoded records (a handshake flight) in one write."""
        await self._send(data)

    async def read_plain(self, record_type: RecordType) -> bytes:
        header, body = await self.read_record()
        if header.type is not record_type:
            raise RemoteProtocolError(f"expected {record_type.name}, got {header.type.name}")
        return bytes(body)

    # -- sealed records ----------------------------------------------------

    def start_sealing(self, keys: SessionKeys) -> None:
        self._sealer = Sealer(keys.seal_key)
        self._opener = Opener(keys.open_key)

    def sealed(self, record_type: RecordType, body: bytes) -> bytes:
        """One sealed record, encoded: the next in our sequence, to be sent next."""
        assert self._sealer is not None, "start_sealing() first"
        header = Header(len(body) + TAG_SIZE, record_type, 0).encode()
        return header + self._sealer.seal(header, body)

    async def send_sealed(self, record_type: RecordType, body: bytes) -> None:
        await self._send(self.sealed(record_type, body))

    async def send_data(self, chunk: memoryview, final: bool) -> None:
        """Seal and send one DATA record built in a reused buffer."""
        assert self._sealer is not None, "start_sealing() first"
        size = HEADER_SIZE + len(chunk) + TAG_SIZE
        if len(self._out) < size:
            self._out = memoryview(bytearray(size))
        header = Header(len(chunk) + TAG_SIZE, RecordType.DATA, int(final)).encode()
        self._out[:HEADER_SIZE] = header
        self._sealer.seal_into(header, chunk, self._out[HEADER_SIZE:size])
        await self._send(self._out[:size])

    async def read_sealed(self) -> tuple[Header, memoryview]:
        """The next sealed record, opened; the plaintext view is valid until the next read.

        An ABORT from the peer is raised as RefusedByPeer.
        """
        assert self._opener is not None, "start_sealing() first"
        header, body = await self.read_record()
        if not header.sealed:
            raise RemoteProtocolError(f"unexpected {header.type.name} record")
        size = self._opener.open_into(header.encode(), body, self._plain)
        plain = self._plain[:size]
        if header.type is RecordType.ABORT:
            abort = messages.decode_abort(bytes(plain))
            raise RefusedByPeer(f"the {self.peer} gave up: {abort.message or abort.reason}")
        return header, plain

    async def expect_sealed(self, record_type: RecordType) -> bytes:
        header, plain = await self.read_sealed()
        if header.type is not record_type:
            raise RemoteProtocolError(f"expected {record_type.name}, got {header.type.name}")
        return bytes(plain)

    async def abort(self, reason: str, message: str) -> None:
        """Best effort: tell the peer why we stop. Never raises."""
        if self._sealer is None:
            return
        body = messages.encode_abort(messages.Abort(reason, message))
        try:
            async with asyncio.timeout(2):
                await self._loop.sock_sendall(self.sock, self.sealed(RecordType.ABORT, body))
        except (OSError, TimeoutError):
            pass

    def close(self) -> None:
        self.sock.close()
