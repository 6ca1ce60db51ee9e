"""Unit tests for ferry.crypto: SPAKE2 exchange, key derivation, confirmation, sealed records."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.crypto import (
    KEY_SIZE,
    Opener,
    Pake,
    Role,
    Sealer,
    SessionKeys,
    confirmation,
    derive_keys,
    peer_confirmed,
)
from ferry.errors import IntegrityError, LocalProtocolError, RemoteProtocolError
from ferry.protocol.records import FLAG_FINAL, TAG_SIZE, Header, RecordType

CODE = b"7-guitar-orbit-velvet"

pake_settings = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
codes = st.binary(min_size=1, max_size=64)


def exchange(sender_code: bytes, receiver_code: bytes) -> tuple[SessionKeys, SessionKeys]:
    sender, receiver = Pake(Role.SENDER, sender_code), Pake(Role.RECEIVER, receiver_code)
    to_receiver, to_sender = sender.start(), receiver.start()
    return sender.finish(to_sender), receiver.finish(to_receiver)


@pytest.fixture(scope="module")
def keys() -> tuple[SessionKeys, SessionKeys]:
    return exchange(CODE, CODE)


def fast_keys(shared: bytes = b"s" * 32) -> tuple[SessionKeys, SessionKeys]:
    """Matching keys without the (slower) PAKE, for the record-sealing properties."""
    transcript = b"A-message" + b"B-message"
    return derive_keys(Role.SENDER, shared, transcript), derive_keys(
        Role.RECEIVER, shared, transcript
    )


def data_header(plaintext: bytes, final: bool = False) -> bytes:
    flags = FLAG_FINAL if final else 0
    return Header(len(plaintext) + TAG_SIZE, RecordType.DATA, flags).encode()


def seal_stream(
    sealer: Sealer, chunks: list[bytes], *, last_final: bool = True
) -> list[tuple[bytes, bytes]]:
    records = []
    for i, chunk in enumerate(chunks):
        header = data_header(chunk, final=last_final and i == len(chunks) - 1)
        records.append((header, sealer.seal(header, chunk)))
    return records


# --- roles -----------------------------------------------------------------------------------


def test_role_peer_of_each_role_is_the_other() -> None:
    assert Role.SENDER.peer is Role.RECEIVER
    assert Role.RECEIVER.peer is Role.SENDER


# --- PAKE and key derivation -----------------------------------------------------------------


def test_pake_same_code_sender_seal_key_equals_receiver_open_key_and_back(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, receiver = keys
    assert sender.role is Role.SENDER and receiver.role is Role.RECEIVER
    assert sender.seal_key == receiver.open_key
    assert sender.open_key == receiver.seal_key
    assert sender.confirm_mine == receiver.confirm_peer
    assert sender.confirm_peer == receiver.confirm_mine


def test_pake_same_code_derives_four_distinct_32_byte_keys(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, _ = keys
    derived = [sender.confirm_mine, sender.confirm_peer, sender.seal_key, sender.open_key]
    assert all(len(key) == KEY_SIZE for key in derived)
    assert len(set(derived)) == 4


def test_pake_same_code_both_sides_confirm_each_other(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, receiver = keys
    assert peer_confirmed(receiver, confirmation(sender))
    assert peer_confirmed(sender, confirmation(receiver))


def test_confirmation_reflected_back_to_its_sender_is_not_accepted(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, receiver = keys
    assert confirmation(sender) != confirmation(receiver)
    assert not peer_confirmed(sender, confirmation(sender))
    assert not peer_confirmed(receiver, confirmation(receiver))


@pytest.mark.parametrize("body", [b"", b"\x00" * 32, b"x", b"\x00" * 33])
def test_peer_confirmed_with_junk_body_is_false(
    keys: tuple[SessionKeys, SessionKeys], body: bytes
) -> None:
    assert not peer_confirmed(keys[0], body)


def test_peer_confirmed_with_truncated_or_extended_mac_is_false(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, receiver = keys
    good = confirmation(sender)
    assert not peer_confirmed(receiver, good[:-1])
    assert not peer_confirmed(receiver, good + b"\x00")


@pake_settings
@given(code=codes)
def test_pake_any_code_same_on_both_sides_gives_matching_keys_and_confirmation(
    code: bytes,
) -> None:
    sender, receiver = exchange(code, code)
    assert sender.seal_key == receiver.open_key
    assert sender.open_key == receiver.seal_key
    assert peer_confirmed(receiver, confirmation(sender))
    assert peer_confirmed(sender, confirmation(receiver))


@pake_settings
@given(sender_code=codes, receiver_code=codes)
def test_pake_different_codes_fail_peer_confirmed_on_both_sides(
    sender_code: bytes, receiver_code: bytes
) -> None:
    if sender_code == receiver_code:
        receiver_code += b"x"
    sender, receiver = exchange(sender_code, receiver_code)
    assert not peer_confirmed(receiver, confirmation(sender))
    assert not peer_confirmed(sender, confirmation(receiver))
    assert sender.seal_key != receiver.open_key
    assert sender.open_key != receiver.seal_key


def test_pake_one_word_off_fails_peer_confirmed_on_both_sides() -> None:
    sender, receiver = exchange(CODE, b"7-guitar-orbit-velvte")
    assert not peer_confirmed(receiver, confirmation(sender))
    assert not peer_confirmed(sender, confirmation(receiver))


def test_pake_two_runs_with_same_code_give_different_keys() -> None:
    first, _ = exchange(CODE, CODE)
    second, _ = exchange(CODE, CODE)
    assert first.seal_key != second.seal_key
    assert first.confirm_mine != second.confirm_mine


def test_pake_messages_of_sender_and_receiver_are_33_bytes_tagged_by_side() -> None:
    sender_message = Pake(Role.SENDER, CODE).start()
    receiver_message = Pake(Role.RECEIVER, CODE).start()
    assert len(sender_message) == len(receiver_message) == 33
    assert sender_message != receiver_message


def test_pake_finish_before_start_raises_runtime_error() -> None:
    with pytest.raises(LocalProtocolError, match="start"):
        Pake(Role.SENDER, CODE).finish(Pake(Role.RECEIVER, CODE).start())


def test_pake_sender_given_its_own_message_back_raises_remote_protocol_error() -> None:
    sender = Pake(Role.SENDER, CODE)
    message = sender.start()
    with pytest.raises(RemoteProtocolError):
        sender.finish(message)


def test_pake_receiver_given_another_receivers_message_raises_remote_protocol_error() -> None:
    receiver = Pake(Role.RECEIVER, CODE)
    receiver.start()
    with pytest.raises(RemoteProtocolError):
        receiver.finish(Pake(Role.RECEIVER, CODE).start())


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"A",
        b"B",
        b"\x00" * 33,
        b"B" + b"\x00" * 32,
        b"B" + b"\xff" * 32,
        b"B" + b"\x01" * 31,
        b"B" + b"\x01" * 32,
        b"B" + b"\x02" * 32,
        b"B" + b"\x01" * 64,
        b"B" + b"\x01" * 1024,
    ],
    ids=[
        "empty",
        "side-only-A",
        "side-only-B",
        "no-side",
        "zero-point",
        "all-ff",
        "short-not-on-curve",
        "point-not-in-group",
        "point-not-on-curve",
        "long",
        "very-long",
    ],
)
def test_pake_sender_given_malformed_message_raises_remote_protocol_error(message: bytes) -> None:
    sender = Pake(Role.SENDER, CODE)
    sender.start()
    with pytest.raises(RemoteProtocolError, match="malformed key exchange"):
        sender.finish(message)


def test_pake_tampered_message_gives_keys_that_fail_confirmation() -> None:
    sender, receiver = Pake(Role.SENDER, CODE), Pake(Role.RECEIVER, CODE)
    to_receiver, to_sender = sender.start(), receiver.start()
    # A valid group element that is not the receiver's: another receiver's message.
    forged = Pake(Role.RECEIVER, CODE).start()
    sender_keys = sender.finish(forged)
    receiver_keys = receiver.finish(to_receiver)
    assert to_sender != forged
    assert not peer_confirmed(receiver_keys, confirmation(sender_keys))
    assert not peer_confirmed(sender_keys, confirmation(receiver_keys))


@settings(max_examples=50, deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    message=st.one_of(
        st.binary(max_size=80),
        # The peer's side byte and 32 random bytes: the shape of a real message.
        st.tuples(st.sampled_from([b"A", b"B"]), st.binary(min_size=32, max_size=32)).map(b"".join),
    ),
)
def test_pake_finish_any_bytes_gives_keys_or_raises_remote_protocol_error(
    role: Role, message: bytes
) -> None:
    pake = Pake(role, CODE)
    pake.start()
    try:
        keys = pake.finish(message)
    except RemoteProtocolError:
        return
    assert keys.role is role


def test_derive_keys_different_transcripts_give_different_keys() -> None:
    shared = os.urandom(32)
    first = derive_keys(Role.SENDER, shared, b"one")
    second = derive_keys(Role.SENDER, shared, b"two")
    assert first.seal_key != second.seal_key
    assert first.confirm_mine != second.confirm_mine


def test_derive_keys_is_deterministic() -> None:
    assert derive_keys(Role.RECEIVER, b"k" * 32, b"t") == derive_keys(
        Role.RECEIVER, b"k" * 32, b"t"
    )


# --- secrecy ---------------------------------------------------------------------------------


def test_session_keys_repr_shows_role_but_no_key_bytes(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    for side in keys:
        for shown in (repr(side), str(side), repr([side]), f"{side!r}"):
            assert side.role.value in shown
            for key in (side.confirm_mine, side.confirm_peer, side.seal_key, side.open_key):
                assert repr(key) not in shown
                assert key.hex() not in shown
                assert key.hex()[:8] not in shown


# --- sealed records --------------------------------------------------------------------------


def test_sealer_then_opener_with_matching_keys_gives_plaintexts_back_in_order(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, receiver = keys
    sealer, opener = Sealer(sender.seal_key), Opener(receiver.open_key)
    chunks = [b"first", b"", b"x" * 1000, b"last"]
    for (header, sealed), chunk in zip(seal_stream(sealer, chunks), chunks, strict=True):
        assert len(sealed) == len(chunk) + TAG_SIZE
        assert opener.open(header, sealed) == chunk


def test_sealer_both_directions_are_independent(keys: tuple[SessionKeys, SessionKeys]) -> None:
    sender, receiver = keys
    to_receiver, to_sender = Sealer(sender.seal_key), Sealer(receiver.seal_key)
    from_sender, from_receiver = Opener(receiver.open_key), Opener(sender.open_key)
    header = Header(TAG_SIZE + 2, RecordType.ACK, 0).encode()
    a = to_receiver.seal(header, b"ab")
    b = to_sender.seal(header, b"ab")
    assert a != b  # same plaintext, same counter, different key
    assert from_sender.open(header, a) == b"ab"
    assert from_receiver.open(header, b) == b"ab"


def test_opener_record_reflected_to_its_own_sender_raises_integrity_error(
    keys: tuple[SessionKeys, SessionKeys],
) -> None:
    sender, _ = keys
    header = data_header(b"hi")
    sealed = Sealer(sender.seal_key).seal(header, b"hi")
    with pytest.raises(IntegrityError):
        Opener(sender.open_key).open(header, sealed)


def test_opener_with_key_from_wrong_code_raises_integrity_error() -> None:
    sender, _ = fast_keys(b"a" * 32)
    _, wrong_receiver = fast_keys(b"b" * 32)
    header = data_header(b"secret")
    with pytest.raises(IntegrityError):
        Opener(wrong_receiver.open_key).open(
            header, Sealer(sender.seal_key).seal(header, b"secret")
        )


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=64), final=st.booleans(), data=st.data())
def test_opener_any_single_tampered_byte_of_header_or_ciphertext_raises_integrity_error(
    plaintext: bytes, final: bool, data: st.DataObject
) -> None:
    sender, receiver = fast_keys()
    header = data_header(plaintext, final)
    wire = bytearray(header + Sealer(sender.seal_key).seal(header, plaintext))
    index = data.draw(st.integers(0, len(wire) - 1), label="index")
    wire[index] ^= data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(bytes(wire[:6]), bytes(wire[6:]))


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=64), data=st.data())
def test_opener_truncated_or_extended_ciphertext_raises_integrity_error(
    plaintext: bytes, data: st.DataObject
) -> None:
    sender, receiver = fast_keys()
    header = data_header(plaintext)
    sealed = Sealer(sender.seal_key).seal(header, plaintext)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(header, sealed[:cut])
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(header, sealed + b"\x00")


def test_opener_records_swapped_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    (h1, r1), (h2, r2) = seal_stream(Sealer(sender.seal_key), [b"one", b"two"])
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(h2, r2)
    opener = Opener(receiver.open_key)
    with pytest.raises(IntegrityError):
        opener.open(h2, r2)
    with pytest.raises(IntegrityError):
        opener.open(h1, r1)


def test_opener_same_length_records_swapped_raises_integrity_error() -> None:
    # Equal lengths and flags make the headers identical: only the nonce tells them apart.
    sender, receiver = fast_keys()
    records = seal_stream(Sealer(sender.seal_key), [b"aaaa", b"bbbb"], last_final=False)
    assert records[0][0] == records[1][0]
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(*records[1])


def test_opener_replayed_record_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    records = seal_stream(Sealer(sender.seal_key), [b"same", b"same"], last_final=False)
    opener = Opener(receiver.open_key)
    assert opener.open(*records[0]) == b"same"
    with pytest.raises(IntegrityError):
        opener.open(*records[0])


def test_opener_dropped_middle_record_makes_next_raise_integrity_error() -> None:
    sender, receiver = fast_keys()
    records = seal_stream(Sealer(sender.seal_key), [b"a", b"b", b"c"])
    opener = Opener(receiver.open_key)
    assert opener.open(*records[0]) == b"a"
    with pytest.raises(IntegrityError):
        opener.open(*records[2])


def test_opener_final_flag_set_by_attacker_on_earlier_record_raises_integrity_error() -> None:
    # Truncation: cutting the stream after record 0 and marking it final must not pass.
    sender, receiver = fast_keys()
    (header, sealed), _ = seal_stream(Sealer(sender.seal_key), [b"a", b"b"])
    assert not Header(TAG_SIZE + 1, RecordType.DATA, 0).final
    forged = Header(TAG_SIZE + 1, RecordType.DATA, FLAG_FINAL).encode()
    assert forged != header
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(forged, sealed)


def test_opener_final_flag_cleared_by_attacker_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    [(header, sealed)] = seal_stream(Sealer(sender.seal_key), [b"only"])
    cleared = bytes([*header[:5], header[5] & ~FLAG_FINAL])
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(cleared, sealed)


def test_opener_record_type_changed_by_attacker_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    header = Header(TAG_SIZE + 2, RecordType.ACK, 0).encode()
    sealed = Sealer(sender.seal_key).seal(header, b"{}")
    changed = Header(TAG_SIZE + 2, RecordType.ABORT, 0).encode()
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(changed, sealed)


def test_opener_body_shorter_than_tag_raises_integrity_error() -> None:
    _, receiver = fast_keys()
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open(data_header(b""), b"short")


# --- seal_into / open_into -------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_seal_into_gives_same_bytes_as_seal(chunks: list[bytes]) -> None:
    sender, _ = fast_keys()
    by_seal, by_seal_into = Sealer(sender.seal_key), Sealer(sender.seal_key)
    for chunk in chunks:
        header = data_header(chunk)
        out = bytearray(len(chunk) + TAG_SIZE)
        by_seal_into.seal_into(header, memoryview(chunk), memoryview(out))
        assert bytes(out) == by_seal.seal(header, chunk)


@settings(max_examples=50, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), min_size=1, max_size=5), spare=st.integers(0, 64))
def test_open_into_gives_same_plaintext_and_size_as_open(chunks: list[bytes], spare: int) -> None:
    sender, receiver = fast_keys()
    records = seal_stream(Sealer(sender.seal_key), chunks)
    by_open, by_open_into = Opener(receiver.open_key), Opener(receiver.open_key)
    for (header, sealed), chunk in zip(records, chunks, strict=True):
        out = bytearray(b"\xee" * (len(sealed) - TAG_SIZE + spare))
        size = by_open_into.open_into(header, memoryview(sealed), memoryview(out))
        assert size == len(chunk)
        assert bytes(out[:size]) == chunk == by_open.open(header, sealed)
        assert out[size:] == b"\xee" * spare


def test_seal_into_then_open_into_round_trips() -> None:
    sender, receiver = fast_keys()
    plaintext = os.urandom(4096)
    header = data_header(plaintext, final=True)
    sealed = bytearray(len(plaintext) + TAG_SIZE)
    Sealer(sender.seal_key).seal_into(header, memoryview(plaintext), memoryview(sealed))
    out = bytearray(len(plaintext))
    size = Opener(receiver.open_key).open_into(header, memoryview(sealed), memoryview(out))
    assert size == len(plaintext)
    assert out == plaintext


def test_open_into_tampered_record_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    header = data_header(b"payload")
    sealed = bytearray(Sealer(sender.seal_key).seal(header, b"payload"))
    sealed[0] ^= 1
    out = bytearray(len(sealed))
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open_into(header, memoryview(sealed), memoryview(out))


def test_open_into_replayed_record_raises_integrity_error() -> None:
    sender, receiver = fast_keys()
    [(header, sealed)] = seal_stream(Sealer(sender.seal_key), [b"once"])
    opener = Opener(receiver.open_key)
    out = bytearray(len(sealed))
    assert opener.open_into(header, memoryview(sealed), memoryview(out)) == 4
    with pytest.raises(IntegrityError):
        opener.open_into(header, memoryview(sealed), memoryview(out))


def test_open_into_body_shorter_than_tag_raises_integrity_error() -> None:
    _, receiver = fast_keys()
    with pytest.raises(IntegrityError):
        Opener(receiver.open_key).open_into(
            data_header(b""), memoryview(b"short"), memoryview(bytearray(32))
        )


def test_seal_and_seal_into_share_one_counter() -> None:
    sender, receiver = fast_keys()
    sealer, opener = Sealer(sender.seal_key), Opener(receiver.open_key)
    first_header = data_header(b"one")
    first = sealer.seal(first_header, b"one")
    second_header = data_header(b"two")
    second = bytearray(3 + TAG_SIZE)
    sealer.seal_into(second_header, memoryview(b"two"), memoryview(second))
    assert opener.open(first_header, first) == b"one"
    out = bytearray(3)
    assert opener.open_into(second_header, memoryview(second), memoryview(out)) == 3
    assert out == b"two"
