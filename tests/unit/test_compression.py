"""Compressed DATA records: the body (protocol/compression.py), the bounded inflater
(ferry/codec.py), the decision rule with fake "queue full" signals, and whole
conversations of sessions in memory that mix raw and compressed records."""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.codec import Compressor, Inflater
from ferry.errors import RemoteProtocolError
from ferry.protocol import compression, messages
from ferry.protocol.compression import (
    CODEC_ZSTD,
    CODECS,
    MAX_BACKOFF,
    MAX_DRAIN_RATE,
    MAX_RATIO,
    RECENT,
    Policy,
    encode_prefix,
    negotiated,
    parse,
)
from ferry.protocol.events import Answered, DataReceived, State
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import (
    FLAG_COMPRESSED,
    FLAG_FINAL,
    MAX_DATA_PAYLOAD,
    RecordType,
)
from ferry.protocol.sender_session import SenderSession
from tests.memory import MemoryTransport, bytewise, whole
from tests.unit.test_session import PASSWORD, TIMEOUTS, handshake

LINE = b"line %06d: the quick brown fox jumps over the lazy dog\n"
TEXT = b"".join(LINE % i for i in range(8000))


def frame(data: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=1, write_content_size=content_size).compress(data)


# -- the body --------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=4096))
def test_parse_of_a_packed_body_gives_back_the_stated_length_and_frame(raw: bytes) -> None:
    packed = frame(raw)
    stated, got = parse(memoryview(encode_prefix(len(raw)) + packed), MAX_DATA_PAYLOAD)
    assert stated == len(raw) and bytes(got) == packed
    assert Inflater().inflate(got, stated) == raw


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=MAX_DATA_PAYLOAD))
def test_parse_of_garbage_gives_a_value_or_a_remote_protocol_error(body: bytes, most: int) -> None:
    try:
        stated, got = parse(memoryview(body), most)
    except RemoteProtocolError:
        return
    assert 0 < stated <= most and stated <= MAX_RATIO * len(got)


@pytest.mark.parametrize("stated", [0, MAX_DATA_PAYLOAD + 1, 0xFFFFFFFF])
def test_parse_refuses_a_stated_length_outside_the_record_cap(stated: int) -> None:
    with pytest.raises(RemoteProtocolError, match="outside"):
        parse(memoryview(encode_prefix(stated) + bytes(1024)), MAX_DATA_PAYLOAD)


def test_parse_refuses_more_than_the_offer_has_left() -> None:
    body = memoryview(encode_prefix(1000) + frame(bytes(1000)))
    with pytest.raises(RemoteProtocolError, match="outside 1 to 999"):
        parse(body, 999)


def test_parse_refuses_a_ratio_no_zstd_frame_reaches() -> None:
    tiny = bytes(16)
    with pytest.raises(RemoteProtocolError, match="more than any zstd frame"):
        parse(memoryview(encode_prefix(MAX_RATIO * len(tiny) + 1) + tiny), MAX_DATA_PAYLOAD)


@pytest.mark.parametrize("size", [1, 128 * 1024, MAX_DATA_PAYLOAD])
def test_the_ratio_limit_admits_every_real_frame_of_zeros(size: int) -> None:
    """The best case of compression (all alike) stays under MAX_RATIO, so an honest
    sender's record is never refused for it."""
    packed = frame(bytes(size))
    assert size <= MAX_RATIO * len(packed)


def test_parse_refuses_a_body_without_a_frame() -> None:
    with pytest.raises(RemoteProtocolError, match="too short"):
        parse(memoryview(encode_prefix(10)), MAX_DATA_PAYLOAD)


# -- bounded inflating: bombs and lies -------------------------------------------------------


def test_inflate_refuses_a_bomb_whose_frame_states_more_than_the_record() -> None:
    """A zip-bomb record: 64 MiB of zeros in a few kilobytes, stated as 128 KiB. Nothing
    past the stated length is ever produced: the frame's own size is checked first."""
    bomb = frame(bytes(64 << 20))
    assert len(bomb) < 8192
    with pytest.raises(RemoteProtocolError, match="does not state the record's length"):
        Inflater().inflate(memoryview(bomb), 128 * 1024)


def test_inflate_refuses_a_frame_that_hides_its_content_size() -> None:
    hidden = frame(bytes(1 << 20), content_size=False)
    with pytest.raises(RemoteProtocolError):
        Inflater().inflate(memoryview(hidden), 4096)


def test_inflate_refuses_a_frame_that_inflates_to_other_than_it_states() -> None:
    """A forged frame header: it states 1000 bytes (as the record does), its blocks
    hold 2000. The decompressor stops at the stated length and the frame is refused."""
    packed = bytearray(frame(os.urandom(2000)))
    descriptor = packed[4]
    assert descriptor >> 6 == 1 and descriptor & 0x20 and not descriptor & 0x03
    packed[5:7] = (1000 - 256).to_bytes(2, "little")  # 2-byte content size, less 256
    assert zstandard.frame_content_size(bytes(packed)) == 1000
    with pytest.raises(RemoteProtocolError, match="does not inflate"):
        Inflater().inflate(memoryview(bytes(packed)), 1000)


def test_inflate_refuses_bytes_after_the_frame() -> None:
    data = frame(TEXT[:5000]) + b"trailing"
    with pytest.raises(RemoteProtocolError, match="does not inflate"):
        Inflater().inflate(memoryview(data), 5000)


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 32, zlib.compress(TEXT[:4096])])
def test_inflate_refuses_what_is_not_a_zstd_frame(garbage: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Inflater().inflate(memoryview(garbage), 4096)


# -- the decision rule -----------------------------------------------------------------------


def test_policy_never_compresses_while_writes_do_not_wait() -> None:
    policy = Policy()
    for i in range(100):
        policy.wrote(False, now=i * 0.01)
        assert not policy.wants(now=i * 0.01)


def test_policy_compresses_within_recent_seconds_of_a_write_that_waited() -> None:
    policy = Policy()
    policy.wrote(True, now=10.0)
    assert policy.wants(now=10.0)
    assert policy.worth(128 * 1024, 40 * 1024)
    policy.wrote(False, now=10.1)  # a burst that fits: the queue is still full behind it
    assert policy.wants(now=10.0 + RECENT)
    # No write has waited for RECENT seconds: the sender, not the network, is behind.
    assert not policy.wants(now=10.0 + RECENT + 0.001)


@pytest.mark.parametrize(
    ("rate", "compresses"), [(MAX_DRAIN_RATE / 2, True), (MAX_DRAIN_RATE * 2, False)]
)
def test_policy_leaves_a_connection_faster_than_compressing_alone(
    rate: float, compresses: bool
) -> None:
    """Every write waits (the queue is full), but a connection that drains faster than
    MAX_DRAIN_RATE (loopback, a LAN) would wait on the compressor instead."""
    policy = Policy()
    now, written = 0.0, 0
    for _ in range(40):
        now += 0.01
        written += int(rate * 0.01)
        policy.wrote(True, now, written)
    assert policy.drain_rate == pytest.approx(rate, rel=0.05)
    assert policy.wants(now) is compresses


@pytest.mark.parametrize(
    ("raw", "packed", "worth"),
    [(8000, 7000, True), (8000, 7001, False), (8000, 8000, False), (8000, 9000, False),
     (1, 1, False)],
)  # fmt: skip
def test_policy_sends_compressed_only_what_saves_an_eighth(
    raw: int, packed: int, worth: bool
) -> None:
    assert Policy().worth(raw, packed) is worth


def test_policy_backs_off_doubling_on_data_that_does_not_compress() -> None:
    """Always congested, never compressible: tries at records 0, 2, 5, 10, 19 …, the gap
    doubling up to MAX_BACKOFF records sent raw without trying."""
    policy = Policy()
    tried = []
    for record in range(400):
        policy.wrote(True, now=record * 0.001)
        if policy.wants(now=record * 0.001):
            tried.append(record)
            assert not policy.worth(1000, 1000)
    gaps = [b - a - 1 for a, b in itertools.pairwise(tried)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 64, 64]
    assert set(gaps[6:]) == {MAX_BACKOFF}


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), max_size=400))
@settings(max_examples=200)
def test_policy_tries_only_soon_after_waiting_and_rarely_on_incompressible_data(
    signals: list[tuple[bool, float]],
) -> None:
    """Fed any run of "queue full" signals at any pace, with records that never
    compress: it tries only within RECENT seconds of a write that waited, and at most
    log2(MAX_BACKOFF) + 1 + n / MAX_BACKOFF times in n records."""
    policy = Policy()
    tries, now, waited_at = 0, 0.0, None
    for waited, step in signals:
        now += step
        policy.wrote(waited, now)
        waited_at = now if waited else waited_at
        if policy.wants(now):
            assert waited_at is not None and now - waited_at <= RECENT
            tries += 1
            policy.worth(1000, 999)
    assert tries <= 7 + len(signals) // MAX_BACKOFF


def test_policy_a_record_that_compresses_ends_the_back_off() -> None:
    policy = Policy()
    policy.wrote(True, now=0.0)
    for _ in range(5):  # back off to 16 records
        while not policy.wants(now=0.0):
            pass
        policy.worth(1000, 1000)
    while not policy.wants(now=0.0):
        pass
    assert policy.worth(1000, 100)
    assert policy.wants(now=0.0)  # the very next record is tried again
    assert not policy.worth(1000, 1000)
    assert not policy.wants(now=0.0) and policy.wants(now=0.0)  # the back-off starts at 1


def test_negotiated_takes_the_first_codec_both_know_and_only_if_willing() -> None:
    assert negotiated(("brotli", CODEC_ZSTD), willing=True) == CODEC_ZSTD
    assert negotiated((CODEC_ZSTD,), willing=False) is None
    assert negotiated(("brotli",), willing=True) is None
    assert negotiated((), willing=True) is None


# -- the ANSWER ------------------------------------------------------------------------------


def test_answer_round_trips_its_codecs() -> None:
    answer = messages.Answer(True, compress=CODECS)
    assert messages.decode_answer(messages.encode_answer(answer)) == answer


@pytest.mark.parametrize(
    "value", ['"zstd"', "[1]", '[""]', '["' + "x" * 17 + '"]', "[" + ",".join(['"a"'] * 9) + "]"]
)
def test_answer_with_a_malformed_codec_list_raises_remote_protocol_error(value: str) -> None:
    with pytest.raises(RemoteProtocolError, match="compress"):
        messages.decode_answer(b'{"accept":true,"compress":' + value.encode() + b"}")


def test_a_refusal_names_no_codecs() -> None:
    answer = messages.decode_answer(b'{"accept":false,"reason":"x","compress":["zstd"]}')
    assert answer.compress == ()


# -- sessions --------------------------------------------------------------------------------


def pair(
    payload: bytes, compress: bool = True, decompress: bool = True, cut=whole
) -> MemoryTransport:
    offer = messages.Offer(messages.KIND_FILE, "data.bin", len(payload))
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS, compress=compress),
        ReceiverSession(PASSWORD, TIMEOUTS, decompress=decompress),
        cut,
    )
    link.pair()
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    (answered,) = link.events(link.sender)
    assert isinstance(answered, Answered)
    return link


def transfer(link: MemoryTransport, payload: bytes, waits: list[bool], record: int) -> bytes:
    """Send payload in records of `record` bytes, one a second; before record i the last
    write waited if waits[i % len(waits)]. The bytes the receiver got."""
    sender, view, i = link.sender, memoryview(payload), 0
    while sender.state is State.SENDING:
        now = link.clock.advance(1.0)
        sender.wrote(now, waits[i % len(waits)])
        link.send(sender, sender.send_data(view[sender.sent : sender.sent + record], now))
        i += 1
    events = link.events(link.receiver)
    assert link.receiver.state is State.STORING
    return b"".join(bytes(e.data) for e in events if isinstance(e, DataReceived))


@pytest.mark.parametrize("cut", [whole, bytewise], ids=["whole", "bytewise"])
def test_a_congested_sender_compresses_and_the_receiver_gets_the_bytes(cut) -> None:
    payload = TEXT[:200_000] if cut is bytewise else TEXT
    link = pair(payload, cut=cut)
    assert transfer(link, payload, [True], 64 * 1024) == payload
    assert link.sender.compressed_records == link.sender.data_records
    assert link.receiver.compressed_records == link.sender.compressed_records
    assert link.sender.wire_bytes < len(payload) // 4


def test_an_uncongested_sender_sends_every_record_raw() -> None:
    link = pair(TEXT)
    assert transfer(link, TEXT, [False], 64 * 1024) == TEXT
    assert link.sender.compressed_records == 0 and link.sender.wire_bytes == len(TEXT)


@pytest.mark.parametrize(
    ("compress", "decompress"), [(False, True), (True, False)], ids=["no-compress", "old-peer"]
)
def test_without_both_sides_willing_nothing_is_compressed(compress: bool, decompress: bool) -> None:
    link = pair(TEXT, compress, decompress)
    assert transfer(link, TEXT, [True], 64 * 1024) == TEXT
    assert link.sender.compressed_records == 0


def test_random_data_goes_raw_after_a_few_cheap_tries() -> None:
    payload = os.urandom(4 << 20)
    link = pair(payload)
    assert transfer(link, payload, [True], 16 * 1024) == payload
    assert link.sender.compressed_records == 0
    assert link.sender.wire_bytes == len(payload)


def test_a_mixed_stream_compresses_the_parts_that_compress() -> None:
    payload = os.urandom(1 << 20) + TEXT + os.urandom(1 << 20)
    link = pair(payload)
    assert transfer(link, payload, [True], 32 * 1024) == payload
    assert 0 < link.sender.compressed_records < link.sender.data_records


@given(st.lists(st.booleans(), min_size=1, max_size=16), st.integers(4096, 40_000))
@settings(max_examples=20, deadline=None)
def test_any_congestion_pattern_delivers_the_same_bytes(waits: list[bool], record: int) -> None:
    payload = TEXT[:150_000] + os.urandom(20_000)
    link = pair(payload)
    assert transfer(link, payload, waits, record) == payload


def sealed_data(link: MemoryTransport, body: bytes, flags: int) -> bytes:
    """A DATA record the sender's keys seal, whatever its body (a peer that cheats)."""
    return link.sender.seal_record(RecordType.DATA, body, flags)


def test_a_compressed_record_nobody_asked_for_is_a_protocol_error() -> None:
    link = pair(TEXT, decompress=False)
    body = encode_prefix(4096) + frame(TEXT[:4096])
    link.send(link.sender, sealed_data(link, body, FLAG_COMPRESSED))
    with pytest.raises(RemoteProtocolError, match="not told it may"):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED


def test_a_zip_bomb_record_is_refused_before_it_inflates() -> None:
    """A record stating the 128 KiB left in the offer whose frame holds 64 MiB."""
    link = pair(bytes(128 * 1024))
    body = encode_prefix(128 * 1024) + frame(bytes(64 << 20))
    link.send(link.sender, sealed_data(link, body, FLAG_COMPRESSED | FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="does not state"):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED and link.receiver.received == 0


def test_a_compressed_record_past_the_offered_size_is_refused() -> None:
    link = pair(TEXT[:1000])
    body = encode_prefix(2000) + frame(TEXT[:2000])
    link.send(link.sender, sealed_data(link, body, FLAG_COMPRESSED | FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="outside 1 to 1000"):
        link.events(link.receiver)


def test_a_stream_may_not_state_more_than_the_record_cap() -> None:
    offer = messages.Offer(messages.KIND_STREAM, "stdin", messages.UNKNOWN_SIZE)
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS, compress=True),
        ReceiverSession(PASSWORD, TIMEOUTS),
    )
    link.pair()
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    link.events(link.sender)
    body = encode_prefix(MAX_DATA_PAYLOAD + 1) + frame(bytes(MAX_DATA_PAYLOAD + 1))
    link.send(link.sender, sealed_data(link, body, FLAG_COMPRESSED))
    with pytest.raises(RemoteProtocolError, match="outside"):
        link.events(link.receiver)


def test_compressor_output_inflates_with_the_inflater() -> None:
    raw = memoryview(TEXT[:100_000])
    packed = Compressor().compress(raw)
    assert Inflater().inflate(memoryview(packed), len(raw)) == bytes(raw)
    assert compression.MAX_RATIO * len(packed) >= len(raw)
