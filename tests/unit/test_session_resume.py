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
from ferry.protocol.manifest import Entry
from ferry.protocol.messages import Kept
from ferry.protocol.records import FLAG_FINAL, RecordType
from ferry.protocol.session import (
    Acknowledged,
    AllReceived,
    Answered,
    DataReceived,
    DigestReceived,
    Event,
    FileData,
    ProofReceived,
    ReceiverSession,
    SenderSession,
    Started,
    State,
    VerdictReceived,
)
from tests.memory import Cut, MemoryTransport, bytewise, whole
from tests.unit.test_session import PASSWORD, TIMEOUTS
from tests.unit.test_session_tree import handshake, resumable, tree_of

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


@settings(max_examples=60, deadline=None)
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


def test_data_where_a_start_is_due_raises_remote_protocol_error() -> None:
    link = started_link([4], [Kept(2, 2)])
    sealed(link, RecordType.DATA, b"abcd", FLAG_FINAL)
    with pytest.raises(RemoteProtocolError, match="expected START"):
        link.events(link.receiver)


def test_data_of_the_previous_file_running_into_a_kept_one_raises_remote_protocol_error() -> None:
    link = started_link([2, 4], [Kept(3, 2)])
    sealed(link, RecordType.DATA, b"abcdef", FLAG_FINAL)  # file 2's and then 3's: no START
    with pytest.raises(RemoteProtocolError, match="START or DIGEST was due"):
        link.events(link.receiver)


@pytest.mark.parametrize(
    ("index", "offset"), [(3, 2), (2, 1), (2, 3)], ids=["other-file", "short", "long"]
)
def test_start_for_another_file_or_offset_raises_remote_protocol_error(
    index: int, offset: int
) -> None:
    link = started_link([4, 4], [Kept(2, 2), Kept(3, 2)])
    sealed(link, RecordType.START, messages.encode_start(messages.Start(offset, index)))
    with pytest.raises(RemoteProtocolError, match="START does not answer"):
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


def test_sender_misuse_of_start_file_and_digest_is_a_local_protocol_error() -> None:
    link = started_link([4, 4], [Kept(2, 2), Kept(3, 2)])
    sender = link.sender
    with pytest.raises(LocalProtocolError):
        sender.start_file(2, 1, link.clock.now)  # neither 0 nor what was kept
    with pytest.raises(LocalProtocolError):
        sender.send_file_digest(2, SHA_OTHER, link.clock.now)  # not started
    sender.start_file(3, 0, link.clock.now)
    with pytest.raises(LocalProtocolError):
        sender.start_file(2, 2, link.clock.now)  # out of order
    with pytest.raises(LocalProtocolError):
        sender.send_file_digest(3, SHA_OTHER, link.clock.now)  # started over: no digest


# --- a stream resumes like a file, without a size ---------------------------------------------


def test_a_stream_resumes_after_the_kept_bytes_and_ends_with_the_digest() -> None:
    offer = messages.Offer(messages.KIND_STREAM, "stdin", messages.UNKNOWN_SIZE, resume=True)
    link = resumable(b"", offer)
    link.receiver.accept(link.clock.now, resume_from=3)
    link.flush(link.receiver)
    [answered] = link.events(link.sender)
    assert isinstance(answered, Answered) and answered.answer.resume_from == 3
    link.sender.send_proofs([mac(link.sender, -1, b"abc")], link.clock.now)
    link.flush(link.sender)
    [proved] = link.events(link.receiver)
    assert proved == ProofReceived((mac(link.receiver, -1, b"abc"),))
    link.receiver.verdict([True], link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [VerdictReceived((True,))]
    link.sender.start_at(3, link.clock.now)
    link.flush(link.sender)
    link.send(link.sender, link.sender.send_data(memoryview(b"defg"), link.clock.now, end=True))
    link.sender.send_digest(sha(b"abcdefg"), link.clock.now)
    link.flush(link.sender)
    events = link.events(link.receiver)
    assert events == [
        Started(3),
        DataReceived(memoryview(b"defg"), True),
        DigestReceived(sha(b"abcdefg")),
    ]
    link.receiver.acknowledge(link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [Acknowledged(messages.Ack(7))]


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


def test_a_kept_file_whose_proof_does_not_match_can_only_start_over() -> None:
    link, _ = resumable_tree([4, 4])
    kept = [Kept(2, 2), Kept(3, 2)]
    held = {2: b"\xff\xff", 3: content(3, 2)}  # file 2's kept bytes are not the sender's
    assert accept_with(link, kept, held) == [False, True]
    assert link.sender.matched == {3}
    with pytest.raises(LocalProtocolError, match="matched"):
        link.sender.start_file(2, 2, link.clock.now)
    sealed(link, RecordType.START, messages.encode_start(messages.Start(2, 2)))
    with pytest.raises(RemoteProtocolError, match="START does not answer"):
        link.events(link.receiver)


def test_a_file_whose_proof_does_not_match_can_only_start_over() -> None:
    offer = messages.Offer(messages.KIND_FILE, "f", 6, resume=True)
    link = resumable(b"", offer)
    link.receiver.accept(link.clock.now, resume_from=3)
    link.flush(link.receiver)
    link.events(link.sender)
    link.sender.send_proofs([mac(link.sender, -1, b"abc")], link.clock.now)
    link.flush(link.sender)
    [proved] = link.events(link.receiver)
    assert isinstance(proved, ProofReceived)
    assert proved.macs[0] != mac(link.receiver, -1, b"abd")  # what it kept differs
    link.receiver.verdict([False], link.clock.now)
    link.flush(link.receiver)
    assert link.events(link.sender) == [VerdictReceived((False,))]
    with pytest.raises(LocalProtocolError, match="matched"):
        link.sender.start_at(3, link.clock.now)
    sealed(link, RecordType.START, messages.encode_start(messages.Start(3)))
    with pytest.raises(RemoteProtocolError, match="started at 3"):
        link.events(link.receiver)


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
