"""Compressed DATA records: their body, the receiver's checks, and when a sender compresses.

Theory of operation. A receiver that can inflate says so in its ANSWER
(`"compress": ["zstd"]`); only then may the sender set FLAG_COMPRESSED on a
DATA record, whose sealed body is then

     0                   4
    +-------------------+------------------------------------------+
    | raw length u32 BE | zstd frame, its content size = raw length |
    +-------------------+------------------------------------------+

instead of the raw bytes. Each record is a frame of its own, so raw and
compressed records mix freely in one transfer: the sender decides record
by record (Policy), and everything else about DATA (the FINAL flag, the
allowance in bytes delivered, the offered size) counts the raw bytes.

What the receiver checks before a byte is inflated (parse()): the stated
length is 1 to `most` bytes (the record cap, and no more than the offer has
left); it is at most MAX_RATIO times the frame's length, zstd's own limit
(each block of at most 128 KiB costs at least 4 bytes), so a record that
claims more cannot be honest. The codec (ferry/codec.py) then inflates
into at most the stated length and refuses a frame that gives anything
else or carries bytes after its end. The sender holds the code and could
send those bytes raw: what compression must not give it is a way to make
the receiver hold or work on more than the record says.

When a sender compresses (Policy). Compressing costs CPU on both sides and
only pays when the network, not the CPU, is what the transfer waits for,
and when the bytes compress. The driver tells the policy after every
write whether it had to wait for the socket (the send queue was full:
the network is behind); records are compressed only within RECENT seconds
of such a write. If compressing makes the sender slower than the network,
the queue drains, writes stop waiting, and records go raw until it fills
again, so the mix settles where both keep up; and a connection that takes
more than MAX_DRAIN_RATE is faster than compressing could feed: there
records go raw whatever waits. A record that saves less than
1/MIN_SAVING of its size is sent raw, and the next tries back off (1, 2,
4 … MAX_BACKOFF records raw without trying), so random or already
compressed data costs one cheap try now and then; a record that compresses
well ends the back-off.
"""

from __future__ import annotations

import struct
from typing import Final

from ferry.errors import RemoteProtocolError

CODEC_ZSTD: Final = "zstd"
"""The codec a compressed DATA record uses (the ANSWER's "compress" names it)."""
CODECS: Final = (CODEC_ZSTD,)
"""What this version can inflate, in order of preference."""

LENGTH: Final = struct.Struct("!I")
PREFIX_SIZE: Final = LENGTH.size

BLOCK_MAX: Final = 128 * 1024
"""zstd's largest block, in bytes."""
MAX_RATIO: Final = BLOCK_MAX // 4
"""Raw bytes per byte of frame that no zstd frame exceeds: an all-alike block of 128 KiB
takes a 3-byte block header and 1 byte. A record that claims more is refused unread."""

MIN_SAVING: Final = 8
"""A compressed record is sent only if it is at least 1/MIN_SAVING smaller than raw."""
MAX_BACKOFF: Final = 64
"""Most records sent raw without trying, after tries that did not compress."""
RECENT: Final = 0.5
"""Seconds after a write that waited during which the network counts as behind. A
full queue makes writes wait in bursts: once the kernel lets one go on, it takes
a large part of its buffer before the next waits (megabytes on a long path)."""
RATE_WINDOW: Final = 0.25
"""Seconds of writes over which the connection's drain rate is measured."""
MAX_DRAIN_RATE: Final = 40e6
"""Bytes a second above which a connection counts as fast: one core compresses text at
about 300 MB/s into about 100 MB/s (zstd 1), so on a faster path (a LAN, loopback)
compressing would make the CPU, not the network, the limit."""


def encode_prefix(raw_length: int) -> bytes:
    """The four bytes in front of the frame: the raw length it inflates to."""
    return LENGTH.pack(raw_length)


def parse(body: memoryview, most: int) -> tuple[int, memoryview]:
    """The stated raw length and the frame of a compressed DATA body; RemoteProtocolError
    unless the length is 1 to `most` bytes and within MAX_RATIO of the frame."""
    if len(body) <= PREFIX_SIZE:
        raise RemoteProtocolError("a compressed DATA record is too short")
    (stated,) = LENGTH.unpack_from(body)
    frame = body[PREFIX_SIZE:]
    if not 0 < stated <= most:
        raise RemoteProtocolError(
            f"a compressed DATA record states {stated} bytes, outside 1 to {most}"
        )
    if stated > MAX_RATIO * len(frame):
        raise RemoteProtocolError(
            f"a compressed DATA record states {stated} bytes from {len(frame)}: "
            "more than any zstd frame holds"
        )
    return stated, frame


def negotiated(offered: tuple[str, ...], willing: bool) -> str | None:
    """The codec a sender uses: the first of the receiver's list it knows, if it is
    willing to compress at all (None: every record goes raw)."""
    if not willing:
        return None
    return next((codec for codec in offered if codec in CODECS), None)


class Policy:
    """Whether the sender compresses its next DATA record (module docstring)."""

    def __init__(self) -> None:
        self.waited_at: float | None = None
        """When a write last waited for the socket (the driver's clock, seconds)."""
        self.drain_rate: float | None = None
        """Bytes a second the connection took over the last RATE_WINDOW or more of
        writes, or None before the first such window."""
        self._mark: tuple[float, int] | None = None  # (when, bytes written by then)
        self._skip = 0  # records to send raw before the next try
        self._backoff = 0  # the skip after the next try that does not pay

    def wrote(self, waited: bool, now: float, written: int = 0) -> None:
        """A write completed at `now`, `written` bytes in all so far; `waited`: it could
        not go out at once (the queue was full)."""
        if waited:
            self.waited_at = now
        if self._mark is None:
            self._mark = (now, written)
        elif now - self._mark[0] >= RATE_WINDOW:
            self.drain_rate = (written - self._mark[1]) / (now - self._mark[0])
            self._mark = (now, written)

    def congested(self, now: float) -> bool:
        """A write waited within the last RECENT seconds, and the connection is not
        faster than compressing keeps up with: the network is behind."""
        if self.drain_rate is not None and self.drain_rate > MAX_DRAIN_RATE:
            return False
        return self.waited_at is not None and now - self.waited_at <= RECENT

    def wants(self, now: float) -> bool:
        """Whether to try compressing the next record (call once per record)."""
        if self._skip:
            self._skip -= 1
            return False
        return self.congested(now)

    def worth(self, raw: int, packed: int) -> bool:
        """Whether a record of `raw` bytes that compressed to `packed` goes compressed;
        a try that does not pay backs off the next ones."""
        if packed <= raw - raw // MIN_SAVING and packed < raw:
            self._backoff = 0
            return True
        self._backoff = min(max(1, 2 * self._backoff), MAX_BACKOFF)
        self._skip = self._backoff
        return False
