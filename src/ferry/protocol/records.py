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

Flags: FLAG_FINAL marks the last DATA record of a file. Because it is
authenticated and nonces count records, dropping the tail of a stream is
detected as surely as reordering or replaying records.

RecordDecoder does no I/O: receive_data(bytes), then next_record() until it
returns None (need more data).
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
_KNOWN_FLAGS: Final = FLAG_FINAL


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
    def sealed(self) -> bool:
        return self.type not in UNSEALED_TYPES

    def encode(self) -> bytes:
        return HEADER.pack(self.length, self.type, self.flags)


@dataclass(frozen=True)
class Record:
    header: Header
    body: bytes


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
    """Sans-IO record splitter with a hard cap on what it buffers."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: Header | None = None

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_record(self) -> Record | None:
        if self._header is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            self._header = parse_header(self._buffer[:HEADER_SIZE])
            del self._buffer[:HEADER_SIZE]
        if len(self._buffer) < self._header.length:
            return None
        body = bytes(self._buffer[: self._header.length])
        del self._buffer[: self._header.length]
        record, self._header = Record(self._header, body), None
        return record

    @property
    def buffered(self) -> int:
        return len(self._buffer)
