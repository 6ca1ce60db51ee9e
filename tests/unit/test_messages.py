"""Unit tests for ferry.protocol.messages: the JSON bodies of OFFER, ANSWER, ACK and ABORT."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import RemoteProtocolError
from ferry.protocol import messages
from ferry.protocol.messages import (
    KIND_FILE,
    MAX_OFFERED_NAME,
    MAX_SIZE,
    MAX_TEXT,
    REASON_EXISTS,
    REASON_UNSUPPORTED,
    Abort,
    Ack,
    Answer,
    Offer,
    decode_abort,
    decode_ack,
    decode_answer,
    decode_offer,
    encode_abort,
    encode_ack,
    encode_answer,
    encode_offer,
)
from ferry.protocol.records import MAX_MESSAGE_PAYLOAD

DECODERS: list[Callable[[bytes], object]] = [decode_offer, decode_answer, decode_ack, decode_abort]
decoders = pytest.mark.parametrize("decode", DECODERS, ids=["offer", "answer", "ack", "abort"])

sizes = st.integers(min_value=0, max_value=MAX_SIZE)
names = st.text(max_size=200)
short_texts = st.text(max_size=MAX_TEXT)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def dump(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


# --- wire format -----------------------------------------------------------------------------


def test_encode_offer_gives_compact_json_object() -> None:
    body = encode_offer(Offer(KIND_FILE, "photo.jpg", 1234))
    assert body == b'{"kind":"file","name":"photo.jpg","size":1234}'


def test_encode_offer_non_ascii_name_is_utf8_not_escaped() -> None:
    body = encode_offer(Offer(KIND_FILE, "r\u00e9sum\u00e9.pdf", 1))
    assert "r\u00e9sum\u00e9.pdf".encode() in body


def test_encode_answer_accept_gives_only_accept_key() -> None:
    assert json.loads(encode_answer(Answer(True))) == {"accept": True}


def test_encode_answer_accept_drops_reason_and_message() -> None:
    assert json.loads(encode_answer(Answer(True, "ignored", "ignored"))) == {"accept": True}


def test_encode_answer_refusal_carries_reason_and_message() -> None:
    body = encode_answer(Answer(False, REASON_EXISTS, "file exists"))
    assert json.loads(body) == {"accept": False, "reason": "exists", "message": "file exists"}


def test_encode_answer_with_resume_from_gives_the_count_and_nothing_of_the_bytes() -> None:
    assert json.loads(encode_answer(Answer(True, resume_from=10))) == {
        "accept": True,
        "resume_from": 10,
    }


def test_offers_say_resume_version_2_and_version_1_is_not_answered() -> None:
    offer = Offer(KIND_FILE, "f", 3, resume=True)
    assert json.loads(encode_offer(offer))["resume"] == 2
    assert decode_offer(encode_offer(offer)) == offer
    old = b'{"kind":"file","name":"f","size":3,"resume":1}'
    assert decode_offer(old) == Offer(KIND_FILE, "f", 3)


def test_encode_ack_gives_ok_and_size() -> None:
    assert json.loads(encode_ack(Ack(99))) == {"ok": True, "size": 99}


def test_encode_abort_cuts_message_to_max_text() -> None:
    body = encode_abort(Abort("local-error", "m" * (MAX_TEXT * 2)))
    assert json.loads(body) == {"reason": "local-error", "message": "m" * MAX_TEXT}


# --- round trips -----------------------------------------------------------------------------


@given(names.filter(lambda n: len(n) <= MAX_OFFERED_NAME), sizes)
def test_decode_offer_of_encoded_file_offer_gives_same_offer(name: str, size: int) -> None:
    offer = Offer(KIND_FILE, name, size)
    assert decode_offer(encode_offer(offer)) == offer


def test_decode_offer_of_name_at_max_length_gives_same_offer() -> None:
    offer = Offer(KIND_FILE, "n" * MAX_OFFERED_NAME, MAX_SIZE)
    assert decode_offer(encode_offer(offer)) == offer


@given(st.booleans(), short_texts, short_texts, st.integers(min_value=0, max_value=MAX_SIZE))
def test_decode_answer_of_encoded_answer_gives_same_answer(
    accept: bool, reason: str, message: str, resume_from: int
) -> None:
    answer = Answer(accept, reason, message, resume_from)
    expected = answer if not accept else Answer(True, "", "", resume_from)
    assert decode_answer(encode_answer(answer)) == expected


@given(sizes)
def test_decode_ack_of_encoded_ack_gives_same_ack(size: int) -> None:
    assert decode_ack(encode_ack(Ack(size))) == Ack(size)


@given(short_texts, short_texts)
def test_decode_abort_of_encoded_abort_gives_same_abort(reason: str, message: str) -> None:
    abort = Abort(reason, message)
    assert decode_abort(encode_abort(abort)) == abort


@given(
    st.one_of(
        st.builds(Offer, st.just(KIND_FILE), st.text(max_size=MAX_OFFERED_NAME // 4), sizes),
        st.builds(Answer, st.booleans(), short_texts, short_texts, sizes),
        st.builds(Ack, sizes),
        st.builds(Abort, short_texts, st.text(max_size=4 * MAX_TEXT)),
    )
)
def test_encode_any_message_fits_in_one_message_record(message: object) -> None:
    encoders: dict[type, Callable[[Any], bytes]] = {
        Offer: encode_offer,
        Answer: encode_answer,
        Ack: encode_ack,
        Abort: encode_abort,
    }
    assert len(encoders[type(message)](message)) <= MAX_MESSAGE_PAYLOAD


def test_encode_offer_longest_name_of_worst_case_characters_fits_in_one_message_record() -> None:
    # Characters JSON escapes as \uXXXX (6 bytes each) are the worst case for the body size.
    offer = Offer(KIND_FILE, "\x01" * MAX_OFFERED_NAME, MAX_SIZE)
    assert len(encode_offer(offer)) <= MAX_MESSAGE_PAYLOAD


def test_encode_offer_with_surrogate_escaped_name_gives_body_decode_offer_accepts() -> None:
    # On POSIX, Python hands out file names that are not valid UTF-8 with lone surrogates
    # (surrogateescape); the sender offers os.path.basename() of the typed path as is.
    offer = Offer(KIND_FILE, "caf\udce9.txt", 5)
    decoded = decode_offer(encode_offer(offer))
    assert decoded.kind == KIND_FILE
    assert decoded.size == 5


# --- forward compatibility -------------------------------------------------------------------


def test_decode_offer_ignores_unknown_keys() -> None:
    body = dump({"kind": "file", "name": "a", "size": 1, "mtime": 5, "mode": "0644"})
    assert decode_offer(body) == Offer(KIND_FILE, "a", 1)


def test_decode_offer_other_kind_gives_offer_of_that_kind_without_name_or_size() -> None:
    body = dump({"kind": "directory", "entries": 3})
    assert decode_offer(body) == Offer("directory", "", 0)


def test_decode_offer_other_kind_is_cut_to_64_characters() -> None:
    assert decode_offer(dump({"kind": "k" * 1000})).kind == "k" * 64


def test_decode_answer_ignores_unknown_keys_and_defaults_texts() -> None:
    assert decode_answer(dump({"accept": True, "future": [1, 2]})) == Answer(True, "", "", 0)


def test_decode_answer_refusal_keeps_reason_and_message() -> None:
    body = dump({"accept": False, "reason": REASON_UNSUPPORTED, "message": "no dirs"})
    assert decode_answer(body) == Answer(False, REASON_UNSUPPORTED, "no dirs")


def test_decode_answer_non_string_texts_become_empty() -> None:
    body = dump({"accept": False, "reason": 5, "message": ["x"]})
    assert decode_answer(body) == Answer(False, "", "")


def test_decode_answer_overlong_texts_are_cut_to_max_text() -> None:
    body = dump({"accept": False, "reason": "r" * 5000, "message": "m" * 5000})
    assert decode_answer(body) == Answer(False, "r" * MAX_TEXT, "m" * MAX_TEXT)


def test_decode_answer_resume_from_zero_or_absent_gives_zero() -> None:
    assert decode_answer(dump({"accept": True, "resume_from": 0})).resume_from == 0
    assert decode_answer(dump({"accept": True})).resume_from == 0


def test_decode_abort_missing_fields_gives_empty_texts() -> None:
    assert decode_abort(b"{}") == Abort("", "")


def test_decode_abort_overlong_texts_are_cut_to_max_text() -> None:
    body = dump({"reason": "r" * 5000, "message": "m" * 5000})
    assert decode_abort(body) == Abort("r" * MAX_TEXT, "m" * MAX_TEXT)


def test_decode_ack_ignores_unknown_keys() -> None:
    assert decode_ack(dump({"ok": True, "size": 3, "sha256": "00"})) == Ack(3)


# --- malformed bodies ------------------------------------------------------------------------


@decoders
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"\xff\xfe",
        b"\xc3",
        b"[]",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"true",
        b"{} {}",
        b'{"a":1}x',
    ],
)
def test_decode_non_object_or_invalid_body_raises_remote_protocol_error(
    decode: Callable[[bytes], object], body: bytes
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(body)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"name": "a", "size": 1},
        {"kind": 1, "name": "a", "size": 1},
        {"kind": None, "name": "a", "size": 1},
        {"kind": "file", "size": 1},
        {"kind": "file", "name": 7, "size": 1},
        {"kind": "file", "name": None, "size": 1},
        {"kind": "file", "name": "a"},
        {"kind": "file", "name": "a", "size": "1"},
        {"kind": "file", "name": "a", "size": 1.0},
        {"kind": "file", "name": "a", "size": True},
        {"kind": "file", "name": "a", "size": False},
        {"kind": "file", "name": "a", "size": None},
        {"kind": "file", "name": "a", "size": -1},
        {"kind": "file", "name": "a", "size": MAX_SIZE + 1},
        {"kind": "file", "name": "a", "size": 10**100},
        {"kind": "file", "name": "n" * (MAX_OFFERED_NAME + 1), "size": 1},
    ],
)
def test_decode_offer_malformed_file_offer_raises_remote_protocol_error(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_offer(dump(obj))


@pytest.mark.parametrize("body", [b'{"kind":"file","name":"a","size":NaN}', b'{"size":Infinity}'])
def test_decode_offer_non_finite_size_raises_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_offer(body)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"accept": 1},
        {"accept": "true"},
        {"accept": None},
        {"accept": True, "resume_from": -1},
        {"accept": True, "resume_from": 1.5},
        {"accept": True, "resume_from": "1"},
        {"accept": True, "resume_from": True},
        {"accept": True, "resume_from": None},
    ],
)
def test_decode_answer_malformed_raises_remote_protocol_error(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_answer(dump(obj))


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"size": 1},
        {"ok": False, "size": 1},
        {"ok": 1, "size": 1},
        {"ok": "true", "size": 1},
        {"ok": True},
        {"ok": True, "size": "1"},
        {"ok": True, "size": 1.0},
        {"ok": True, "size": True},
    ],
)
def test_decode_ack_malformed_raises_remote_protocol_error(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_ack(dump(obj))


@decoders
def test_decode_huge_integer_literal_raises_remote_protocol_error(
    decode: Callable[[bytes], object],
) -> None:
    # Python refuses to parse integers of more than 4300 digits (a ValueError).
    with pytest.raises(RemoteProtocolError):
        decode(b'{"size":' + b"9" * 5000 + b"}")


@decoders
def test_decode_deeply_nested_json_raises_remote_protocol_error(
    decode: Callable[[bytes], object],
) -> None:
    # Well under one record's cap, but deeper than Python's recursion limit.
    body = b'{"a":[' * 2500
    assert len(body) <= MAX_MESSAGE_PAYLOAD
    with pytest.raises(RemoteProtocolError):
        decode(body)


@decoders
@given(body=st.binary(max_size=200))
def test_decode_any_bytes_returns_message_or_raises_remote_protocol_error(
    decode: Callable[[bytes], object], body: bytes
) -> None:
    try:
        decode(body)
    except RemoteProtocolError:
        pass


@decoders
@given(obj=json_values)
def test_decode_any_json_value_returns_message_or_raises_remote_protocol_error(
    decode: Callable[[bytes], object], obj: Any
) -> None:
    try:
        decode(dump(obj))
    except RemoteProtocolError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(["kind", "name", "size", "accept", "reason", "message", "ok", "x"]),
        st.one_of(
            json_values, st.sampled_from(["file", True, False, 0, -1, MAX_SIZE, MAX_SIZE + 1])
        ),
    )
)
def test_decode_near_valid_objects_return_valid_messages_or_raise_remote_protocol_error(
    obj: dict[str, Any],
) -> None:
    body = dump(obj)
    try:
        offer = decode_offer(body)
    except RemoteProtocolError:
        pass
    else:
        assert isinstance(offer.name, str) and isinstance(offer.size, int)
        assert 0 <= offer.size <= MAX_SIZE
        assert len(offer.name) <= MAX_OFFERED_NAME
    try:
        answer = decode_answer(body)
    except RemoteProtocolError:
        pass
    else:
        assert isinstance(answer.accept, bool)
        assert len(answer.reason) <= MAX_TEXT and len(answer.message) <= MAX_TEXT
    try:
        ack = decode_ack(body)
    except RemoteProtocolError:
        pass
    else:
        assert type(ack.size) is int
    abort = decode_abort(body)
    assert isinstance(abort.reason, str) and len(abort.reason) <= MAX_TEXT
    assert isinstance(abort.message, str) and len(abort.message) <= MAX_TEXT


@pytest.mark.parametrize("name", ["a", "notes.txt", "x" * 150, "é" * 90])
def test_padded_offer_hides_the_name_length_and_decodes_unchanged(name: str) -> None:
    offer = messages.Offer(messages.KIND_FILE, name, 12345)
    body = messages.padded(messages.encode_offer(offer))
    assert len(body) == messages.OFFER_PADDING
    assert messages.decode_offer(body) == offer


def test_padding_reaches_the_next_multiple_and_keeps_exact_multiples() -> None:
    assert messages.padded(b"x" * 256) == b"x" * 256
    assert len(messages.padded(b"x" * 257)) == 512
    assert messages.padded(b"") == b""
