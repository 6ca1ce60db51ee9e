"""Unit tests for ferry.protocol.records: header framing, parse_header and RecordDecoder."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.errors import RemoteProtocolError
from ferry.protocol.records import (
    FLAG_COMPRESSED,
    FLAG_FINAL,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    MAX_HANDSHAKE_LENGTH,
    MAX_MESSAGE_PAYLOAD,
    MAX_SEALED_LENGTH,
    TAG_SIZE,
    UNSEALED_TYPES,
    Header,
    Record,
    RecordDecoder,
    RecordType,
    encode_record,
    max_length,
    parse_header,
)

ALL_TYPES = list(RecordType)
SEALED_TYPES = [t for t in RecordType if t not in UNSEALED_TYPES]
MESSAGE_TYPES = [RecordType.OFFER, RecordType.ANSWER, RecordType.ACK, RecordType.ABORT]
LARGEST_CAP = max(max_length(t) for t in RecordType)


def raw_header(length: int, record_type: int, flags: int = 0) -> bytes:
    return struct.pack("!IBB", length, record_type, flags)


def decode_whole(data: bytes) -> list[Record]:
    decoder = RecordDecoder()
    decoder.receive_data(data)
    return drain(decoder)


def decode_bytewise(data: bytes) -> list[Record]:
    decoder = RecordDecoder()
    records: list[Record] = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        records.extend(drain(decoder))
    return records


def drain(decoder: RecordDecoder) -> list[Record]:
    records: list[Record] = []
    while (record := decoder.next_record()) is not None:
        # A body is a view into the decoder's buffer, valid until it receives more.
        records.append(Record(record.header, bytes(record.body)))
    return records


DECODERS: list[Callable[[bytes], list[Record]]] = [decode_whole, decode_bytewise]
decoders = pytest.mark.parametrize("decode", DECODERS, ids=["whole", "bytewise"])


@st.composite
def valid_records(draw: st.DrawFn, max_body: int = 300) -> tuple[RecordType, int, bytes]:
    """A record type, flags and body that parse_header accepts (bodies kept small for speed)."""
    record_type = draw(st.sampled_from(ALL_TYPES))
    flags = draw(st.sampled_from([0, FLAG_FINAL])) if record_type is RecordType.DATA else 0
    min_size = 0 if record_type in UNSEALED_TYPES else TAG_SIZE
    body = draw(st.binary(min_size=min_size, max_size=max(min_size, max_body)))
    return record_type, flags, body


# --- constants and caps ----------------------------------------------------------------------


def test_header_size_is_six_bytes() -> None:
    assert HEADER_SIZE == 6


@pytest.mark.parametrize(
    ("record_type", "cap"),
    [
        (RecordType.PAKE, MAX_HANDSHAKE_LENGTH),
        (RecordType.CONFIRM, MAX_HANDSHAKE_LENGTH),
        (RecordType.OFFER, MAX_MESSAGE_PAYLOAD + TAG_SIZE),
        (RecordType.ANSWER, MAX_MESSAGE_PAYLOAD + TAG_SIZE),
        (RecordType.ACK, MAX_MESSAGE_PAYLOAD + TAG_SIZE),
        (RecordType.ABORT, MAX_MESSAGE_PAYLOAD + TAG_SIZE),
        (RecordType.DATA, MAX_DATA_PAYLOAD + TAG_SIZE),
    ],
)
def test_max_length_each_type_gives_documented_cap(record_type: RecordType, cap: int) -> None:
    assert max_length(record_type) == cap


def test_max_length_no_type_exceeds_max_sealed_length() -> None:
    assert LARGEST_CAP == MAX_SEALED_LENGTH


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_header_sealed_property_is_false_only_for_pake_and_confirm(
    record_type: RecordType,
) -> None:
    header = Header(TAG_SIZE, record_type, 0)
    assert header.sealed == (record_type not in {RecordType.PAKE, RecordType.CONFIRM})


def test_header_final_property_reflects_final_flag() -> None:
    assert Header(TAG_SIZE, RecordType.DATA, FLAG_FINAL).final
    assert not Header(TAG_SIZE, RecordType.DATA, 0).final


def test_header_encode_gives_big_endian_length_then_type_then_flags() -> None:
    header = Header(0x01020304, RecordType.DATA, FLAG_FINAL)
    assert header.encode() == b"\x01\x02\x03\x04\x12\x01"


# --- parse_header ----------------------------------------------------------------------------


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_parse_header_at_exact_cap_is_accepted(record_type: RecordType) -> None:
    header = parse_header(raw_header(max_length(record_type), record_type))
    assert header == Header(max_length(record_type), record_type, 0)


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_parse_header_with_oversized_length_raises_remote_protocol_error(
    record_type: RecordType,
) -> None:
    with pytest.raises(RemoteProtocolError, match="too large"):
        parse_header(raw_header(max_length(record_type) + 1, record_type))


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_parse_header_with_maximum_u32_length_raises_remote_protocol_error(
    record_type: RecordType,
) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_header(raw_header(0xFFFFFFFF, record_type))


@pytest.mark.parametrize("raw_type", [0, 3, 15, 27, 255])
def test_parse_header_with_unknown_type_raises_remote_protocol_error(raw_type: int) -> None:
    with pytest.raises(RemoteProtocolError, match="unknown record type"):
        parse_header(raw_header(TAG_SIZE, raw_type))


@pytest.mark.parametrize("flags", [0x04, 0x80, 0xFF, 0x07])
def test_parse_header_data_with_unknown_flags_raises_remote_protocol_error(flags: int) -> None:
    with pytest.raises(RemoteProtocolError, match="flags"):
        parse_header(raw_header(TAG_SIZE, RecordType.DATA, flags))


@pytest.mark.parametrize("flags", [FLAG_COMPRESSED, FLAG_COMPRESSED | FLAG_FINAL])
def test_parse_header_data_with_compressed_flag_is_compressed(flags: int) -> None:
    header = parse_header(raw_header(TAG_SIZE, RecordType.DATA, flags))
    assert header.compressed and header.final == bool(flags & FLAG_FINAL)


@pytest.mark.parametrize("record_type", [t for t in ALL_TYPES if t is not RecordType.DATA])
def test_parse_header_non_data_with_compressed_flag_raises_remote_protocol_error(
    record_type: RecordType,
) -> None:
    with pytest.raises(RemoteProtocolError, match="only DATA"):
        parse_header(raw_header(TAG_SIZE, record_type, FLAG_COMPRESSED))


@pytest.mark.parametrize("record_type", [t for t in ALL_TYPES if t is not RecordType.DATA])
def test_parse_header_non_data_with_final_flag_raises_remote_protocol_error(
    record_type: RecordType,
) -> None:
    with pytest.raises(RemoteProtocolError, match="only DATA"):
        parse_header(raw_header(TAG_SIZE, record_type, FLAG_FINAL))


@pytest.mark.parametrize("record_type", SEALED_TYPES)
@pytest.mark.parametrize("length", [0, 1, TAG_SIZE - 1])
def test_parse_header_sealed_type_shorter_than_tag_raises_remote_protocol_error(
    record_type: RecordType, length: int
) -> None:
    with pytest.raises(RemoteProtocolError, match="too short"):
        parse_header(raw_header(length, record_type))


@pytest.mark.parametrize("record_type", sorted(UNSEALED_TYPES))
def test_parse_header_unsealed_type_with_empty_body_is_accepted(record_type: RecordType) -> None:
    assert parse_header(raw_header(0, record_type)) == Header(0, record_type, 0)


def test_parse_header_data_final_at_tag_size_is_accepted() -> None:
    header = parse_header(raw_header(TAG_SIZE, RecordType.DATA, FLAG_FINAL))
    assert header == Header(TAG_SIZE, RecordType.DATA, FLAG_FINAL)
    assert header.final and header.sealed


def test_parse_header_accepts_bytearray_and_memoryview() -> None:
    data = raw_header(TAG_SIZE, RecordType.OFFER)
    assert parse_header(bytearray(data)) == parse_header(memoryview(data)) == parse_header(data)


@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_parse_header_any_six_bytes_returns_header_that_reencodes_or_raises_remote_protocol_error(
    data: bytes,
) -> None:
    try:
        header = parse_header(data)
    except RemoteProtocolError:
        return
    assert header.encode() == data
    assert header.length <= max_length(header.type)


@given(
    st.sampled_from(ALL_TYPES),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.integers(min_value=0, max_value=0xFF),
)
def test_parse_header_any_length_and_flags_accepted_only_within_rules(
    record_type: RecordType, length: int, flags: int
) -> None:
    valid = (
        length <= max_length(record_type)
        and (record_type in UNSEALED_TYPES or length >= TAG_SIZE)
        and (flags == 0 or (record_type is RecordType.DATA and flags == FLAG_FINAL))
    )
    data = raw_header(length, record_type, flags)
    if valid:
        assert parse_header(data) == Header(length, record_type, flags)
    else:
        with pytest.raises(RemoteProtocolError):
            parse_header(data)


# --- encode_record ---------------------------------------------------------------------------


def test_encode_record_gives_header_then_body() -> None:
    assert encode_record(RecordType.PAKE, b"abc") == b"\x00\x00\x00\x03\x01\x00abc"


def test_encode_record_with_final_flag_sets_flag_byte() -> None:
    body = bytes(TAG_SIZE)
    assert encode_record(RecordType.DATA, body, FLAG_FINAL) == raw_header(16, 18, 1) + body


@pytest.mark.parametrize("record_type", [RecordType.PAKE, RecordType.OFFER])
def test_encode_record_body_over_cap_raises_value_error(record_type: RecordType) -> None:
    with pytest.raises(ValueError, match="exceeds the cap"):
        encode_record(record_type, bytes(max_length(record_type) + 1))


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_encode_record_body_at_cap_is_decoded_back(record_type: RecordType) -> None:
    body = bytes(range(256)) * (max_length(record_type) // 256) + b"\x07" * (
        max_length(record_type) % 256
    )
    assert decode_whole(encode_record(record_type, body)) == [
        Record(Header(len(body), record_type, 0), body)
    ]


# --- RecordDecoder: round trips --------------------------------------------------------------


@decoders
def test_record_decoder_two_records_and_partial_third_gives_two_records(
    decode: Callable[[bytes], list[Record]],
) -> None:
    first = encode_record(RecordType.PAKE, b"hello")
    second = encode_record(RecordType.DATA, bytes(TAG_SIZE + 3), FLAG_FINAL)
    partial = encode_record(RecordType.CONFIRM, b"xyz")[:-1]
    assert decode(first + second + partial) == [
        Record(Header(5, RecordType.PAKE, 0), b"hello"),
        Record(Header(TAG_SIZE + 3, RecordType.DATA, FLAG_FINAL), bytes(TAG_SIZE + 3)),
    ]


def test_record_decoder_empty_input_returns_none() -> None:
    decoder = RecordDecoder()
    assert decoder.next_record() is None
    decoder.receive_data(b"")
    assert decoder.next_record() is None
    assert decoder.buffered == 0


def test_record_decoder_header_only_then_body_in_pieces_returns_record_at_last_byte() -> None:
    body = bytes(range(40))
    wire = encode_record(RecordType.OFFER, body)
    decoder = RecordDecoder()
    decoder.receive_data(wire[:HEADER_SIZE])
    assert decoder.next_record() is None
    assert decoder.buffered == 0
    decoder.receive_data(wire[HEADER_SIZE:-1])
    assert decoder.next_record() is None
    assert decoder.buffered == len(body) - 1
    decoder.receive_data(wire[-1:])
    assert decoder.next_record() == Record(Header(len(body), RecordType.OFFER, 0), body)
    assert decoder.buffered == 0
    assert decoder.next_record() is None


def test_record_decoder_bytes_after_record_stay_buffered() -> None:
    decoder = RecordDecoder()
    decoder.receive_data(encode_record(RecordType.PAKE, b"a") + b"\x00\x00")
    assert decoder.next_record() == Record(Header(1, RecordType.PAKE, 0), b"a")
    assert decoder.next_record() is None
    assert decoder.buffered == 2


def test_record_decoder_empty_unsealed_record_is_returned() -> None:
    assert decode_whole(encode_record(RecordType.CONFIRM, b"")) == [
        Record(Header(0, RecordType.CONFIRM, 0), b"")
    ]


@given(st.lists(valid_records(), max_size=6))
def test_record_decoder_encoded_records_whole_and_bytewise_give_same_records(
    specs: list[tuple[RecordType, int, bytes]],
) -> None:
    wire = b"".join(encode_record(t, body, flags) for t, flags, body in specs)
    expected = [Record(Header(len(body), t, flags), body) for t, flags, body in specs]
    assert decode_whole(wire) == expected
    assert decode_bytewise(wire) == expected


@given(st.lists(valid_records(), min_size=1, max_size=6), st.data())
def test_record_decoder_encoded_records_in_random_chunks_give_same_records(
    specs: list[tuple[RecordType, int, bytes]], data: st.DataObject
) -> None:
    wire = b"".join(encode_record(t, body, flags) for t, flags, body in specs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = RecordDecoder()
    records: list[Record] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoder.receive_data(wire[start:end])
        records.extend(drain(decoder))
    assert records == [Record(Header(len(body), t, flags), body) for t, flags, body in specs]
    assert decoder.buffered == 0


# --- RecordDecoder: hostile input ------------------------------------------------------------


@pytest.mark.parametrize("record_type", ALL_TYPES)
def test_record_decoder_header_announcing_too_much_fails_before_body_arrives(
    record_type: RecordType,
) -> None:
    decoder = RecordDecoder()
    decoder.receive_data(raw_header(max_length(record_type) + 1, record_type))
    with pytest.raises(RemoteProtocolError):
        decoder.next_record()


@decoders
def test_record_decoder_unknown_type_raises_remote_protocol_error(
    decode: Callable[[bytes], list[Record]],
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(encode_record(RecordType.PAKE, b"ok") + raw_header(0, 99))


@decoders
def test_record_decoder_http_request_raises_remote_protocol_error(
    decode: Callable[[bytes], list[Record]],
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@given(
    st.sampled_from(ALL_TYPES),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.integers(min_value=0, max_value=1),
)
def test_record_decoder_oversized_header_fed_bytewise_raises_at_sixth_byte(
    record_type: RecordType, excess: int, flags: int
) -> None:
    length = min(max_length(record_type) + 1 + excess, 0xFFFFFFFF)
    header = raw_header(length, record_type, flags if record_type is RecordType.DATA else 0)
    decoder = RecordDecoder()
    for i in range(HEADER_SIZE - 1):
        decoder.receive_data(header[i : i + 1])
        assert decoder.next_record() is None
    decoder.receive_data(header[-1:])
    with pytest.raises(RemoteProtocolError):
        decoder.next_record()


@given(st.binary(max_size=400))
def test_record_decoder_any_bytes_whole_and_bytewise_agree_or_both_raise_remote_protocol_error(
    data: bytes,
) -> None:
    outcomes = []
    for decode in DECODERS:
        try:
            outcomes.append(decode(data))
        except RemoteProtocolError:
            outcomes.append(None)
    assert outcomes[0] == outcomes[1]


@given(
    st.lists(
        st.one_of(
            valid_records(max_body=40).map(lambda spec: encode_record(spec[0], spec[2], spec[1])),
            st.binary(max_size=12),
        ),
        max_size=6,
    ).map(b"".join)
)
@settings(max_examples=200)
def test_record_decoder_mixed_records_and_garbage_fed_bytewise_gives_capped_records_or_raises(
    data: bytes,
) -> None:
    decoder = RecordDecoder()
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        try:
            for record in drain(decoder):
                assert record.header.length == len(record.body) <= max_length(record.header.type)
        except RemoteProtocolError:
            return
        assert decoder.buffered < LARGEST_CAP


@given(
    record_type=st.sampled_from(ALL_TYPES),
    length=st.one_of(
        st.integers(0, 2 * MAX_HANDSHAKE_LENGTH),
        st.integers(MAX_MESSAGE_PAYLOAD, MAX_MESSAGE_PAYLOAD + 2 * TAG_SIZE),
        st.integers(MAX_SEALED_LENGTH - 2, MAX_SEALED_LENGTH + 2),
        st.integers(0, 0xFFFFFFFF),
    ),
    sent=st.integers(0, 80),
)
def test_record_decoder_any_header_fed_bytewise_fails_at_header_or_holds_at_most_announced_body(
    record_type: RecordType, length: int, sent: int
) -> None:
    acceptable = length <= max_length(record_type) and (
        record_type in UNSEALED_TYPES or length >= TAG_SIZE
    )
    decoder = RecordDecoder()
    header = raw_header(length, record_type)
    for i in range(HEADER_SIZE - 1):
        decoder.receive_data(header[i : i + 1])
        assert decoder.next_record() is None
    decoder.receive_data(header[-1:])
    if not acceptable:
        with pytest.raises(RemoteProtocolError):
            decoder.next_record()
        return
    record = decoder.next_record()
    for i in range(min(sent, length)):
        assert record is None
        assert decoder.buffered == i < length <= max_length(record_type)
        decoder.receive_data(b"\xab")
        record = decoder.next_record()
    if sent >= length:
        assert record == Record(Header(length, record_type, 0), b"\xab" * length)
    else:
        assert record is None


# --- RecordDecoder: the zero-copy path (writable + commit) -----------------------------------


def decode_into(wire: bytes, sizes: list[int]) -> list[Record]:
    """Feed like recv_into does: at most `size` bytes straight into writable() each time."""
    decoder = RecordDecoder()
    records: list[Record] = []
    at, i = 0, 0
    while at < len(wire):
        space = decoder.writable()
        n = min(len(space), sizes[i % len(sizes)], len(wire) - at)
        space[:n] = wire[at : at + n]
        decoder.commit(n)
        at, i = at + n, i + 1
        records.extend(drain(decoder))
    return records


@given(
    st.lists(valid_records(), min_size=1, max_size=6),
    st.lists(st.integers(1, 700), min_size=1, max_size=5),
)
def test_record_decoder_writable_commit_gives_same_records_as_receive_data(
    specs: list[tuple[RecordType, int, bytes]], sizes: list[int]
) -> None:
    wire = b"".join(encode_record(t, body, flags) for t, flags, body in specs)
    assert decode_into(wire, sizes) == decode_whole(wire)


def test_record_decoder_grows_to_fit_the_largest_record_and_no_further() -> None:
    body = bytes(MAX_SEALED_LENGTH)
    wire = encode_record(RecordType.DATA, body) * 3
    assert [len(r.body) for r in decode_into(wire, [1 << 20])] == [MAX_SEALED_LENGTH] * 3
    decoder = RecordDecoder()
    at = 0
    while at < len(wire):
        space = decoder.writable()
        assert len(space) <= RecordDecoder.MAX_BUFFER
        n = min(len(space), len(wire) - at)
        space[:n] = wire[at : at + n]
        decoder.commit(n)
        at += n
        while decoder.next_record() is not None:
            pass


def test_record_decoder_commit_beyond_writable_space_is_refused() -> None:
    decoder = RecordDecoder()
    space = decoder.writable()
    with pytest.raises(ValueError):
        decoder.commit(len(space) + 1)


def test_record_decoder_full_of_undrained_records_refuses_more_instead_of_growing() -> None:
    decoder = RecordDecoder()
    record = encode_record(RecordType.PAKE, bytes(MAX_HANDSHAKE_LENGTH))
    with pytest.raises(ValueError, match="next_record"):
        decoder.receive_data(record * (RecordDecoder.MAX_BUFFER // len(record) + 2))


def test_record_decoder_body_view_is_in_place_not_a_copy() -> None:
    decoder = RecordDecoder()
    decoder.receive_data(encode_record(RecordType.PAKE, b"abc"))
    record = decoder.next_record()
    assert record is not None and isinstance(record.body, memoryview)
    assert bytes(record.body) == b"abc"
