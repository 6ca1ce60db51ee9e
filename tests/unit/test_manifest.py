"""The manifest of a tree (ferry.protocol.manifest): wire form and the receiver's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.client.placement import place
from ferry.client.receive_tree import describe
from ferry.errors import RemoteProtocolError, TooCostly, UnsafeName
from ferry.names import safe_name
from ferry.protocol import manifest, messages
from ferry.protocol.manifest import Entry, plan

DIR = Entry("d", True, 0, 0)


def f(path: str, size: int = 1) -> Entry:
    return Entry(path, False, size, 123, False)


entries_strategy = st.lists(
    st.builds(
        Entry,
        path=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
        is_dir=st.booleans(),
        size=st.integers(0, 2**40),
        mtime_ns=st.integers(0, 2**62),
        executable=st.booleans(),
    ).map(
        lambda e: Entry(
            e.path, e.is_dir, 0 if e.is_dir else e.size, e.mtime_ns, e.executable and not e.is_dir
        )
    ),
    min_size=1,
    max_size=50,
)


@given(entries_strategy)
@settings(max_examples=80, deadline=None)
def test_records_round_trip_every_entry_in_order(entries: list[Entry]) -> None:
    bodies = manifest.encode_records(entries)
    assert [entry for body in bodies for entry in manifest.decode_record(body)] == entries


def test_large_manifest_is_split_into_records_within_the_budget() -> None:
    entries = [f(f"{'n' * 250}{i}") for i in range(2000)]
    bodies = manifest.encode_records(entries)
    assert len(bodies) > 1
    assert all(len(body) <= manifest.RECORD_BUDGET + 64 for body in bodies)
    assert sum(len(manifest.decode_record(b)) for b in bodies) == 2000


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_garbage_record_gives_entries_or_remote_protocol_error(body: bytes) -> None:
    try:
        result = manifest.decode_record(body)
    except RemoteProtocolError:
        return
    assert all(isinstance(e, Entry) for e in result)


@pytest.mark.parametrize(
    "item",
    [
        [],
        "x",
        {"path": 3},
        {"path": "a", "size": -1},
        {"path": "a", "size": True},
        {"path": "a", "dir": "yes"},
        {"path": "a", "dir": True, "size": 5},
        {"path": "a", "mtime": 1.5},
        {"path": "a" * (manifest.MAX_PATH + 1)},
    ],
)
def test_malformed_entry_raises_remote_protocol_error(item: object) -> None:
    with pytest.raises(RemoteProtocolError):
        manifest.decode_record(json.dumps({"entries": [item]}).encode())


@pytest.mark.parametrize("body", [b"[]", b'{"entries":[]}', b'{"entries":{}}', b"\xff"])
def test_record_without_entries_raises_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        manifest.decode_record(body)


def test_plan_keeps_order_and_lists_top_level_names_once() -> None:
    result = plan([DIR, f("d/a"), Entry("d/e", True, 0, 0), f("top.txt")], False, 8)
    assert result.paths == [("d",), ("d", "a"), ("d", "e"), ("top.txt",)]
    assert result.top_level == ["d", "top.txt"]
    assert result.is_dir == [True, False, True, False]


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/d",
        "/d/x",
        "d/../../x",
        "d/..",
        "d/./x",
        "d//x",
        "d/",
        "",
        "d/...",
        "d/ ",
    ],
)
def test_plan_refuses_paths_that_could_escape_or_are_empty(path: str) -> None:
    with pytest.raises(UnsafeName, match="unusable path"):
        plan([DIR, f(path)], False, 8)


@given(
    st.lists(
        st.lists(st.sampled_from(["a", "B", "..", ".", "", " c ", "x:y", "é", "e\u0301", "\x1b"]),
                 min_size=1, max_size=4),
        max_size=12,
    )
)  # fmt: skip
def test_plan_reduces_each_path_as_its_components_one_by_one(raw: list[list[str]]) -> None:
    """plan() reuses a listed parent's reduced parts: the same as reducing every component."""
    kinds: dict[str, bool] = {}  # path -> is a directory, parents first, as senders list
    for parts in raw:
        for i in range(1, len(parts)):
            kinds["/".join(parts[:i])] = True
        kinds.setdefault("/".join(parts), False)
    entries = [Entry(path, True, 0, 0) if is_dir else f(path) for path, is_dir in kinds.items()]

    def reduced(path: str) -> tuple[str, ...] | None:
        try:
            return tuple(safe_name(part) if part else "" for part in path.split("/"))
        except UnsafeName:
            return None

    try:
        result = plan(entries, False, 8)
    except UnsafeName:
        return  # refusals are judged by the other tests; here only what is accepted
    for entry, reduced_parts in zip(entries, result.paths, strict=True):
        assert reduced_parts == reduced(entry.path)


def test_plan_sanitises_components_like_a_single_file_name() -> None:
    result = plan([DIR, f("d/ab:c\u202e.txt"), f("d/C:x"), f("d/e\x1b[31m")], False, 8)
    assert result.paths[1:] == [("d", "ab_c.txt"), ("d", "x"), ("d", "e[31m")]


def test_plan_refuses_an_entry_outside_a_listed_directory() -> None:
    with pytest.raises(UnsafeName, match="not inside a listed directory"):
        plan([f("d/a")], False, 8)
    with pytest.raises(UnsafeName, match="not inside a listed directory"):
        plan([f("d"), f("d/a")], False, 8)  # a file cannot hold anything


def test_plan_refuses_duplicates_and_names_equal_after_sanitising() -> None:
    with pytest.raises(UnsafeName, match="collides"):
        plan([DIR, f("d/a"), f("d/a")], False, 8)
    with pytest.raises(UnsafeName, match="collides"):
        plan([DIR, f("d/ab:c"), f("d/ab_c")], False, 8)


def test_plan_folds_case_only_where_the_filesystem_ignores_it() -> None:
    entries = [DIR, f("d/README"), f("d/readme"), f("d/Straße"), f("d/STRASSE")]
    assert len(plan(entries, False, 8).paths) == 5
    with pytest.raises(UnsafeName, match=r"collides.*\(and|collides") as refused:
        plan(entries, True, 8)
    assert refused.value.message.count("collides") == 2  # every problem, together


def test_plan_on_a_case_insensitive_dir_files_an_entry_under_its_listed_parents_spelling(
    tmp_path: Path,
) -> None:
    # "A/x" lands in the listed "a" on such a filesystem: one top-level name,
    # spelled as listed, and the receiver's summary and placement use it.
    entries = [Entry("a", True, 0, 0), f("A/x"), Entry("a/B", True, 0, 0), f("a/b/y")]
    planned = plan(entries, True, 8)
    assert planned.top_level == ["a"]
    assert planned.paths == [("a",), ("a", "x"), ("a", "B"), ("a", "B", "y")]
    offer = messages.Offer(messages.KIND_TREE, "", 2, 1, 4, 2, 1)
    assert describe(offer, planned).endswith(": a/")
    assert place(tmp_path, planned, overwrite=False, merge=False).conflicts == []
    assert place(tmp_path, planned, overwrite=False, merge=False).moves == [("a",)]
    (tmp_path / "a").mkdir()
    assert place(tmp_path, planned, overwrite=True, merge=False).conflicts == ["a/"]


def test_plan_refuses_paths_deeper_than_the_cap() -> None:
    entries = [Entry("/".join("d" * (i + 1)), True, 0, 0) for i in range(5)]
    assert len(plan(entries, False, 5).paths) == 5
    with pytest.raises(UnsafeName, match="deeper than 4"):
        plan(entries, False, 4)


def test_plan_reports_at_most_a_few_problems_and_says_there_are_more() -> None:
    with pytest.raises(UnsafeName, match=r"\(and more\)$"):
        plan([f(f"../{i}") for i in range(10)], False, 8)
    with pytest.raises(UnsafeName) as caught:
        plan([f(f"../{i}") for i in range(5)], False, 8)
    assert "more" not in str(caught.value)


def test_tree_offer_round_trips_and_unknown_manifest_version_keeps_only_the_record_count() -> None:
    offer = messages.Offer(messages.KIND_TREE, "", 10, 1, 3, 2, 1)
    assert messages.decode_offer(messages.encode_offer(offer)) == offer
    future = b'{"kind":"tree","manifest":2,"records":4,"whatever":[1]}'
    assert messages.decode_offer(future) == messages.Offer(
        messages.KIND_TREE, "", 0, manifest=2, records=4
    )


@pytest.mark.parametrize(
    "offer",
    [
        messages.Offer(messages.KIND_STREAM, "stdin", messages.UNKNOWN_SIZE),
        messages.Offer(messages.KIND_TEXT, "", 11),
        messages.Offer(messages.KIND_FILE, "a.txt", 5),
    ],
)
def test_other_offers_round_trip(offer: messages.Offer) -> None:
    assert messages.decode_offer(messages.encode_offer(offer)) == offer


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind":"tree","manifest":1,"entries":-1,"files":0,"records":1,"size":0}',
        b'{"kind":"tree","manifest":1,"entries":2,"files":3,"records":1,"size":0}',
        b'{"kind":"tree","manifest":1,"entries":2,"files":1,"records":9,"size":0}',
        b'{"kind":"tree","manifest":1,"entries":2,"files":1,"records":1}',
        b'{"kind":"text"}',
        b'{"kind":"stream"}',
    ],
)
def test_impossible_offers_raise_remote_protocol_error(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        messages.decode_offer(body)


def test_plan_gives_up_when_out_of_time() -> None:
    from ferry.protocol.manifest import CHECK_EVERY

    entries = [Entry(f"f{i}", False, 1, 0) for i in range(3 * CHECK_EVERY)]
    asked: list[int] = []

    def out_of_time() -> bool:
        asked.append(1)
        return len(asked) == 2

    with pytest.raises(TooCostly):
        plan(entries, False, 64, out_of_time)
    assert len(asked) == 2
    assert len(plan(entries, False, 64, lambda: False).paths) == len(entries)


def test_plan_stops_at_the_first_problems_and_never_reduces_a_too_deep_path() -> None:
    deep = "/".join(["a"] * 500)
    entries = [Entry(f"{deep}{i}", False, 1, 0) for i in range(10_000)]
    with pytest.raises(UnsafeName, match=r"deeper than 64 levels.*\(and more\)"):
        plan(entries, False, 64)
