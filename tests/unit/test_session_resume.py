"""Resuming a tree and a stream, in memory: RESUME, PROOF and VERDICT records, per-file
START and DIGEST.

The sender loop here does what client/sources.py does with a tree: files'
bytes packed into records, and for a file the receiver kept, the records
so far written out, START, the rest, the records written out, DIGEST.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.errors import LocalProtocolError, RemoteProtocolError
from ferry.protocol import manifest, messages
from ferry.protocol.events import (
    Acknowledged,
    AllReceived,
    Answered,
    DataReceived,
    DigestReceived,
    Event,
    FileData,
    ProofReceived,
    Started,
    State,
    VerdictReceived,
)
from ferry.protocol.manifest import Entry
from ferry.protocol.messages import Kept
from ferry.protocol.receiver_session import ReceiverSession
from ferry.protocol.records import FLAG_FINAL, RecordType
from ferry.protocol.sender_session import SenderSession
from tests.memory import Cut, MemoryTransport, bytewise, whole
from tests.unit.test_session import PASSWORD, TIMEOUTS
from tests.unit.test_session_tree import handshake, tree_of

SHA_OTHER = "0" * 64


def resumable_tree(sizes: list[int], cut: Cut = whole) -> tuple[MemoryTransport, list[Entry]]:
    entries = tree_of(sizes)
    records = manifest.encode_records(entries)
    files = [e for e in entries if not e.is_dir]
    offer = messages.Offer(
        messages.KIND_TREE, "", sum(e.size for e in files), messages.MANIFEST_VERSION,
        len(entries), len(files), len(records), resume=True,
    )  # fmt: skip
    sizes_by_index = {i: e.size for i, e in enumerate(entries) if not e.is_dir}
    link = MemoryTransport(
        SenderSession(
            PASSWORD, offer, TIMEOUTS, manifest_records=records, file_sizes=sizes_by_index
        ),
        ReceiverSession(PASSWORD, TIMEOUTS),
        cut,
    )
    link.pair()
    handshake(link)
    return link, entries


def content(index: int, size: int) -> bytes:
    return bytes((index * 7 + i) % 251 for i in range(size))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send_tree(link: MemoryTransport, entries: list[Entry], record: int) -> None:
    """The sender's side of a tree's data, as client/sources.py does it."""
    sender = link.sender
    now = link.clock.now
    fill = bytearray()

    def write_out() -> None:
        link.send(sender, sender.send_data(memoryview(bytes(fill)), now))
        fill.clear()

    for index, entry in enumerate(entries):
        if entry.is_dir or not entry.size:
            continue
        data = content(index, entry.size)
        offset = 0
        kept = sender.kept.get(index)
        if kept is not None:
            if fill:
                write_out()
            offset = kept.size if index in sender.matched else 0
            sender.start_file(index, offset, now)
            link.flush(sender)
        for byte in data[offset:]:
            fill.append(byte)
            if len(fill) == record:
                write_out()
        if kept is not None and offset:
            if fill:
                write_out()
            sender.send_file_digest(index, sha(data), now)
            link.flush(sender)
    if sender.state is State.SENDING:
        write_out()


def accept_with(
    link: MemoryTransport, kept: list[Kept], held: dict[int, bytes] | None = None
) -> list[bool]:
    """Accept with `kept`, the receiver holding `held` of each (default: the sender's own
    first bytes); then the proof round. Which kept files resume."""
    link.receiver.accept(link.clock.now, kept=kept)
    link.flush(link.receiver)
    [answered] = link.events(link.sender)
    assert isinstance(answered, Answered)
    assert answered.answer.resume_records == len(messages.encode_resume(kept))
    assert link.sender.kept == {k.index: k for k in kept}
    if not kept:
        return []
    return prove(link, kept, held or {k.index: content(k.index, k.size) for k in kept})


def mac(session: SenderSession | ReceiverSession, index: int, data: bytes) -> str:
    proof = session.proof(index, len(data))
    proof.update(data)
    return proof.hexdigest()


def prove(link: MemoryTransport, kept: list[Kept], held: dict[int, bytes]) -> list[bool]:
    """The sender proves (its content's first bytes), the receiver judges (against held)."""
    sender, receiver, now = link.sender, link.receiver, link.clock.now
    sizes = sender.file_sizes
    sender.send_proofs([mac(sender, k.index, content(k.index, sizes[k.index])[: k.size])
                        for k in kept], now)  # fmt: skip
    link.flush(sender)
    [proved] = link.events(receiver)
    assert isinstance(proved, ProofReceived) and len(proved.macs) == len(kept)
    matched = [
        hmac.compare_digest(theirs, mac(receiver, k.index, held[k.index]))
        for k, theirs in zip(kept, proved.macs, strict=True)
    ]
    receiver.verdict(matched, now)
    link.flush(receiver)
    assert link.events(sender) == [VerdictReceived(tuple(matched))]
    return matched


def replay(events: list[Event], entries: list[Entry], kept: dict[int, bytes]) -> dict[int, bytes]:
    """Each file as the receiver would store it, checking the events' order and digests."""
    files: dict[int, bytes] = {}
    started: dict[int, int] = {}
    digest_due: int | None = None
    assert events[-1] == AllReceived()
    for event in events[:-1]:
        if isinstance(event, Started):
            assert event.index is not None and digest_due is None
            started[event.index] = event.offset
            files[event.index] = kept[event.index][: event.offset]
        elif isinstance(event, DigestReceived):
            assert event.index is not None and event.index == digest_due
            assert event.sha256 == sha(files[event.index])
            digest_due = None
        else:
            assert isinstance(event, FileData) and digest_due is None
            if entries[event.index].size and event.index in kept:
                assert event.index in started, "a kept file's bytes before its START"
            files[event.index] = files.get(event.index, b"") + bytes(event.data)
            if event.done and started.get(event.index):
                digest_due = event.index
    assert digest_due is None
    return files


@settings(max_examples=40, deadline=None)  # each example runs a real SPAKE2 exchange
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    record=st.integers(1, 17),
    shares=st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=6, max_size=6),
    bytewise_cut=st.booleans(),
)
def test_a_resumed_tree_moves_only_what_was_not_kept_and_stores_every_file_whole(
    sizes: list[int], record: int, shares: list[tuple[float, bool]], bytewise_cut: bool
) -> None:
    link, entries = resumable_tree(sizes, bytewise if bytewise_cut else whole)
    kept_bytes: dict[int, bytes] = {}
    kept: list[Kept] = []
    for index, entry in enumerate(entries):
        share, good = shares[(index - 2) % len(shares)]
        size = int(entry.size * share)
        if entry.is_dir or size == 0:
            continue
        data = content(index, entry.size)[:size] if good else b"\xff" * size
        kept_bytes[index] = data
        kept.append(Kept(index, size))
    matched = accept_with(link, kept, kept_bytes)
    assert matched == [kept_bytes[k.index] == content(k.index, k.size) for k in kept]
    send_tree(link, entries, record)
    files = replay(link.events(link.receiver), entries, kept_bytes)
    for index, entry in enumerate(entries):
        if not entry.is_dir:
            assert files.get(index, b"") == content(index, entry.size)
    moved = link.receiver._delivered
    skipped = sum(k.size for k in kept if kept_bytes[k.index] == content(k.index, k.size))
    assert moved == sum(e.size for e in entries) - skipped
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(sum(sizes)))]
    assert link.sender.state is State.DONE


def test_a_tree_kept_whole_sends_starts_digests_and_one_empty_final_record() -> None:
    link, entries = resumable_tree([3, 5])
    kept = [Kept(i, entries[i].size) for i in (2, 3)]
    accept_with(link, kept)
    send_tree(link, entries, record=4)
    events = link.events(link.receiver)
    names = [type(e).__name__ for e in events]
    assert names == ["Started", "FileData", "DigestReceived"] * 2 + ["AllReceived"]
    assert link.receiver._delivered == 0
    assert link.receiver.state is State.STORING


def started_link(sizes: list[int], kept: list[Kept]) -> MemoryTransport:
    link, _ = resumable_tree(sizes)
    accept_with(link, kept)
    return link


def sealed(link: MemoryTransport, kind: RecordType, body: bytes, flags: int = 0) -> None:
    link.send(link.sender, link.sender.seal_record(kind, body, flags))


def test_data_of_the_previous_file_running_into_a_kept_one_raises_remote_protocol_error() -> None:
    link = started_link([2, 4], [Kept(3, 2)])
    sealed(link, RecordType.DATA, b"abcdef", FLAG_FINAL)  # file 2's and then 3's: no START
    with pytest.raises(RemoteProtocolError, match="START or DIGEST was due"):
        link.events(link.receiver)


def test_data_after_a_resumed_file_before_its_digest_raises_remote_protocol_error() -> None:
    link = started_link([4, 2], [Kept(2, 2)])
    sealed(link, RecordType.START, messages.encode_start(messages.Start(2, 2)))
    sealed(link, RecordType.DATA, b"cdxy", FLAG_FINAL)  # file 2's end, then file 3's bytes
    with pytest.raises(RemoteProtocolError, match="START or DIGEST was due"):
        link.events(link.receiver)


def test_digest_for_another_file_raises_remote_protocol_error() -> None:
    link = started_link([4, 2], [Kept(2, 2)])
    sealed(link, RecordType.START, messages.encode_start(messages.Start(2, 2)))
    sealed(link, RecordType.DATA, b"cd")
    sealed(link, RecordType.DIGEST, messages.encode_digest(messages.Digest(SHA_OTHER, 3)))
    with pytest.raises(RemoteProtocolError, match="another file"):
        link.events(link.receiver)


@pytest.mark.parametrize(
    "kept",
    [
        [Kept(0, 1)],  # a directory
        [Kept(2, 5)],  # longer than the file
        [Kept(3, 1), Kept(2, 1)],  # out of order
        [Kept(9, 1)],  # no such entry
    ],
    ids=["directory", "longer", "out-of-order", "no-entry"],
)
def test_a_resume_list_that_does_not_fit_the_tree_fails_both_sides(kept: list[Kept]) -> None:
    link, _ = resumable_tree([4, 4])
    with pytest.raises(LocalProtocolError):
        link.receiver.accept(link.clock.now, kept=kept)
    answer = messages.Answer(True, resume_records=1)
    link.send(link.receiver, link.receiver.seal_record(RecordType.ANSWER,
                                                      messages.encode_answer(answer)))  # fmt: skip
    [body] = messages.encode_resume(kept)
    link.send(link.receiver, link.receiver.seal_record(RecordType.RESUME, body))
    with pytest.raises(RemoteProtocolError, match="does not fit"):
        link.events(link.sender)


def test_a_resume_list_for_a_tree_that_did_not_offer_resuming_raises() -> None:
    entries = tree_of([4])
    records = manifest.encode_records(entries)
    offer = messages.Offer(messages.KIND_TREE, "", 4, 1, len(entries), 1, len(records))
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS, manifest_records=records),
        ReceiverSession(PASSWORD, TIMEOUTS),
    )
    link.pair()
    handshake(link)
    with pytest.raises(LocalProtocolError):
        link.receiver.accept(link.clock.now, kept=[Kept(2, 1)])
    answer = messages.encode_answer(messages.Answer(True, resume_records=1))
    link.send(link.receiver, link.receiver.seal_record(RecordType.ANSWER, answer))
    with pytest.raises(RemoteProtocolError, match="not possible"):
        link.events(link.sender)


def test_many_kept_files_span_several_resume_records() -> None:
    sizes = [1] * (messages.KEPT_PER_RECORD + 10)
    link, entries = resumable_tree(sizes)
    kept = [Kept(i, 1) for i, e in enumerate(entries) if not e.is_dir]
    accept_with(link, kept)
    assert len(messages.encode_resume(kept)) == 2
    send_tree(link, entries, record=64)
    assert link.events(link.receiver)[-1] == AllReceived()


# --- one kept file: the one file (index None), a stream, or a tree's file: one rule -------------

SHAPES = ["file", "stream", "tree"]


def resumable(offer: messages.Offer) -> MemoryTransport:
    """A file or a stream that can resume, offered and confirmed: the receiver decides."""
    link = MemoryTransport(
        SenderSession(PASSWORD, offer, TIMEOUTS), ReceiverSession(PASSWORD, TIMEOUTS)
    )
    link.pair()
    handshake(link)
    return link


def kept_one(
    shape: str, size: int, kept: int, matched: bool = True
) -> tuple[MemoryTransport, int | None, bytes]:
    """A link where the receiver kept `kept` bytes of one file of `size` (the one file, a
    stream, or a tree's only file) and the proof round is over: `matched` or not. The
    link, the file's index (None but for a tree) and the sender's bytes."""
    data = content(2, size)
    held = data[:kept] if matched else b"\xff" * kept
    if shape == "tree":
        link, _ = resumable_tree([size])
        link.receiver.accept(link.clock.now, kept=[Kept(2, kept)])
        index: int | None = 2
    else:
        stream = shape == "stream"
        offer = messages.Offer(
            messages.KIND_STREAM if stream else messages.KIND_FILE, "f",
            messages.UNKNOWN_SIZE if stream else size, resume=True,
        )  # fmt: skip
        link = resumable(offer)
        link.receiver.accept(link.clock.now, resume_from=kept)
        index = None
    link.flush(link.receiver)
    [answered] = link.events(link.sender)
    assert isinstance(answered, Answered)
    proof_index = -1 if index is None else index
    link.sender.send_proofs([mac(link.sender, proof_index, data[:kept])], link.clock.now)
    link.flush(link.sender)
    [proved] = link.events(link.receiver)
    assert isinstance(proved, ProofReceived)
    ours = mac(link.receiver, proof_index, held)
    link.receiver.verdict([hmac.compare_digest(proved.macs[0], ours)], link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [VerdictReceived((matched,))]
    assert link.sender.matched == ({index} if matched else set())
    assert link.receiver.state is State.AWAIT_START
    return link, index, data


def send_rest(link: MemoryTransport, data: bytes, offset: int) -> None:
    """The file's bytes from offset on, in one final record."""
    link.send(link.sender, link.sender.send_data(memoryview(data[offset:]), link.clock.now, True))


def data_of(events: list[Event]) -> bytes:
    return b"".join(bytes(e.data) for e in events if isinstance(e, DataReceived | FileData))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kept", [4, 10], ids=["part", "whole"])
def test_a_kept_file_resumes_after_its_kept_bytes_and_ends_with_its_digest(
    shape: str, kept: int
) -> None:
    link, index, data = kept_one(shape, 10, kept)
    if kept < 10:
        with pytest.raises(LocalProtocolError, match="START or DIGEST was due"):
            link.sender.send_data(memoryview(data[kept:]), link.clock.now, end=True)
    link.sender.start_file(index, kept, link.clock.now)
    link.flush(link.sender)
    if shape == "tree":  # a tree's DIGEST follows the file's last byte, then the final record
        if kept < 10:
            send_rest(link, data, kept)
        link.sender.send_file_digest(index, sha(data), link.clock.now)
        link.flush(link.sender)
        if kept == 10:
            send_rest(link, data, kept)
    else:  # the one file's last byte is its final record's
        send_rest(link, data, kept)
        link.sender.send_file_digest(index, sha(data), link.clock.now)
        link.flush(link.sender)
    events = link.events(link.receiver)
    assert events[0] == Started(kept, index)
    assert DigestReceived(sha(data), index) in events
    assert data_of(events) == data[kept:]
    assert events[-1] == (AllReceived() if shape == "tree" else DigestReceived(sha(data), index))
    assert link.receiver.state is State.STORING
    assert link.receiver._delivered == 10 - kept
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(10))]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("matched", [True, False], ids=["matched", "not-matched"])
def test_a_kept_file_may_start_over_and_then_has_no_digest(shape: str, matched: bool) -> None:
    link, index, data = kept_one(shape, 6, 3, matched)
    link.sender.start_file(index, 0, link.clock.now)
    link.flush(link.sender)
    send_rest(link, data, 0)
    with pytest.raises(LocalProtocolError, match="another file"):
        link.sender.send_file_digest(index, sha(data), link.clock.now)
    events = link.events(link.receiver)
    assert events[0] == Started(0, index)
    assert not any(isinstance(e, DigestReceived) for e in events)
    assert data_of(events) == data
    assert link.receiver.state is State.STORING
    assert link.receiver.resumed is False


@pytest.mark.parametrize("shape", SHAPES)
def test_a_kept_file_whose_proof_does_not_match_can_only_start_over(shape: str) -> None:
    link, index, _ = kept_one(shape, 6, 3, matched=False)
    with pytest.raises(LocalProtocolError, match="does not answer"):
        link.sender.start_file(index, 3, link.clock.now)
    sealed(link, RecordType.START, messages.encode_start(messages.Start(3, index)))
    with pytest.raises(RemoteProtocolError, match="does not answer"):
        link.events(link.receiver)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("offset", "other"), [(1, False), (4, False), (3, True)], ids=["short", "long", "other-file"]
)
def test_a_start_elsewhere_than_zero_or_the_kept_bytes_raises_remote_protocol_error(
    shape: str, offset: int, other: bool
) -> None:
    link, index, _ = kept_one(shape, 6, 3)
    if other:  # a START for another file than the kept one (the one file: with an index)
        index = 7 if index is None else None
    sealed(link, RecordType.START, messages.encode_start(messages.Start(offset, index)))
    with pytest.raises(RemoteProtocolError, match="does not answer"):
        link.events(link.receiver)


@pytest.mark.parametrize("shape", SHAPES)
def test_data_where_a_start_is_due_raises_remote_protocol_error(shape: str) -> None:
    link, _, data = kept_one(shape, 6, 3)
    sealed(link, RecordType.DATA, data[3:], FLAG_FINAL)
    with pytest.raises(RemoteProtocolError, match="expected START"):
        link.events(link.receiver)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_second_start_or_a_digest_out_of_turn_is_a_local_protocol_error(shape: str) -> None:
    link, index, data = kept_one(shape, 6, 3)
    with pytest.raises(LocalProtocolError, match="another file"):
        link.sender.send_file_digest(index, sha(data), link.clock.now)  # not started
    link.sender.start_file(index, 3, link.clock.now)
    with pytest.raises(LocalProtocolError, match="does not answer"):
        link.sender.start_file(index, 3, link.clock.now)  # once
    with pytest.raises(LocalProtocolError, match="another file"):
        link.sender.send_file_digest(index, sha(data), link.clock.now)  # before its last byte


def test_kept_files_of_a_tree_start_in_order() -> None:
    link = started_link([4, 4], [Kept(2, 2), Kept(3, 2)])
    sender = link.sender
    with pytest.raises(LocalProtocolError, match="does not answer"):
        sender.start_file(3, 0, link.clock.now)  # file 2's START comes first
    with pytest.raises(LocalProtocolError, match="does not answer"):
        sender.start_file(2, 1, link.clock.now)  # neither 0 nor what was kept
    sender.start_file(2, 0, link.clock.now)
    with pytest.raises(LocalProtocolError, match="START or DIGEST was due"):
        sender.send_data(memoryview(content(2, 4) + b"x"), link.clock.now)  # into file 3


# --- the RESUME record ------------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**12)), max_size=1200))
def test_resume_records_round_trip(items: list[tuple[int, int]]) -> None:
    kept = [Kept(i, size) for i, size in items]
    bodies = messages.encode_resume(kept)
    assert all(len(body) <= 64 * 1024 for body in bodies)
    assert [k for body in bodies for k in messages.decode_resume(body)] == kept


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"have":[]}', b'{"have":[[1]]}', b'{"have":[[1,-2]]}', b'{"have":[[true,2]]}',
     b'{"have":[[1,2,"' + b"a" * 64 + b'"]]}', b'{"have":[[1,"2"]]}', b"[]"],
)  # fmt: skip
def test_malformed_resume_records_raise_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        messages.decode_resume(body)


# --- proofs: the receiver reveals nothing of what it kept --------------------------------------


def test_the_receivers_records_hold_sizes_only_never_anything_of_the_kept_bytes() -> None:
    link, _ = resumable_tree([6, 6])
    kept = [Kept(2, 4), Kept(3, 6)]
    link.receiver.accept(link.clock.now, kept=kept)
    sent = link.receiver.data_to_send()
    assert messages.encode_resume(kept) == [b'{"have":[[2,4],[3,6]]}']
    assert b"sha" not in sent and len(sent) < 200  # ANSWER + one RESUME, sealed
    assert link.receiver.state is State.AWAIT_PROOF


def test_a_start_or_data_before_the_proof_raises_remote_protocol_error() -> None:
    link, _ = resumable_tree([4])
    link.receiver.accept(link.clock.now, kept=[Kept(2, 2)])
    sealed(link, RecordType.START, messages.encode_start(messages.Start(2, 2)))
    with pytest.raises(RemoteProtocolError, match="expected PROOF"):
        link.events(link.receiver)


@pytest.mark.parametrize("count", [1, 3])
def test_a_proof_or_verdict_that_does_not_fit_what_was_kept_raises(count: int) -> None:
    link, _ = resumable_tree([4, 4])
    kept = [Kept(2, 2), Kept(3, 2)]
    link.receiver.accept(link.clock.now, kept=kept)
    link.flush(link.receiver)
    link.events(link.sender)
    [body] = messages.encode_proofs(["a" * 64] * count)
    sealed(link, RecordType.PROOF, body)
    with pytest.raises(RemoteProtocolError, match="proof does not fit"):
        link.events(link.receiver)
    [verdict] = messages.encode_verdicts([True] * count)
    link.send(link.receiver, link.receiver.seal_record(RecordType.VERDICT, verdict))
    link.sender.send_proofs(["a" * 64] * 2, link.clock.now)
    with pytest.raises(RemoteProtocolError, match="verdict does not fit"):
        link.events(link.sender)


def test_proofs_are_bound_to_the_session_the_file_and_the_length() -> None:
    link, _ = resumable_tree([4, 4])
    other, _ = resumable_tree([4, 4])
    data = b"same"
    assert mac(link.sender, 2, data) == mac(link.receiver, 2, data)
    assert mac(link.sender, 2, data) != mac(other.sender, 2, data)  # another session
    assert mac(link.sender, 2, data) != mac(link.sender, 3, data)  # another file
    short = link.sender.proof(2, 3)
    short.update(data)  # the same bytes, claimed as 3 kept
    assert short.hexdigest() != mac(link.sender, 2, data)


@given(st.lists(st.booleans(), min_size=1, max_size=1200))
def test_proof_and_verdict_records_round_trip_in_resume_batches(matched: list[bool]) -> None:
    macs = [f"{i:064x}" for i in range(len(matched))]
    proofs = messages.encode_proofs(macs)
    verdicts = messages.encode_verdicts(matched)
    assert len(proofs) == len(verdicts) == len(messages.encode_resume(
        [Kept(i, 1) for i in range(len(matched))]))  # fmt: skip
    assert [m for body in proofs for m in messages.decode_proof(body)] == macs
    assert [v for body in verdicts for v in messages.decode_verdict(body)] == matched


@pytest.mark.parametrize(
    ("decode", "body"),
    [(messages.decode_proof, body) for body in
     (b"{}", b'{"macs":[]}', b'{"macs":["xyz"]}', b'{"macs":[1]}', b"[]")]
    + [(messages.decode_verdict, body) for body in
       (b"{}", b'{"match":""}', b'{"match":"012"}', b'{"match":[true]}', b"[]")],
)  # fmt: skip
def test_malformed_proof_and_verdict_records_raise_remote_protocol_error(
    decode: Callable[[bytes], object], body: bytes
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(body)
