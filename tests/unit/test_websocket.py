"""Unit tests for ferry.protocol.websocket: handshake, frame encoding and FrameDecoder."""

from __future__ import annotations

import base64
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import HttpError, RemoteProtocolError, WebSocketError
from ferry.protocol.http import parse_request
from ferry.protocol.websocket import (
    SUBPROTOCOL,
    CloseCode,
    CloseReceived,
    DataReceived,
    Event,
    FrameDecoder,
    Opcode,
    PingReceived,
    PongReceived,
    accept_key,
    encode_close,
    encode_frame,
    frame_header,
    handshake_response,
)

MASK = b"\x37\xfa\x21\x3d"


def drain(decoder: FrameDecoder) -> list[Event]:
    events: list[Event] = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


def decode_whole(data: bytes, max_frame: int = 1 << 20) -> list[Event]:
    decoder = FrameDecoder(max_frame)
    decoder.receive_data(data)
    return drain(decoder)


def decode_bytewise(data: bytes, max_frame: int = 1 << 20) -> list[Event]:
    decoder = FrameDecoder(max_frame)
    events: list[Event] = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        events.extend(drain(decoder))
    return events


def payload_of(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


def client_frame(first: int, payload: bytes, mask: bytes | None = MASK) -> bytes:
    """A frame with a hand-set first byte (FIN/RSV/opcode), masked like a browser's."""
    length = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


# Handshake


def upgrade_request(**overrides: str) -> bytes:
    headers = {
        "Host": "relay.example.com",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": "https://relay.example.com",
    }
    headers.update(overrides)
    lines = ["GET /ws HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_accept_key_matches_the_rfc_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_response_switches_protocols() -> None:
    answer = handshake_response(parse_request(upgrade_request()))
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert b"Content-Length" not in answer
    assert answer.endswith(b"\r\n\r\n")


def test_handshake_echoes_only_ferry_subprotocol() -> None:
    offered = handshake_response(
        parse_request(upgrade_request(**{"Sec-WebSocket-Protocol": f"chat, {SUBPROTOCOL}"}))
    )
    assert f"Sec-WebSocket-Protocol: {SUBPROTOCOL}".encode() in offered
    other = handshake_response(parse_request(upgrade_request(**{"Sec-WebSocket-Protocol": "x"})))
    assert b"Sec-WebSocket-Protocol" not in other


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"Sec-WebSocket-Version": "8"}, 426),
        ({"Sec-WebSocket-Key": "short"}, 400),
        ({"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}, 400),
        ({"Sec-WebSocket-Key": ""}, 400),
        ({"Connection": "keep-alive"}, 400),
        ({"Upgrade": "h2c"}, 400),
    ],
)
def test_bad_upgrade_requests_get_a_status(overrides: dict[str, str], status: int) -> None:
    with pytest.raises(HttpError) as caught:
        handshake_response(parse_request(upgrade_request(**overrides)))
    assert caught.value.status == status


# Encoding


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_encode_frame_length_forms_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = encode_frame(Opcode.BINARY, payload, mask=MASK)
    events = decode_whole(frame)
    assert payload_of(events) == payload
    assert events[-1] == DataReceived(events[-1].data, message_finished=True)  # type: ignore[union-attr]


def test_server_frames_are_unmasked_and_final() -> None:
    assert encode_frame(Opcode.BINARY, b"hi") == b"\x82\x02hi"
    assert encode_close(CloseCode.NORMAL, "bye") == b"\x88\x05\x03\xe8bye"


def test_control_frames_over_125_bytes_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="125"):
        encode_frame(Opcode.PING, bytes(126))


# Decoding


def test_control_frames_between_fragments_are_delivered_in_order() -> None:
    data = (
        client_frame(0x02, b"abc")
        + client_frame(0x89, b"are you there")
        + client_frame(0x00, b"def")
        + client_frame(0x8A, b"")
        + client_frame(0x80, b"gh")
    )
    for events in (decode_whole(data), decode_bytewise(data)):
        assert [e for e in events if not isinstance(e, DataReceived)] == [
            PingReceived(b"are you there"),
            PongReceived(b""),
        ]
        assert payload_of(events) == b"abcdefgh"
        finished = [e for e in events if isinstance(e, DataReceived) and e.message_finished]
        assert len(finished) == 1 and events[-1] in finished


def test_close_frame_reports_code_and_reason_then_refuses_more() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(client_frame(0x88, struct.pack("!H", 1001) + "bye ☃".encode()))
    assert drain(decoder) == [CloseReceived(1001, "bye ☃")]
    assert decoder.closed
    with pytest.raises(WebSocketError):
        decoder.receive_data(client_frame(0x82, b"late"))


def test_empty_close_frame_has_no_code() -> None:
    assert decode_whole(client_frame(0x88, b"")) == [CloseReceived(None, "")]


def test_payload_is_handed_out_as_it_arrives_not_buffered_whole() -> None:
    frame = client_frame(0x82, bytes(100_000))
    decoder = FrameDecoder()
    decoder.receive_data(frame[:1000])
    first = drain(decoder)
    assert first and not first[-1].message_finished  # type: ignore[union-attr]
    assert (
        len(payload_of(first)) == 1000 - 14
    )  # minus 2 + 8 header bytes (64-bit length) and the mask
    decoder.receive_data(frame[1000:])
    assert len(payload_of(first + drain(decoder))) == 100_000


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x82, b"x", mask=None), CloseCode.PROTOCOL_ERROR),
        (client_frame(0xC2, b"x"), CloseCode.PROTOCOL_ERROR),  # RSV1
        (client_frame(0x83, b"x"), CloseCode.PROTOCOL_ERROR),  # reserved opcode
        (client_frame(0x81, b"text"), CloseCode.UNSUPPORTED_DATA),
        (client_frame(0x80, b"x"), CloseCode.PROTOCOL_ERROR),  # continuation first
        (client_frame(0x09, b"x"), CloseCode.PROTOCOL_ERROR),  # fragmented ping
        (client_frame(0x89, bytes(126)), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x82, bytes(2000)), CloseCode.MESSAGE_TOO_BIG),
        (client_frame(0x02, b"a") + client_frame(0x82, b"b"), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x88, b"\x03"), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x88, struct.pack("!H", 1005)), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x88, struct.pack("!H", 999)), CloseCode.PROTOCOL_ERROR),
        (client_frame(0x88, b"\x03\xe8\xff"), CloseCode.INVALID_PAYLOAD),
        (b"\x82\xfe\x00\x05" + MASK + b"12345", CloseCode.PROTOCOL_ERROR),  # non-minimal 16
        (b"\x82\xff" + struct.pack("!Q", 1 << 63) + MASK, CloseCode.PROTOCOL_ERROR),
    ],
)
def test_protocol_breaches_carry_their_close_code(frame: bytes, code: CloseCode) -> None:
    for decode in (decode_whole, decode_bytewise):
        with pytest.raises(WebSocketError) as caught:
            decode(frame, 1024)
        assert caught.value.code == code


@given(
    pieces=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    mask=st.binary(min_size=4, max_size=4),
)
def test_fragmented_messages_round_trip_whole_and_bytewise(
    pieces: list[bytes], mask: bytes
) -> None:
    frames = b""
    for i, piece in enumerate(pieces):
        opcode = 0x02 if i == 0 else 0x00
        fin = 0x80 if i == len(pieces) - 1 else 0
        frames += client_frame(fin | opcode, piece, mask)
    for events in (decode_whole(frames), decode_bytewise(frames)):
        assert payload_of(events) == b"".join(pieces)
        assert sum(1 for e in events if isinstance(e, DataReceived) and e.message_finished) == 1


@given(
    payload=st.binary(max_size=600),
    mask=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=620), max_size=8),
)
def test_unmasking_matches_per_byte_xor_wherever_the_reads_split(
    payload: bytes, mask: bytes, cuts: list[int]
) -> None:
    # Reads that end anywhere (mid-header, at every mask phase, at the frame's
    # end) each hand out their piece unmasked from its own offset in the mask.
    stream = client_frame(0x82, payload, mask) + client_frame(0x82, payload[::-1], mask)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = FrameDecoder()
    events: list[Event] = []
    for start, end in itertools.pairwise(bounds):
        decoder.receive_data(stream[start:end])
        events.extend(drain(decoder))
    assert payload_of(events) == payload + payload[::-1]
    assert sum(1 for e in events if isinstance(e, DataReceived) and e.message_finished) == 2


@given(size=st.integers(min_value=0, max_value=1 << 17), masked=st.booleans())
def test_frame_header_is_encode_frames_head(size: int, masked: bool) -> None:
    mask = MASK if masked else None
    head = frame_header(Opcode.BINARY, size, masked=masked)
    assert encode_frame(Opcode.BINARY, bytes(size), mask=mask)[: len(head)] == head
    assert len(head) + (4 if masked else 0) <= 14  # MAX_HEADER


@given(st.binary(max_size=400))
def test_garbage_gives_events_or_a_websocket_error_never_anything_else(data: bytes) -> None:
    for decode in (decode_whole, decode_bytewise):
        try:
            decode(data, 256)
        except WebSocketError:
            pass
        except RemoteProtocolError as error:  # pragma: no cover - would be a bug
            pytest.fail(f"not a WebSocketError: {error!r}")


# A client's view (tests and benchmarks acting as a browser): FrameDecoder(masked=False).


def test_client_decoder_reads_server_frames_whole_and_bytewise() -> None:
    stream = (
        encode_frame(Opcode.BINARY, b"PAIRED\n")
        + encode_frame(Opcode.PING, b"p")
        + encode_frame(Opcode.BINARY, bytes(70_000))
        + encode_close(CloseCode.GOING_AWAY)
    )
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        decoder = FrameDecoder(1 << 20, masked=False)
        events: list[Event] = []
        for piece in pieces:
            decoder.receive_data(piece)
            events.extend(drain(decoder))
        assert payload_of(events) == b"PAIRED\n" + bytes(70_000)
        assert PingReceived(b"p") in events
        assert events[-1] == CloseReceived(CloseCode.GOING_AWAY, "")


def test_client_decoder_refuses_a_masked_frame() -> None:
    decoder = FrameDecoder(masked=False)
    decoder.receive_data(encode_frame(Opcode.BINARY, b"x", mask=MASK))
    with pytest.raises(WebSocketError) as refused:
        decoder.next_event()
    assert refused.value.code == CloseCode.PROTOCOL_ERROR


def test_masked_close_from_a_client_reads_back() -> None:
    assert decode_whole(encode_close(CloseCode.NORMAL, "bye", mask=MASK)) == [
        CloseReceived(1000, "bye")
    ]
