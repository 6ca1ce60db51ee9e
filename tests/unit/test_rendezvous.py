"""Unit tests for ferry.protocol.rendezvous: relay handshake lines and LineBuffer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.config import MAX_HELLO_BYTES
from ferry.errors import BadRequest, RemoteProtocolError
from ferry.protocol import rendezvous as rv
from ferry.protocol.records import FLAG_FINAL, MAX_HANDSHAKE_LENGTH, Header, RecordType
from ferry.protocol.rendezvous import (
    MAX_LINE,
    TICKET_HEX_LEN,
    ClientMessage,
    Incoming,
    JoinRequest,
    LineBuffer,
    NameplateAssigned,
    Paired,
    Ping,
    Pong,
    ReceiveRequest,
    Refused,
    RelayMessage,
    SendRequest,
    StandbyTicket,
    encode,
    parse_client_line,
    parse_relay_line,
)
from tests.unit.test_weblink import web_urls

TICKET = "0123456789abcdef" * 2
WEB_URL = "https://relay.example:9021/"

nameplates = st.integers(min_value=1, max_value=999_999_999)
tickets = st.text(alphabet="0123456789abcdef", min_size=TICKET_HEX_LEN, max_size=TICKET_HEX_LEN)
reasons = st.from_regex(r"[a-z][a-z-]{0,31}", fullmatch=True)
# Printable ASCII short enough that "ERROR <reason> <text>\n" fits in MAX_LINE.
refusal_texts = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)

client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.just(SendRequest()),
    st.just(SendRequest(standby=True)),
    st.just(SendRequest(web=True)),
    st.just(SendRequest(standby=True, web=True)),
    st.builds(ReceiveRequest, nameplates),
    st.builds(JoinRequest, nameplates, tickets),
    st.just(Pong()),
)
relay_messages: st.SearchStrategy[RelayMessage] = st.one_of(
    st.builds(NameplateAssigned, nameplates),
    st.builds(NameplateAssigned, nameplates, web_urls),
    st.builds(Incoming, tickets),
    st.builds(StandbyTicket, tickets),
    st.just(Paired()),
    st.just(Ping()),
    st.builds(Refused, reasons, refusal_texts),
)


def feed_whole(data: bytes) -> list[bytes]:
    buffer = LineBuffer()
    buffer.receive_data(data)
    return drain(buffer)


def feed_bytewise(data: bytes) -> list[bytes]:
    buffer = LineBuffer()
    lines: list[bytes] = []
    for i in range(len(data)):
        buffer.receive_data(data[i : i + 1])
        lines.extend(drain(buffer))
    return lines


def drain(buffer: LineBuffer) -> list[bytes]:
    lines: list[bytes] = []
    while (line := buffer.next_line()) is not None:
        lines.append(line)
    return lines


FEEDERS: list[Callable[[bytes], list[bytes]]] = [feed_whole, feed_bytewise]
feeders = pytest.mark.parametrize("feed", FEEDERS, ids=["whole", "bytewise"])


def test_max_line_agrees_with_config_max_hello_bytes() -> None:
    assert MAX_HELLO_BYTES == MAX_LINE


# --- encode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (SendRequest(), b"FERRY 1 SEND\n"),
        (SendRequest(standby=True), b"FERRY 1 SEND STANDBY\n"),
        (SendRequest(web=True), b"FERRY 1 SEND WEB\n"),
        (SendRequest(standby=True, web=True), b"FERRY 1 SEND STANDBY WEB\n"),
        (ReceiveRequest(7), b"FERRY 1 RECV 7\n"),
        (JoinRequest(7, TICKET), b"FERRY 1 JOIN 7 " + TICKET.encode() + b"\n"),
        (Pong(), b"PONG\n"),
        (NameplateAssigned(42), b"NAMEPLATE 42\n"),
        (NameplateAssigned(42, WEB_URL), b"NAMEPLATE 42 " + WEB_URL.encode() + b"\n"),
        (Incoming(TICKET), b"INCOMING " + TICKET.encode() + b"\n"),
        (StandbyTicket(TICKET), b"TICKET " + TICKET.encode() + b"\n"),
        (Paired(), b"PAIRED\n"),
        (Ping(), b"PING\n"),
        (Refused("busy", "relay busy"), b"ERROR busy relay busy\n"),
    ],
)
def test_encode_each_message_type_gives_documented_wire_line(
    message: ClientMessage | RelayMessage, wire: bytes
) -> None:
    assert encode(message) == wire


def test_encode_refused_with_control_and_non_ascii_text_replaces_them_with_question_marks() -> None:
    wire = encode(Refused("bad-request", "caf\u00e9\nline\x00two\x7f"))
    assert wire == b"ERROR bad-request caf??line?two?\n"
    assert parse_relay_line(wire) == Refused("bad-request", "caf??line?two?")


def test_encode_refused_with_overlong_text_is_cut_to_max_line_and_still_parses() -> None:
    wire = encode(Refused("timeout", "x" * 1000))
    assert len(wire) == MAX_LINE
    assert wire.endswith(b"\n")
    parsed = parse_relay_line(wire)
    assert isinstance(parsed, Refused)
    assert parsed.reason == "timeout"
    assert parsed.text == "x" * (MAX_LINE - 1 - len("ERROR timeout "))


@given(st.one_of(client_messages, relay_messages, st.builds(Refused, reasons, st.text())))
def test_encode_any_message_gives_one_lf_terminated_ascii_line_within_max_line(
    message: ClientMessage | RelayMessage,
) -> None:
    wire = encode(message)
    assert wire.endswith(b"\n")
    assert wire.count(b"\n") == 1
    assert len(wire) <= MAX_LINE
    assert wire.isascii()


# --- round trips -----------------------------------------------------------------------------


@given(client_messages)
def test_parse_client_line_of_encoded_client_message_gives_same_message(
    message: ClientMessage,
) -> None:
    assert parse_client_line(encode(message)) == message


@given(relay_messages)
def test_parse_relay_line_of_encoded_relay_message_gives_same_message(
    message: RelayMessage,
) -> None:
    assert parse_relay_line(encode(message)) == message


@pytest.mark.parametrize("nameplate", [1, 9, 10, 999_999_999])
def test_receive_request_nameplate_at_limits_round_trips(nameplate: int) -> None:
    assert parse_client_line(encode(ReceiveRequest(nameplate))) == ReceiveRequest(nameplate)
    assert parse_client_line(encode(JoinRequest(nameplate, TICKET))) == JoinRequest(
        nameplate, TICKET
    )
    assert parse_relay_line(encode(NameplateAssigned(nameplate))) == NameplateAssigned(nameplate)


@given(st.lists(client_messages, min_size=1, max_size=8), st.binary(max_size=40))
def test_line_buffer_encoded_client_messages_whole_and_bytewise_give_same_messages(
    messages: list[ClientMessage], rest: bytes
) -> None:
    rest = rest.replace(b"\n", b"")[: MAX_LINE - 1]
    wire = b"".join(encode(m) for m in messages) + rest
    for feed in FEEDERS:
        assert [parse_client_line(line) for line in feed(wire)] == messages


@given(st.lists(relay_messages, min_size=1, max_size=8))
def test_line_buffer_encoded_relay_messages_whole_and_bytewise_give_same_messages(
    messages: list[RelayMessage],
) -> None:
    wire = b"".join(encode(m) for m in messages)
    for feed in FEEDERS:
        assert [parse_relay_line(line) for line in feed(wire)] == messages


# --- parse_client_line: malformed input ------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"FERRY 1 SEND",  # no LF
        b"",
        b"\n",
        b"HELLO\n",
        b"GET / HTTP/1.1\n",
        b"FERRY\n",
        b"FERRY 1\n",
        b"ferry 1 SEND\n",
        b"FERRY 1 send\n",
        b"FERRY 1 SEND extra\n",
        b"FERRY 1 SEND \n",
        b"FERRY 1 SEND WEB STANDBY\n",
        b"FERRY 1 SEND STANDBY STANDBY\n",
        b"FERRY 1 SEND WEB WEB\n",
        b"FERRY 1 SEND STANDBY web\n",
        b"FERRY 1 SEND STANDBY WEB \n",
        b"FERRY 1 RECV 7 WEB\n",
        b"FERRY 1 RECV\n",
        b"FERRY 1 RECV 0\n",
        b"FERRY 1 RECV 007\n",
        b"FERRY 1 RECV -7\n",
        b"FERRY 1 RECV +7\n",
        b"FERRY 1 RECV 1000000000\n",
        b"FERRY 1 RECV 7 8\n",
        b"FERRY 1 RECV seven\n",
        b"FERRY 1 RECV \xd9\xa3\n",  # ARABIC-INDIC DIGIT THREE
        b"FERRY 1 JOIN 7\n",
        b"FERRY 1 JOIN 7 " + TICKET.upper().encode() + b"\n",
        b"FERRY 1 JOIN 7 " + TICKET[:-1].encode() + b"\n",
        b"FERRY 1 JOIN 7 " + TICKET.encode() + b"0\n",
        b"FERRY 1 JOIN 7 " + TICKET[:-1].encode() + b"g\n",
        b"FERRY 1 JOIN 0 " + TICKET.encode() + b"\n",
        b"FERRY 1 SEND\x00\n",
        b"FERRY 1 SEND\tx\n",
        b"FERRY 1 S\xc3\x89ND\n",
        b"\xff\xfe\n",
        b"PONG \n",
        b"pong\n",
        b"PING\n",
    ],
)
def test_parse_client_line_malformed_raises_bad_request_with_reason_bad_request(
    line: bytes,
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_client_line(line)
    assert caught.value.reason == rv.REASON_BAD_REQUEST


@pytest.mark.parametrize("version", [b"0", b"2", b"01", b"1.0", b"x", b"99999"])
def test_parse_client_line_other_version_raises_bad_request_with_reason_version(
    version: bytes,
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_client_line(b"FERRY " + version + b" SEND\n")
    assert caught.value.reason == rv.REASON_VERSION
    assert "1" in caught.value.message


def test_bad_request_is_a_remote_protocol_error() -> None:
    assert issubclass(BadRequest, RemoteProtocolError)


@given(st.binary(max_size=MAX_LINE + 8))
def test_parse_client_line_any_bytes_returns_message_or_raises_bad_request(line: bytes) -> None:
    try:
        message = parse_client_line(line)
    except BadRequest as exc:
        assert exc.reason in {rv.REASON_BAD_REQUEST, rv.REASON_VERSION}
    else:
        assert encode(message) == line


@given(
    st.lists(
        st.sampled_from(
            [
                "FERRY",
                "1",
                "2",
                "SEND",
                "STANDBY",
                "WEB",
                "RECV",
                "JOIN",
                "PONG",
                "7",
                "0",
                TICKET,
                "",
            ]
        ),
        max_size=6,
    ).map(lambda words: " ".join(words).encode() + b"\n")
)
def test_parse_client_line_near_valid_words_returns_message_or_raises_bad_request(
    line: bytes,
) -> None:
    try:
        message = parse_client_line(line)
    except BadRequest:
        return
    assert encode(message) == line


# --- parse_relay_line: malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"PAIRED",  # no LF
        b"",
        b"\n",
        b"HTTP/1.1 400 Bad Request\n",
        b"NAMEPLATE\n",
        b"NAMEPLATE 0\n",
        b"NAMEPLATE 07\n",
        b"NAMEPLATE 1000000000\n",
        b"NAMEPLATE 7 8\n",
        b"NAMEPLATE 7 ftp://relay.example/\n",
        b"NAMEPLATE 7 https://relay.example/#top\n",
        b"NAMEPLATE 7 https://user:pw@relay.example/\n",
        b"NAMEPLATE 7 https://relay.example/ more\n",
        b"NAMEPLATE 7  https://relay.example/\n",
        b"NAMEPLATE https://relay.example/\n",
        b"NAMEPLATE 0 https://relay.example/\n",
        b"INCOMING\n",
        b"INCOMING " + TICKET[:-1].encode() + b"\n",
        b"INCOMING " + TICKET.upper().encode() + b"\n",
        b"PAIRED now\n",
        b"PING PONG\n",
        b"paired\n",
        b"ERROR\n",
        b"ERROR Busy text\n",
        b"ERROR -busy text\n",
        b"ERROR " + b"a" * 33 + b" text\n",
        b"ERROR busy \x1b[31m\n",
        b"\xc3\xa9\n",
    ],
)
def test_parse_relay_line_malformed_raises_remote_protocol_error(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_relay_line(line)


def test_parse_relay_line_malformed_raises_plain_remote_protocol_error_not_bad_request() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_relay_line(b"\xff\n")
    assert type(caught.value) is RemoteProtocolError
    assert "malformed" in caught.value.message


def test_parse_relay_line_error_without_text_gives_empty_text() -> None:
    assert parse_relay_line(b"ERROR busy\n") == Refused("busy", "")


def test_parse_relay_line_error_text_keeps_inner_spacing() -> None:
    assert parse_relay_line(b"ERROR busy  two  spaces \n") == Refused("busy", " two  spaces ")


@given(st.binary(max_size=MAX_LINE + 8))
def test_parse_relay_line_any_bytes_returns_message_or_raises_remote_protocol_error(
    line: bytes,
) -> None:
    try:
        message = parse_relay_line(line)
    except RemoteProtocolError:
        return
    assert isinstance(message, NameplateAssigned | Incoming | Paired | Ping | Refused)


# --- LineBuffer ------------------------------------------------------------------------------


@feeders
def test_line_buffer_two_lines_and_partial_third_gives_two_lines_and_keeps_rest(
    feed: Callable[[bytes], list[bytes]],
) -> None:
    assert feed(b"PING\nPAIRED\nPAR") == [b"PING\n", b"PAIRED\n"]


def test_line_buffer_partial_line_returns_none_until_lf_arrives() -> None:
    buffer = LineBuffer()
    buffer.receive_data(b"FERRY 1 SE")
    assert buffer.next_line() is None
    assert len(buffer) == 10
    buffer.receive_data(b"ND\nrest")
    assert buffer.next_line() == b"FERRY 1 SEND\n"
    assert buffer.next_line() is None
    assert len(buffer) == 4


def test_line_buffer_take_rest_after_line_returns_early_pipe_bytes_and_empties() -> None:
    buffer = LineBuffer()
    buffer.receive_data(b"FERRY 1 JOIN 7 " + TICKET.encode() + b"\n\x00\x01binary\n\xff")
    line = buffer.next_line()
    assert line is not None
    assert parse_client_line(line) == JoinRequest(7, TICKET)
    assert buffer.take_rest() == b"\x00\x01binary\n\xff"
    assert len(buffer) == 0
    assert buffer.take_rest() == b""
    assert buffer.next_line() is None


@feeders
def test_line_buffer_line_of_exactly_max_line_bytes_is_accepted(
    feed: Callable[[bytes], list[bytes]],
) -> None:
    line = b"x" * (MAX_LINE - 1) + b"\n"
    assert feed(line) == [line]


@feeders
def test_line_buffer_line_of_max_line_plus_one_bytes_raises_bad_request(
    feed: Callable[[bytes], list[bytes]],
) -> None:
    with pytest.raises(BadRequest) as caught:
        feed(b"x" * MAX_LINE + b"\n")
    assert caught.value.reason == rv.REASON_BAD_REQUEST


def test_line_buffer_max_line_bytes_without_lf_raises_before_any_more_data() -> None:
    buffer = LineBuffer()
    buffer.receive_data(b"x" * (MAX_LINE - 1))
    assert buffer.next_line() is None
    buffer.receive_data(b"x")
    with pytest.raises(BadRequest):
        buffer.next_line()


def test_line_buffer_custom_max_line_is_honoured() -> None:
    buffer = LineBuffer(max_line=4)
    buffer.receive_data(b"abc\n")
    assert buffer.next_line() == b"abc\n"
    buffer.receive_data(b"abcd\n")
    with pytest.raises(BadRequest):
        buffer.next_line()


@given(st.binary(max_size=600))
def test_line_buffer_any_bytes_whole_and_bytewise_agree_or_both_raise(data: bytes) -> None:
    outcomes: list[tuple[str, object]] = []
    for feed in FEEDERS:
        try:
            outcomes.append(("lines", feed(data)))
        except BadRequest as exc:
            outcomes.append(("error", exc.reason))
    assert outcomes[0] == outcomes[1]
    kind, value = outcomes[0]
    if kind == "lines":
        assert isinstance(value, list)
        assert all(line.endswith(b"\n") and len(line) <= MAX_LINE for line in value)
        assert all(line.count(b"\n") == 1 for line in value)


@given(st.binary(max_size=600))
def test_line_buffer_fed_bytewise_never_holds_max_line_bytes_after_next_line(data: bytes) -> None:
    buffer = LineBuffer()
    for i in range(len(data)):
        buffer.receive_data(data[i : i + 1])
        try:
            drain(buffer)
        except BadRequest:
            return
        assert len(buffer) < MAX_LINE


@given(st.binary(max_size=MAX_LINE * 3))
def test_line_buffer_lines_then_parse_any_bytes_only_raise_remote_protocol_errors(
    data: bytes,
) -> None:
    buffer = LineBuffer()
    buffer.receive_data(data)
    try:
        while (line := buffer.next_line()) is not None:
            for parse in (parse_client_line, parse_relay_line):
                try:
                    parse(line)
                except RemoteProtocolError:
                    pass
    except BadRequest:
        pass


# -- the PAKE record behind a claim ---------------------------------------------------------

_PAKE = Header(33, RecordType.PAKE, 0).encode() + bytes(33)


def test_claim_record_missing_counts_down_to_zero_whole_and_bytewise() -> None:
    assert rv.claim_record_missing(b"") == 6
    assert rv.claim_record_missing(_PAKE[:4]) == 2
    assert rv.claim_record_missing(_PAKE[:6]) == 33
    assert rv.claim_record_missing(_PAKE[:20]) == 19
    assert rv.claim_record_missing(_PAKE) == 0
    early = b""
    for byte in _PAKE[:-1]:
        early += bytes([byte])
        whole = 6 if len(early) < 6 else len(_PAKE)  # the header first, then its body
        assert rv.claim_record_missing(early) == whole - len(early)


@pytest.mark.parametrize(
    "header",
    [
        Header(33, RecordType.CONFIRM, 0).encode(),  # another record type
        Header(33, RecordType.OFFER, 0).encode(),
        Header(33, RecordType.PAKE, FLAG_FINAL).encode(),  # a flag
        Header(0, RecordType.PAKE, 0).encode(),  # empty
        Header(MAX_HANDSHAKE_LENGTH + 1, RecordType.PAKE, 0).encode(),  # oversize
        b"\xff\xff\xff\xff\x01\x00",
        b"GET / HTTP/1.1\r\n"[:6],
        b"\x00\x00\x00\x21\x63\x00",  # an unknown type
    ],
)
def test_claim_record_missing_anything_but_a_pake_header_raises_bad_request(
    header: bytes,
) -> None:
    with pytest.raises(BadRequest) as caught:
        rv.claim_record_missing(header + bytes(40))
    assert caught.value.reason == rv.REASON_BAD_REQUEST


@given(st.binary(max_size=64))
def test_claim_record_missing_any_bytes_gives_a_count_or_bad_request(data: bytes) -> None:
    try:
        missing = rv.claim_record_missing(data)
    except BadRequest:
        return
    assert 0 <= missing <= 6 + MAX_HANDSHAKE_LENGTH


# --- the web address on NAMEPLATE ------------------------------------------------------------


def test_nameplate_with_a_web_address_parses_and_one_without_gives_an_empty_address() -> None:
    line = b"NAMEPLATE 7 " + WEB_URL.encode() + b"\n"
    assert parse_relay_line(line) == NameplateAssigned(7, WEB_URL)
    assert parse_relay_line(b"NAMEPLATE 7\n") == NameplateAssigned(7, "")


def test_nameplate_with_an_unusable_web_address_says_what_is_wrong_with_it() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_relay_line(b"NAMEPLATE 7 https://relay.example/#top\n")
    assert caught.value.message == (
        "the relay sent an unusable web address: it must have no #fragment (the code goes there)"
    )


@given(nameplates, st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_nameplate_with_any_third_word_gives_that_address_or_a_remote_protocol_error(
    nameplate: int, word: str
) -> None:
    line = f"NAMEPLATE {nameplate} {word}\n".encode()
    try:
        message = parse_relay_line(line)
    except RemoteProtocolError:
        return
    assert message == NameplateAssigned(nameplate, word) and encode(message) == line
