"""The sessions with a tree (manifest + back-to-back file data) and a stream, in memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol import manifest, messages
from ferry.protocol.compression import CODECS
from ferry.protocol.events import (
    Acknowledged,
    AllReceived,
    Answered,
    Confirmed,
    DataReceived,
    Event,
    FileData,
    Keyed,
    OfferReceived,
    State,
)
from ferry.protocol.manifest import Entry
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import FLAG_FINAL, RecordType
from ferry.protocol.sender_session import SenderSession
from ferry.protocol.session import Session
from tests.memory import Cut, MemoryTransport, bytewise, whole
from tests.unit.test_session import PASSWORD, TIMEOUTS


def state(session: Session) -> State:
    return session.state


def tree_offer(entries: list[Entry], records: list[bytes]) -> messages.Offer:
    files = [e for e in entries if not e.is_dir]
    return messages.Offer(
        messages.KIND_TREE, "", sum(e.size for e in files), messages.MANIFEST_VERSION,
        len(entries), len(files), len(records),
    )  # fmt: skip


def make_tree(
    entries: list[Entry],
    cut: Cut = whole,
    max_entries: int = 100,
    records: list[bytes] | None = None,
    offer: messages.Offer | None = None,
) -> MemoryTransport:
    records = manifest.encode_records(entries) if records is None else records
    offer = offer or tree_offer(entries, records)
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS, manifest_records=records),
        ReceiverSession(PASSWORD, TIMEOUTS, max_entries=max_entries),
        cut,
    )
    link.pair()
    return link


def handshake(link: MemoryTransport) -> list[Event]:
    assert link.events(link.sender) == [Keyed()]
    link.flush(link.sender)  # CONFIRM + OFFER + MANIFEST records
    events = link.events(link.receiver)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Confirmed()]
    return events


def file_entry(path: str, size: int) -> Entry:
    return Entry(path, False, size, 1_700_000_000_000_000_000, executable=size % 2 == 1)


def tree_of(sizes: list[int]) -> list[Entry]:
    return [Entry("top", True, 0, 0), Entry("top/empty", True, 0, 5)] + [
        file_entry(f"top/f{i}", size) for i, size in enumerate(sizes)
    ]


def run_tree(sizes: list[int], record: int, cut: Cut = whole) -> dict[int, bytes]:
    """A whole tree conversation; each file's bytes as the receiver saw them, by entry index."""
    entries = tree_of(sizes)
    link = make_tree(entries, cut)
    events = handshake(link)
    assert events[:2] == [Keyed(), Confirmed()]
    assert events[2:] == [OfferReceived(link.sender.offer, tuple(entries))]
    assert state(link.receiver) is State.DECIDING
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Answered(messages.Answer(True, compress=CODECS))]
    payload = b"".join(bytes([i]) * size for i, size in enumerate(sizes))
    view = memoryview(payload)
    while state(link.sender) is State.SENDING:
        chunk = view[link.sender.sent : link.sender.sent + record]
        link.send(link.sender, link.sender.send_data(chunk, link.clock.now))
    events = link.events(link.receiver)
    assert events[-1] == AllReceived()
    assert state(link.receiver) is State.STORING
    got: dict[int, bytes] = {}
    done: list[int] = []
    for event in events[:-1]:
        assert isinstance(event, FileData)
        assert event.index not in done, "bytes after the file was done"
        got[event.index] = got.get(event.index, b"") + bytes(event.data)
        if event.done:
            done.append(event.index)
    assert done == [i + 2 for i in range(len(sizes))]  # every file, in order, once
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(len(payload)))]
    assert state(link.sender) is State.DONE
    return got


@pytest.mark.parametrize("cut", [whole, bytewise], ids=["whole", "bytewise"])
def test_tree_files_packed_into_records_are_split_at_their_boundaries(cut: Cut) -> None:
    got = run_tree([3, 0, 10, 1, 0], record=4, cut=cut)
    assert got == {2: b"\0" * 3, 3: b"", 4: b"\2" * 10, 5: b"\3", 6: b""}


def test_tree_of_empty_files_only_ends_with_one_empty_final_record() -> None:
    assert run_tree([0, 0], record=8) == {2: b"", 3: b""}


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    record=st.integers(1, 64),
)
@settings(max_examples=30, deadline=None)  # each example runs a real SPAKE2 exchange
def test_tree_any_sizes_any_record_size_every_file_whole(sizes: list[int], record: int) -> None:
    got = run_tree(sizes, record)
    assert got == {i + 2: bytes([i]) * size for i, size in enumerate(sizes)}


def test_manifest_spread_over_several_records_is_collected_before_the_offer_event() -> None:
    entries = [Entry("d", True, 0, 0)] + [file_entry(f"d/{'x' * 200}{i}", 1) for i in range(900)]
    records = manifest.encode_records(entries)
    assert len(records) > 2
    link = make_tree(entries, max_entries=1000)
    events = handshake(link)
    assert events[-1] == OfferReceived(link.sender.offer, tuple(entries))


def test_tree_over_the_entry_cap_is_offered_without_its_manifest_and_cannot_be_accepted() -> None:
    entries = tree_of([1, 2, 3])
    link = make_tree(entries, max_entries=4)
    events = handshake(link)
    assert events[-1] == OfferReceived(link.sender.offer)
    with pytest.raises(LocalProtocolError):
        link.receiver.accept(link.clock.now)
    link.receiver.refuse(messages.REASON_TOO_LARGE, "too many", link.clock.now)
    assert link.receiver.state is State.DONE


def test_unknown_manifest_version_is_offered_without_reading_the_manifest() -> None:
    entries = tree_of([1])
    records = manifest.encode_records(entries)
    offer = messages.Offer(messages.KIND_TREE, "", 1, 2, 3, 1, 1)
    link = make_tree(entries, offer=offer, records=records)
    link.sender._offer_body = (
        b'{"kind":"tree","manifest":2,"entries":3,"files":1,"records":1,"size":1}'
    )
    events = handshake(link)
    assert isinstance(events[-1], OfferReceived)
    assert events[-1].offer.manifest == 2 and events[-1].entries == ()


@pytest.mark.parametrize(
    "lie",
    ["more-entries", "fewer-files", "sizes", "extra-record"],
)
def test_manifest_that_disagrees_with_the_offer_raises_remote_protocol_error(lie: str) -> None:
    entries = tree_of([1, 2])
    records = manifest.encode_records(entries)
    offer = tree_offer(entries, records)
    if lie == "more-entries":
        offer = messages.Offer(offer.kind, "", offer.size, 1, offer.entries - 1, offer.files, 1)
    elif lie == "fewer-files":
        offer = messages.Offer(offer.kind, "", offer.size, 1, offer.entries, offer.files - 1, 1)
    elif lie == "sizes":
        offer = messages.Offer(offer.kind, "", offer.size + 1, 1, offer.entries, offer.files, 1)
    else:
        offer = messages.Offer(offer.kind, "", offer.size, 1, offer.entries, offer.files, 2)
        records = records + records
    link = make_tree(entries, records=records, offer=offer)
    link.events(link.sender)
    link.flush(link.sender)
    with pytest.raises(RemoteProtocolError):
        link.events(link.receiver)
    assert link.receiver.state is State.FAILED


def test_other_record_in_place_of_a_manifest_raises_remote_protocol_error() -> None:
    entries = tree_of([1])
    link = make_tree(entries, records=[])
    link.sender._offer_body = messages.encode_offer(tree_offer(entries, [b"x"]))
    link.events(link.sender)
    link.flush(link.sender)
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"x", FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="expected MANIFEST"):
        link.events(link.receiver)


def test_manifest_over_the_byte_cap_raises_remote_protocol_error() -> None:
    entries = [Entry("d", True, 0, 0)] + [file_entry(f"d/{'x' * 200}{i}", 1) for i in range(900)]
    link = make_tree(entries, max_entries=1000)
    link.receiver.max_manifest_bytes = 100_000
    link.events(link.sender)
    link.flush(link.sender)
    with pytest.raises(RemoteProtocolError, match="larger than"):
        link.events(link.receiver)


def test_tree_data_beyond_the_manifest_raises_remote_protocol_error() -> None:
    entries = tree_of([2])
    link = make_tree(entries)
    handshake(link)
    link.receiver.accept(link.clock.now)
    link.send(link.sender, link.sender.seal_record(RecordType.DATA, b"abc", FLAG_FINAL))
    with pytest.raises(RemoteProtocolError, match="more than it offered"):
        link.events(link.receiver)


# --- a stream: no size until the end -------------------------------------------------------


def stream_link() -> MemoryTransport:
    offer = messages.Offer(messages.KIND_STREAM, "stdin", messages.UNKNOWN_SIZE)
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS), ReceiverSession(PASSWORD, TIMEOUTS)
    )
    link.pair()
    link.events(link.sender)
    link.flush(link.sender)
    [_, _, offered] = link.events(link.receiver)
    assert isinstance(offered, OfferReceived) and offered.offer == offer
    link.flush(link.receiver)
    link.events(link.sender)
    link.receiver.accept(link.clock.now)
    link.flush(link.receiver)
    link.events(link.sender)
    return link


def test_stream_ends_where_the_sender_says_and_the_ack_repeats_the_count() -> None:
    link = stream_link()
    for piece, end in ((b"abc", False), (b"defg", False), (b"", True)):
        link.send(link.sender, link.sender.send_data(memoryview(piece), link.clock.now, end=end))
    events = link.events(link.receiver)
    assert [bytes(e.data) for e in events if isinstance(e, DataReceived)] == [b"abc", b"defg", b""]
    assert link.receiver.state is State.STORING
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(7))]


def test_stream_ack_with_another_count_raises_remote_protocol_error() -> None:
    link = stream_link()
    link.send(link.sender, link.sender.send_data(memoryview(b"abc"), link.clock.now, end=True))
    link.events(link.receiver)
    link.send(link.receiver, link.receiver.seal_record(RecordType.ACK, b'{"ok":true,"size":2}'))
    with pytest.raises(RemoteProtocolError, match="stored 2 bytes, not 3"):
        link.events(link.sender)


# --- resume (protocol/cursor.py: the same for a tree and a file): test_session_resume.py --


def test_resume_offer_to_a_sender_that_cannot_resume_is_refused_both_ways() -> None:
    link = make_tree(tree_of([1]))
    handshake(link)
    with pytest.raises(LocalProtocolError):
        link.receiver.accept(link.clock.now, resume_from=1)
    offer = messages.Offer(messages.KIND_FILE, "f", 5)  # no "resume": 1
    sender = SenderSession(PASSWORD, offer, TIMEOUTS)
    other = MemoryTransport(sender, ReceiverSession(PASSWORD, TIMEOUTS))
    other.pair()
    other.events(sender)
    other.flush(sender)
    other.events(other.receiver)
    other.flush(other.receiver)
    other.events(sender)
    body = messages.encode_answer(messages.Answer(True, resume_from=2))
    other.send(other.receiver, other.receiver.seal_record(RecordType.ANSWER, body))
    with pytest.raises(RemoteProtocolError, match="resume"):
        other.events(sender)


def test_a_stream_sending_short_records_only_when_allowed_never_trips_the_allowance() -> None:
    link = stream_link()
    sender = link.sender
    shorts = 0
    for _ in range(3000):
        if sender.may_send_short(1):
            piece, shorts = b"x", shorts + 1
        else:
            piece = b"y" * 1024  # what a stream sends when it may not: a KiB or more
        link.send(sender, sender.send_data(memoryview(piece), link.clock.now))
        link.events(link.receiver)  # raises past the allowance
    assert 1024 < shorts < 3000  # the free records, then one per KiB delivered
