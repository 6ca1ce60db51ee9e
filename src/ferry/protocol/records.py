"""Record framing between sender and receiver (everything after PAIRED).

Theory of operation. Once the relay has paired two clients, every byte
between them is a record:

     0               4        5        6
    +----------------+--------+--------+------------------------+
    | length (u32 BE)|  type  | flags  |  body (length bytes)   |
    +----------------+--------+--------+------------------------+

The six header bytes are sent in the clear and are the associated data of
the body's AEAD seal (crypto.py), so a changed type, flag or length fails
authentication. Two handshake types travel unsealed (PAKE, CONFIRM) and are
tiny; every later record is sealed and its length includes the 16-byte tag.
Each type has its own length cap, checked before any body byte is buffered:
a peer can never make us allocate more than MAX_SEALED_LENGTH.

Flags: FLAG_FINAL marks the last DATA record of a transfer. Because it is
authenticated and nonces count records, dropping the tail of a stream is
detected as surely as reordering or replaying records. FLAG_COMPRESSED
marks a DATA record whose body is a compressed frame (protocol/compression.py),
sent only to a receiver that said it can inflate one.

RecordDecoder does no I/O: receive_data(bytes) (or writable() + commit(n),
which lets a socket read straight into its buffer), then next_record()
until it returns None (need more data). The sessions (session.py) use it
for every byte they receive.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ferry.errors import RemoteProtocolError

HEADER: Final = struct.Struct("!IBB")
HEADER_SIZE: Final = HEADER.size
TAG_SIZE: Final = 16

MAX_DATA_PAYLOAD: Final = 1 << 20
"""Largest plaintext a DATA record may carry, in bytes (senders use less)."""
MAX_MESSAGE_PAYLOAD: Final = 64 * 1024
"""Largest plaintext of an OFFER/ANSWER/ACK/ABORT record, in bytes."""
MAX_HANDSHAKE_LENGTH: Final = 1024
"""Largest unsealed PAKE or CONFIRM record body, in bytes."""
MAX_SEALED_LENGTH: Final = MAX_DATA_PAYLOAD + TAG_SIZE

FLAG_FINAL: Final = 0x01
FLAG_COMPRESSED: Final = 0x02
_KNOWN_FLAGS: Final = FLAG_FINAL | FLAG_COMPRESSED


class RecordType(IntEnum):
    PAKE = 1
    """SPAKE2 message (unsealed)."""
    CONFIRM = 2
    """Key confirmation MAC (unsealed)."""
    OFFER = 16
    """Sender -> receiver: what is offered (JSON, sealed)."""
    ANSWER = 17
    """Receiver -> sender: accept or refuse the offer (JSON, sealed)."""
    DATA = 18
    """Sender -> receiver: file bytes (sealed)."""
    ACK = 19
    """Receiver -> sender: the file is safely stored (JSON, sealed)."""
    ABORT = 20
    """Either way: giving up, with a reason (JSON, sealed)."""
    MANIFEST = 21
    """Sender -> receiver, right after a tree OFFER: part of the list of entries (JSON)."""
    START = 22
    """Sender -> receiver, before the DATA of a file the receiver offered to resume (JSON)."""
    DIGEST = 23
    """Sender -> receiver, after the last DATA of a resumed file: its whole SHA-256 (JSON)."""
    RESUME = 24
    """Receiver -> sender, right after a tree's ANSWER: part of what it kept (JSON)."""
    PROOF = 25
    """Sender -> receiver, after a resuming ANSWER: MACs of the bytes it was told were kept."""
    VERDICT = 26
    """Receiver -> sender, after the PROOF records: which kept files resume (JSON)."""


UNSEALED_TYPES: Final = frozenset({RecordType.PAKE, RecordType.CONFIRM})


@dataclass(frozen=True)
class Header:
    length: int
    type: RecordType
    flags: int

    @property
    def final(self) -> bool:
        return bool(self.flags & FLAG_FINAL)

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def sealed(self) -> bool:
        return self.type not in UNSEALED_TYPES

    def encode(self) -> bytes:
        return HEADER.pack(self.length, self.type, self.flags)


@dataclass(frozen=True)
class Record:
    header: Header
    body: bytes | memoryview
    """From RecordDecoder: a view into its buffer, valid until it receives more."""


def max_length(record_type: RecordType) -> int:
    """The largest body length a record of this type may announce."""
    if record_type in UNSEALED_TYPES:
        return MAX_HANDSHAKE_LENGTH
    if record_type is RecordType.DATA:
        return MAX_SEALED_LENGTH
    return MAX_MESSAGE_PAYLOAD + TAG_SIZE


def parse_header(data: bytes | bytearray | memoryview) -> Header:
    """Decode and validate six header bytes. Raises RemoteProtocolError."""
    length, raw_type, flags = HEADER.unpack(data)
    try:
        record_type = RecordType(raw_type)
    except ValueError:
        raise RemoteProtocolError(f"unknown record type {raw_type}") from None
    if flags & ~_KNOWN_FLAGS:
        raise RemoteProtocolError(f"unknown record flags {flags:#x}")
    if flags and record_type is not RecordType.DATA:
        raise RemoteProtocolError("only DATA records carry flags")
    if length > max_length(record_type):
        raise RemoteProtocolError(f"{record_type.name} record of {length} bytes is too large")
    if record_type not in UNSEALED_TYPES and length < TAG_SIZE:
        raise RemoteProtocolError(f"{record_type.name} record too short to be sealed")
    return Header(length, record_type, flags)


def encode_record(record_type: RecordType, body: bytes, flags: int = 0) -> bytes:
    """Header plus body, for the small records (the data path avoids this copy)."""
    header = Header(len(body), record_type, flags)
    if header.length > max_length(record_type):
        raise ValueError(f"{record_type.name} body of {header.length} bytes exceeds the cap")
    return header.encode() + body


class RecordDecoder:
    """Sans-IO record splitter with a hard cap on what it buffers.

    Bytes go in either by copy, receive_data(data), or without one: write
    into writable() (recv_into does) and then commit(n). next_record()
    returns whole records, None when it needs more bytes; a record's body
    is a view into the decoder's buffer, valid until the next writable()
    or receive_data(). The buffer starts at `capacity` bytes and grows only
    to fit a record whose header has passed its checks, to at most
    MAX_BUFFER: a peer can never make it hold more.
    """

    MAX_BUFFER: Final = 2 * (HEADER_SIZE + MAX_SEALED_LENGTH)
    MIN_READ: Final = 64 * 1024
    """Free space writable() aims to offer, so that reads are not tiny."""

    def __init__(self, capacity: int = MIN_READ) -> None:
        self._buffer = memoryview(bytearray(min(capacity, self.MAX_BUFFER)))
        self._start = 0  # the next record (or its header) begins here
        self._end = 0  # bytes received end here
        self._header: Header | None = None  # parsed header of the record at _start

    def writable(self) -> memoryview:
        """Free space to receive into; commit(n) after writing n bytes to its start."""
        if self._start == self._end:
            self._start = self._end = 0
        held = self._end - self._start
        if self._header is None and held >= HEADER_SIZE:  # checked now: it sizes the buffer
            self._header = parse_header(self._buffer[self._start : self._start + HEADER_SIZE])
        missing = HEADER_SIZE + (self._header.length if self._header else 0) - held
        if len(self._buffer) - self._end < max(missing, self.MIN_READ):
            # Move the partial record to the front; grow if it still cannot fit.
            size = len(self._buffer)
            if held + missing > size:
                size = min(max(2 * size, held + missing), self.MAX_BUFFER)
            buffer = self._buffer if size == len(self._buffer) else memoryview(bytearray(size))
            buffer[:held] = self._buffer[self._start : self._end]
            self._buffer, self._start, self._end = buffer, 0, held
        return self._buffer[self._end :]

    def commit(self, n: int) -> None:
        """n bytes were written at the start of the last writable()."""
        if not 0 <= n <= len(self._buffer) - self._end:
            raise ValueError(f"commit({n}) exceeds the writable space")
        self._end += n

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Copy data in; records already complete must be taken out first if it does not fit."""
        view = memoryview(data)
        while view:
            space = self.writable()
            n = min(len(space), len(view))
            if n == 0:
                raise ValueError("the decoder is full: call next_record() first")
            space[:n] = view[:n]
            self.commit(n)
            view = view[n:]

    def next_record(self) -> Record | None:
        held = self._end - self._start
        if self._header is None:
            if held < HEADER_SIZE:
                return None
            self._header = parse_header(self._buffer[self._start : self._start + HEADER_SIZE])
        header = self._header
        if held < HEADER_SIZE + header.length:
            return None
        body_at = self._start + HEADER_SIZE
        self._start = body_at + header.length
        self._header = None
        return Record(header, self._buffer[body_at : self._start])

    @property
    def buffered(self) -> int:
        """Bytes held beyond the headers already parsed."""
        held = self._end - self._start
        return held - HEADER_SIZE if self._header is not None else held
