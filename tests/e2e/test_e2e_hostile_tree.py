"""The real ./receive against a malicious sender offering a tree (hostile manifests).

The fake (tests/e2e/fakes.py) is built on the project's own SenderSession, so its OFFER and
MANIFEST records are authentic: what a person holding the code could send. Whatever the
manifest says, the receiver must write nothing outside its output directory, refuse
before any data moves when the tree cannot be stored safely, and leave no staging behind.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from ferry.errors import EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER
from ferry.protocol import manifest, messages
from ferry.protocol.manifest import Entry
from ferry_testing.files import leftovers

from .fakes import Data, FakeSender, Step
from .harness import assert_one_line_error, run_cases
from .test_e2e_hostile_sender import run_against_fake, snapshot


def entry(path: str, size: int = 1, is_dir: bool = False) -> Entry:
    return Entry(path, is_dir, 0 if is_dir else size, 0)


def tree_fake(relay, entries: list[Entry], records: list[bytes] | None = None,
              offer: messages.Offer | None = None) -> FakeSender:  # fmt: skip
    records = manifest.encode_records(entries) if records is None else records
    files = [e for e in entries if not e.is_dir]
    size = sum(e.size for e in files)
    offer = offer or messages.Offer(
        messages.KIND_TREE, "", size, messages.MANIFEST_VERSION, len(entries), len(files),
        len(records),
    )  # fmt: skip
    steps: list[Step] = [Data(b"A" * size, final=True)]
    return FakeSender(relay.host, relay.port, "", size, steps, offer=offer, manifest=records)


def make_sandbox(root: Path) -> Path:
    outdir = root / "sandbox" / "out"
    outdir.mkdir(parents=True)
    (root / "sandbox" / "keep.txt").write_text("keep")
    return outdir


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    return make_sandbox(tmp_path)


D = entry("d", is_dir=True)


HOSTILE_MANIFESTS: dict[str, tuple[list[Entry], str]] = {
    "dotdot": ([D, entry("d/../../evil")], "unusable path"),
    "absolute": ([entry("/etc/evil")], "unusable path"),
    "empty-part": ([D, entry("d//x")], "unusable path"),
    "trailing-dotdot": ([D, entry("d/..")], "unusable path"),
    "top-dotdot": ([entry("../evil")], "unusable path"),
    "no-parent": ([entry("x/evil")], "not inside a listed directory"),
    "file-as-parent": ([entry("f"), entry("f/evil")], "not inside a listed directory"),
    "duplicate": ([D, entry("d/a"), entry("d/a")], "collides"),
    "same-after-sanitising": ([D, entry("d/ab:c"), entry("d/ab_c")], "collides"),
    "dir-twice": ([D, entry("d", is_dir=True)], "collides"),
    "depth-bomb": (
        [entry("/".join(["n"] * (i + 1)), is_dir=True) for i in range(70)],
        "deeper than 64",
    ),
}


def check_hostile_manifest(relay, run_receive, root: Path, entries: list[Entry], said: str):
    sandbox = make_sandbox(root)
    watched = snapshot(root, exclude=sandbox)
    fake = tree_fake(relay, entries)
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    line = assert_one_line_error(result.stderr, "receive", said)
    assert "\x1b" not in line
    assert fake.outcome == "refused", (fake.outcome, fake.error)
    assert fake.answer is not None and fake.answer.reason == messages.REASON_BAD_NAME
    assert list(sandbox.iterdir()) == [], "a refused tree left something behind"
    assert snapshot(root, exclude=sandbox) == watched
    assert not (root / "evil").exists() and not Path("/etc/evil").exists()


@pytest.mark.timeout(120)
def test_hostile_manifests_are_refused_before_any_byte_and_nothing_is_written(
    relay, run_receive, tmp_path
):
    """Each manifest against its own ./receive in its own directory; the cases run at once."""
    run_cases(
        {
            name: functools.partial(
                check_hostile_manifest, relay, run_receive, tmp_path / name, entries, said
            )
            for name, (entries, said) in HOSTILE_MANIFESTS.items()
        }
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(HOSTILE_MANIFESTS)


LIES = ["counts", "sizes", "garbage-record", "too-many-records", "data-beyond-manifest"]


def check_lying_manifest(relay, run_receive, root: Path, lie: str) -> None:
    sandbox = make_sandbox(root)
    entries = [D, entry("d/a", 3), entry("d/b", 4)]
    records = manifest.encode_records(entries)
    offer = messages.Offer(messages.KIND_TREE, "", 7, 1, 3, 2, 1)
    if lie == "counts":
        offer = messages.Offer(messages.KIND_TREE, "", 7, 1, 2, 2, 1)
    elif lie == "sizes":
        offer = messages.Offer(messages.KIND_TREE, "", 9, 1, 3, 2, 1)
    elif lie == "garbage-record":
        records = [json.dumps({"entries": [{"path": ["x"]}]}).encode()]
    elif lie == "too-many-records":
        records = records + records
        offer = messages.Offer(messages.KIND_TREE, "", 7, 1, 3, 2, 2)
    fake = tree_fake(relay, entries, records, offer)
    if lie == "data-beyond-manifest":
        fake.steps = [Data(b"A" * 8, final=True)]
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == EXIT_PEER_GONE, result.stderr
    assert_one_line_error(result.stderr, "receive")
    assert list(sandbox.iterdir()) == [] and leftovers(sandbox) == []


@pytest.mark.timeout(120)
def test_manifests_that_lie_end_the_transfer_as_a_protocol_error(relay, run_receive, tmp_path):
    """Each lie against its own ./receive; the cases run at once."""
    run_cases(
        {
            lie: functools.partial(check_lying_manifest, relay, run_receive, tmp_path / lie, lie)
            for lie in LIES
        }
    )


@pytest.mark.timeout(60)
def test_unknown_manifest_version_is_refused_as_unsupported(relay, run_receive, sandbox):
    entries = [entry("a")]
    offer = messages.Offer(messages.KIND_TREE, "", 1, 99, 1, 1, 1)
    fake = tree_fake(relay, entries, offer=offer)
    fake.raw_offer = b'{"kind":"tree","manifest":99,"records":1,"entries":1}'
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == EXIT_REFUSED_BY_PEER, result.stderr
    assert_one_line_error(result.stderr, "receive", "manifest version 99")
    assert fake.answer is not None and fake.answer.reason == messages.REASON_UNSUPPORTED
    assert list(sandbox.iterdir()) == []


@pytest.mark.timeout(60)
def test_honest_fake_tree_is_stored_to_show_the_fake_is_faithful(relay, run_receive, sandbox):
    fake = tree_fake(relay, [D, entry("d/a", 3), entry("d/b", 4), entry("top", 0)])
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == 0, result.stderr
    assert fake.outcome == "acked"
    assert (sandbox / "d" / "a").read_bytes() == b"AAA"
    assert (sandbox / "d" / "b").read_bytes() == b"AAAA"
    assert (sandbox / "top").read_bytes() == b""


@pytest.mark.timeout(60)
def test_renamed_and_hidden_entries_of_a_tree_are_named_on_stderr_a_bounded_number(
    relay, run_receive, sandbox
):
    renamed = [entry(f"d/r{i}:x") for i in range(12)]
    entries = [D, entry("d/.profile"), entry("d/plain"), entry("d/sub:dir", is_dir=True),
               entry("d/sub:dir/inner"), *renamed]  # fmt: skip
    result = run_against_fake(relay, run_receive, tree_fake(relay, entries), sandbox)
    assert result.returncode == 0, result.stderr
    assert (sandbox / "d" / ".profile").exists() and (sandbox / "d" / "r11_x").exists()
    lines = result.stderr.splitlines()
    assert 'receive: stored "d/.profile" (a hidden dotfile)' in lines, result.stderr
    assert 'receive: stored "d/sub_dir", offered as "d/sub:dir"' in lines
    assert 'receive: stored "d/r0_x", offered as "d/r0:x"' in lines
    assert not any("plain" in line or "inner" in line for line in lines)  # nothing to say
    assert "receive: and 4 more stored under another name or hidden" in lines
    assert len(lines) == 11, result.stderr
