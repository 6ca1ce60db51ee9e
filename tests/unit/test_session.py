"""The sans-IO sessions (ferry.protocol.session), driven in memory with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.errors import (
    IntegrityError,
    LocalProtocolError,
    RemoteProtocolError,
    TimedOut,
    WrongCode,
)
from ferry.protocol import messages
from ferry.protocol.compression import CODECS
from ferry.protocol.events import (
    NEED_DATA,
    Acknowledged,
    Answered,
    Confirmed,
    DataReceived,
    Keyed,
    OfferReceived,
    PeerAborted,
    State,
    Timeouts,
)
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import FLAG_FINAL, RecordDecoder, RecordType
from ferry.protocol.sender_session import SenderSession
from ferry.protocol.session import BYTES_PER_DATA_RECORD, FREE_DATA_RECORDS, Session
from tests.memory import Cut, MemoryTransport, bytewise, whole

PASSWORD = b"7-guitar-orbit-velvet"
TIMEOUTS = Timeouts(handshake=30.0, io=120.0, ack=300.0)


def state(session: Session) -> State:
    """The session's state, read afresh (mypy would keep an earlier narrowing)."""
    return session.state


def make(
    payload: bytes = b"hello, world",
    cut: Cut = whole,
    receiver_password: bytes = PASSWORD,
    name: str = "notes.txt",
) -> MemoryTransport:
    offer = messages.Offer(messages.KIND_FILE, name, len(payload))
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS),
        ReceiverSession(receiver_password, TIMEOUTS),
        cut,
    )
    link.pair()
    return link


def handshake(link: MemoryTransport) -> messages.Offer:
    """Run the key exchange; the receiver ends up holding the offer."""
    s, r = link.sender, link.receiver
    assert link.events(s) == [Keyed()]
    assert s.state is State.CONFIRMING
    link.flush(s)  # CONFIRM + sealed OFFER
    assert link.events(r) == [Keyed(), Confirmed(), OfferReceived(s.offer)]
    assert r.state is State.DECIDING
    link.flush(r)  # CONFIRM
    assert link.events(s) == [Confirmed()]
    assert state(s) is State.AWAIT_ANSWER
    return s.offer


def send_all(link: MemoryTransport, payload: bytes, record: int) -> None:
    view = memoryview(payload)
    while True:
        chunk = view[link.sender.sent : link.sender.sent + record]
        link.send(link.sender, link.sender.send_data(chunk, link.clock.now))
        if link.sender.sent == len(payload):
            return


def converse(payload: bytes, cut: Cut, record: int = 7) -> bytes:
    link = make(payload, cut)
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Answered(messages.Answer(True, compress=CODECS))]
    assert link.sender.state is State.SENDING
    send_all(link, payload, record)
    assert state(link.sender) is State.AWAIT_ACK
    events = link.events(link.receiver)
    assert all(isinstance(e, DataReceived) for e in events)
    assert [e.final for e in events if isinstance(e, DataReceived)][-1] is True
    assert link.receiver.state is State.STORING
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(len(payload)))]
    assert state(link.sender) is state(link.receiver) is State.DONE
    return b"".join(bytes(e.data) for e in events if isinstance(e, DataReceived))


# --- whole conversations -------------------------------------------------------------------


@pytest.mark.parametrize("cut", [whole, bytewise], ids=["whole", "bytewise"])
def test_conversation_delivers_the_payload_and_ends_done(cut: Cut) -> None:
    payload = bytes(range(256)) * 3
    assert converse(payload, cut) == payload


def test_conversation_with_empty_file_sends_one_final_record() -> None:
    link = make(b"")
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    link.events(link.sender)
    link.send(link.sender, link.sender.send_data(memoryview(b""), link.clock.now))
    assert link.events(link.receiver) == [DataReceived(memoryview(b""), True)]


@given(
    payload=st.binary(max_size=600),
    record=st.integers(1, 97),
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=8),
)
@settings(max_examples=30, deadline=None)  # each example runs a real SPAKE2 exchange
def test_conversation_in_arbitrary_slices_gives_same_bytes(
    payload: bytes, record: int, cuts: list[int]
) -> None:
    def cut(data: bytes) -> list[bytes]:
        pieces, at, i = [], 0, 0
        while at < len(data):
            pieces.append(data[at : at + cuts[i % len(cuts)]])
            at += cuts[i % len(cuts)]
            i += 1
        return pieces

    assert converse(payload, cut, record) == payload


# --- the peer does something wrong -----------------------------------------------------------


def test_wrong_code_fails_both_sides_with_wrong_code_before_any_offer_is_opened() -> None:
    link = make(receiver_password=b"7-guitar-orbit-violin")
    assert link.events(link.sender) == [Keyed()]
    link.flush(link.sender)
    with pytest.raises(WrongCode):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED
    assert link.receiver.offer is None
    link.flush(link.receiver)
    with pytest.raises(WrongCode):
        link.events(link.sender)
    assert link.sender.state is State.FAILED


def test_tampered_offer_raises_integrity_error() -> None:
    link = make()
    link.events(link.sender)
    flight = bytearray(link.sender.data_to_send())
    flight[-3] ^= 0x01  # inside the sealed OFFER, after the CONFIRM
    link.send(link.sender, flight)
    with pytest.raises(IntegrityError):
        link.events(link.receiver)


def test_peer_abort_is_an_event_and_ends_the_session() -> None:
    link = make()
    handshake(link)
    link.receiver.abort("local-error", "disk full", link.clock.now)
    assert link.receiver.state is State.FAILED
    link.flush(link.receiver)
    assert link.events(link.sender) == [PeerAborted(messages.Abort("local-error", "disk full"))]
    assert link.sender.state is State.FAILED


def test_refusal_is_answered_and_ends_both_done() -> None:
    link = make()
    handshake(link)
    link.receiver.refuse(messages.REASON_EXISTS, "notes.txt already exists", link.clock.now)
    link.flush(link.receiver)
    [answered] = link.events(link.sender)
    assert isinstance(answered, Answered) and not answered.answer.accept
    assert answered.answer.reason == messages.REASON_EXISTS
    assert link.sender.state is link.receiver.state is State.DONE


def accepted(payload: bytes = b"abcdef") -> MemoryTransport:
    link = make(payload)
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    link.events(link.sender)
    return link


def test_more_data_than_offered_raises_remote_protocol_error() -> None:
    link = accepted(b"abc")
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"abcd", FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="more than it offered"):
        link.events(link.receiver)


def test_final_record_short_of_the_offer_raises_remote_protocol_error() -> None:
    link = accepted(b"abcdef")
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"abc", FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="ended after 3 of 6"):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED


def test_empty_data_record_that_is_not_the_last_raises_remote_protocol_error() -> None:
    link = accepted(b"abc")
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b""))
    with pytest.raises(RemoteProtocolError, match="empty DATA record"):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED


def test_tiny_data_records_beyond_the_byte_allowance_raise_remote_protocol_error() -> None:
    payload = b"x" * 10_000
    link = accepted(payload)
    allowed = FREE_DATA_RECORDS + 1024 // BYTES_PER_DATA_RECORD  # the 1,024th byte buys one
    for _ in range(allowed):  # one byte each: within the allowance
        link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"x"))
    assert len(link.events(link.receiver)) == allowed
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"x"))
    with pytest.raises(RemoteProtocolError, match="too many DATA records"):
        link.events(link.receiver)


def test_full_size_records_never_reach_the_record_allowance() -> None:
    payload = bytes(range(256)) * 64  # 16 KiB in 4 KiB records, ferry's smallest
    assert converse(payload, whole, record=4096) == payload


def test_second_offer_instead_of_data_raises_remote_protocol_error() -> None:
    link = accepted()
    link.send(link.sender, link.sender.seal_record(RecordType.OFFER, b"{}"))
    with pytest.raises(RemoteProtocolError, match="expected DATA, got OFFER"):
        link.events(link.receiver)


def test_ack_with_another_size_raises_remote_protocol_error() -> None:
    link = accepted(b"abc")
    send_all(link, b"abc", 10)
    link.events(link.receiver)
    body = messages.encode_ack(messages.Ack(2))
    link.send(link.receiver, link.receiver.seal_record(RecordType.ACK, body))
    with pytest.raises(RemoteProtocolError, match="stored 2 bytes"):
        link.events(link.sender)


def test_unsealed_record_after_the_handshake_raises_remote_protocol_error() -> None:
    link = accepted()
    from ferry.protocol.records import encode_record

    link.send(link.sender, encode_record(RecordType.PAKE, b"again"))
    with pytest.raises(RemoteProtocolError, match="unexpected PAKE"):
        link.events(link.receiver)


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=50, deadline=None)  # each starts two real SPAKE2 sides
def test_garbage_in_place_of_the_peer_pake_fails_cleanly_or_waits(garbage: bytes) -> None:
    link = make()
    link.to_sender[:] = garbage
    try:
        events = link.events(link.sender)
    except RemoteProtocolError:
        assert link.sender.state is State.FAILED
        return
    assert events == []
    assert link.sender.state is State.KEY_EXCHANGE


# --- misuse by the driver --------------------------------------------------------------------


def test_send_data_before_accept_is_a_local_protocol_error() -> None:
    link = make()
    with pytest.raises(LocalProtocolError):
        link.sender.send_data(memoryview(b"x"), link.clock.now)


def test_accept_twice_is_a_local_protocol_error() -> None:
    link = make()
    handshake(link)
    link.receiver.accept(link.clock.now)
    with pytest.raises(LocalProtocolError):
        link.receiver.accept(link.clock.now)


def test_send_data_beyond_the_offer_is_a_local_protocol_error() -> None:
    link = accepted(b"ab")
    with pytest.raises(LocalProtocolError):
        link.sender.send_data(memoryview(b"abc"), link.clock.now)


def test_abort_before_keys_produces_nothing_to_send() -> None:
    link = make()
    link.sender.abort("error", "x", link.clock.now)
    assert link.sender.data_to_send() == b""
    assert link.sender.state is State.FAILED


# --- the timer -------------------------------------------------------------------------------


def test_no_timer_before_paired() -> None:
    offer = messages.Offer(messages.KIND_FILE, "a", 1)
    session = SenderSession(PASSWORD, offer, TIMEOUTS)
    assert session.deadline is None
    assert session.expire(1e9) is None


def test_handshake_deadline_counts_from_paired_and_expires_with_timed_out() -> None:
    link = make()
    paired_at = link.clock.now
    assert link.sender.deadline == paired_at + TIMEOUTS.handshake
    link.events(link.sender)  # keyed: still the handshake timer
    link.clock.advance(29.0)
    assert link.sender.expire(link.clock.now) is None
    link.clock.advance(1.0)
    error = link.sender.expire(link.clock.now)
    assert isinstance(error, TimedOut) and "key exchange with the receiver" in error.message
    assert link.sender.state is State.FAILED


def test_io_deadline_moves_with_progress_and_ack_timer_after_the_last_record() -> None:
    link = accepted(b"abcd")
    start = link.clock.now
    assert link.sender.deadline == start + TIMEOUTS.io
    link.clock.advance(100.0)
    link.send(link.sender, link.sender.send_data(memoryview(b"ab"), link.clock.now))
    assert link.sender.deadline == start + 100.0 + TIMEOUTS.io
    link.clock.advance(5.0)
    link.sender.wrote(link.clock.now)
    assert link.sender.deadline == start + 105.0 + TIMEOUTS.io
    link.send(link.sender, link.sender.send_data(memoryview(b"cd"), link.clock.now))
    assert link.sender.state is State.AWAIT_ACK
    assert link.sender.deadline == start + 105.0 + TIMEOUTS.ack
    link.clock.advance(TIMEOUTS.ack)
    error = link.sender.expire(link.clock.now)
    assert isinstance(error, TimedOut) and "did not confirm it stored" in error.message


def test_sender_waits_the_answer_timeout_for_a_decision_not_the_io_timeout() -> None:
    link = make(b"ab")
    handshake(link)
    assert link.sender.state is State.AWAIT_ANSWER
    confirmed = link.clock.now
    assert link.sender.deadline == confirmed + TIMEOUTS.answer > confirmed + TIMEOUTS.io
    link.clock.advance(TIMEOUTS.io + 1)
    assert link.sender.expire(link.clock.now) is None  # a person may take a while
    link.clock.advance(TIMEOUTS.answer)
    error = link.sender.expire(link.clock.now)
    assert isinstance(error, TimedOut) and "did not answer" in error.message


def test_receiver_has_no_timer_while_deciding_or_storing() -> None:
    link = make(b"ab")
    handshake(link)
    assert link.receiver.state is State.DECIDING and link.receiver.deadline is None
    link.receiver.accept(link.clock.now)
    assert link.receiver.deadline == link.clock.now + TIMEOUTS.io
    link.flush(link.receiver)
    link.events(link.sender)
    send_all(link, b"ab", 10)
    link.events(link.receiver)
    assert link.receiver.state is State.STORING and link.receiver.deadline is None
    link.clock.advance(10_000)
    assert link.receiver.expire(link.clock.now) is None


# --- buffers -----------------------------------------------------------------------------------


def test_data_views_point_into_one_reused_buffer() -> None:
    """No copy per record: consecutive DATA plaintexts share the session's buffer."""
    link = accepted(b"abcdef")
    link.send(link.sender, link.sender.send_data(memoryview(b"abc"), link.clock.now))
    link.send(link.sender, link.sender.send_data(memoryview(b"def"), link.clock.now))
    receiver = link.receiver
    space = receiver.writable()
    wire = bytes(link.to_receiver)
    space[: len(wire)] = wire
    receiver.commit(len(wire), link.clock.now)
    first = receiver.next_event()
    second = receiver.next_event()
    assert isinstance(first, DataReceived) and isinstance(second, DataReceived)
    assert bytes(second.data) == b"def" and second.final
    assert first.data.obj is second.data.obj


def test_receiver_buffer_never_exceeds_the_decoder_cap() -> None:
    link = accepted(b"a" * 10)
    for _ in range(50):
        assert len(link.receiver.writable()) <= RecordDecoder.MAX_BUFFER


# -- which peers have had a guess at the code -------------------------------------------


def _lone_sender() -> SenderSession:
    sender = SenderSession(PASSWORD, messages.Offer(messages.KIND_FILE, "a", 1), TIMEOUTS)
    sender.paired(0.0)
    return sender


_PAKE_HEADER = bytes([0, 0, 0, 33, RecordType.PAKE, 0])


@pytest.mark.parametrize(
    "received",
    [
        bytes([0, 0, 0, 32, RecordType.CONFIRM, 0]) + bytes(32),  # another record type
        bytes([0, 0, 0, 40, RecordType.OFFER, 0]) + bytes(40),  # a sealed one, before keys
        bytes([0x80, 0, 0, 0, RecordType.PAKE, 0]),  # oversize
        bytes([0, 0, 0, 5, 0x63, 0]) + b"hello",  # garbage
        _PAKE_HEADER + b"B" + b"\xff" * 32,  # an invalid point
        _PAKE_HEADER + b"A" + b"\x01" * 32,  # a message for the other side
    ],
    ids=["confirm", "sealed", "oversize", "garbage", "invalid-point", "wrong-side"],
)
def test_sender_whose_peer_sent_no_valid_pake_message_fails_with_no_guess_made(
    received: bytes,
) -> None:
    sender = _lone_sender()
    sender.receive_data(received, 0.1)
    with pytest.raises(RemoteProtocolError):
        sender.next_event()
    assert state(sender) is State.FAILED
    assert not sender.peer_keyed


def test_sender_whose_peer_stays_silent_times_out_with_no_guess_made() -> None:
    sender = _lone_sender()
    assert sender.next_event() is NEED_DATA
    assert isinstance(sender.expire(TIMEOUTS.handshake), TimedOut)
    assert state(sender) is State.FAILED
    assert not sender.peer_keyed


def test_sender_whose_peer_sent_a_valid_pake_message_has_given_it_its_guess() -> None:
    sender = _lone_sender()
    guesser = ReceiverSession(b"7-apple-apple-apple", TIMEOUTS)
    sender.receive_data(guesser.first_flight(), 0.1)
    assert isinstance(sender.next_event(), Keyed)
    assert sender.peer_keyed  # whatever comes next (a wrong MAC, silence) is a wrong code
    assert isinstance(sender.expire(TIMEOUTS.handshake), TimedOut)
    assert sender.peer_keyed
