"""The real ./receive against a hostile sender (tests/e2e/fakes.py) through the real relay.

The fake completes the genuine handshake, so everything it sends is authentic: these are
the attacks a person who was given the code (or a buggy sender) can mount. The receiver
must never write outside its output directory, never leave a partial file under the
final name, and always clean up its temporary file.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import pytest

from ferry.errors import EXIT_LOCAL_FILE, EXIT_PEER_GONE, EXIT_REFUSED_BY_PEER
from ferry.protocol import messages
from ferry.protocol.records import RecordType
from ferry_testing.files import leftovers

from .fakes import Close, Data, FakeSender, RawRecord, Step
from .harness import assert_exact_one_line_error, assert_one_line_error, run_cases


def snapshot(root: Path, exclude: Path) -> dict[str, tuple[int, int]]:
    """Every path under root except those under `exclude`: name -> (size, mtime_ns)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == exclude or exclude in here.parents:
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == exclude:
                continue
            st = path.lstat()
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def make_sandbox(root: Path) -> Path:
    """root/sandbox/inner/out is the output dir; everything around it is watched."""
    outdir = root / "sandbox" / "inner" / "out"
    outdir.mkdir(parents=True)
    (root / "sandbox" / "keep.txt").write_text("keep")
    (root / "sandbox" / "inner" / "keep.txt").write_text("keep")
    return outdir


@pytest.fixture
def sandbox(tmp_path):
    return make_sandbox(tmp_path)


def run_against_fake(relay, run_receive, fake: FakeSender, outdir: Path, extra_args=()):
    fake.start()
    try:
        code = fake.wait_code()
        result = run_receive(relay, code, outdir, extra_args=list(extra_args), timeout=60)
    finally:
        fake.join(60)
    return result


PAYLOAD = b"hostile payload\n" * 4


HOSTILE_NAMES = [
    "../../evil.txt",
    "../../../../../../../../tmp/ferry-e2e-evil.txt",
    "/etc/passwd",
    "ABSOLUTE_IN_TMP",
    "..\\..\\evil.txt",
    "sub/dir/file.txt",
    "a\x1b[31m.txt",
    "evil\u202etxt.exe",
    "nul\x00byte.txt",
    "line\nbreak.txt",
    "C:\\Windows\\evil.txt",
    "..",
    ".",
    "",
    "../",
    "/",
    "x" * 400 + ".txt",
    ".ferry-0123456789abcdef.part",
]


def check_hostile_file_name(relay, run_receive, root: Path, name: str) -> None:
    root.mkdir()
    sandbox = make_sandbox(root)
    victim = root / "victim.txt"
    if name == "ABSOLUTE_IN_TMP":
        name = str(victim)
    watched = snapshot(root, exclude=sandbox)
    passwd = file_digest("/etc/passwd")
    tmp_evil = Path("/tmp/ferry-e2e-evil.txt")
    tmp_evil_before = tmp_evil.exists()

    fake = FakeSender(relay.host, relay.port, name, len(PAYLOAD), [Data(PAYLOAD, final=True)])
    result = run_against_fake(relay, run_receive, fake, sandbox, extra_args=["-v"])

    assert snapshot(root, exclude=sandbox) == watched, "something changed outside the output dir"
    assert file_digest("/etc/passwd") == passwd
    assert not victim.exists()
    assert tmp_evil.exists() == tmp_evil_before
    assert "\x1b" not in result.stderr, f"terminal escape echoed: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    entries = sorted(sandbox.iterdir())
    if result.returncode == 0:
        assert fake.outcome == "acked", (fake.outcome, fake.error)
        assert len(entries) == 1, entries
        stored = entries[0]
        assert stored.parent == sandbox and stored.is_file() and not stored.is_symlink()
        assert stored.read_bytes() == PAYLOAD
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in stored.name), repr(stored.name)
        assert "\u202e" not in stored.name
        assert stored.name not in (".", "..") and "/" not in stored.name and "\\" not in stored.name
        assert len(stored.name.encode()) <= 255
    else:
        assert entries == [], f"refused, yet wrote {entries}"
        assert_one_line_error(result.stderr, "receive")
        assert fake.outcome in ("refused", "aborted", "eof", ""), (fake.outcome, fake.error)


@pytest.mark.timeout(120)
def test_hostile_file_names_are_stored_inside_output_dir_or_refused(relay, run_receive, tmp_path):
    """Each name in its own tmp dir against its own ./receive; the cases run at once."""
    run_cases(
        {
            repr(name): functools.partial(
                check_hostile_file_name, relay, run_receive, tmp_path / f"case{i}", name
            )
            for i, name in enumerate(HOSTILE_NAMES)
        }
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"case{i}" for i in range(len(HOSTILE_NAMES))
    ), "something was written beside the cases' directories"


# (offered size, steps, expected exit code, words expected in the error)
ABUSES: dict[str, tuple[int, list[Step], int, str]] = {
    "sends-more-than-offered-in-one-record": (10, [Data(b"x" * 20, final=True)], 7, "more"),
    "sends-more-than-offered-over-two-records": (
        10,
        [Data(b"x" * 10), Data(b"y" * 10, final=True)],
        7,
        "more",
    ),
    "sends-less-than-offered-with-final": (20, [Data(b"x" * 10, final=True)], 7, "10 of 20"),
    "final-on-empty-record-early": (20, [Data(b"x" * 5), Data(b"", final=True)], 7, ""),
    "tampered-ciphertext": (20, [Data(b"x" * 20, final=True, tamper=True)], 8, ""),
    "tampered-first-of-two": (
        40,
        [Data(b"x" * 20, tamper=True), Data(b"y" * 20, final=True)],
        8,
        "",
    ),
    "no-final-then-close": (20, [Data(b"x" * 20), Close()], 7, "went away"),
    "half-then-close": (1000, [Data(b"x" * 500), Close()], 7, "went away"),
    "nothing-then-close": (20, [Close()], 7, "went away"),
    "zero-size-then-close": (0, [Close()], 7, "went away"),
    "sender-aborts-mid-stream": (
        20,
        [
            Data(b"x" * 10),
            RawRecord(RecordType.ABORT, messages.encode_abort(messages.Abort("error", "bye"))),
        ],
        10,
        "",
    ),
    "second-offer-instead-of-data": (
        20,
        [RawRecord(RecordType.OFFER, messages.encode_offer(messages.Offer("file", "b", 1)))],
        7,
        "",
    ),
    "ack-record-from-sender": (
        20,
        [Data(b"x" * 10), RawRecord(RecordType.ACK, messages.encode_ack(messages.Ack(20)))],
        7,
        "",
    ),
}


def check_lying_or_tampering_sender(relay, run_receive, root: Path, abuse: str) -> None:
    root.mkdir()
    sandbox = make_sandbox(root)
    size, steps, expected_rc, needle = ABUSES[abuse]
    watched = snapshot(root, exclude=sandbox)
    fake = FakeSender(relay.host, relay.port, "data.bin", size, steps)
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert fake.answer is not None and fake.answer.accept, (fake.answer, fake.error)
    assert result.returncode == expected_rc, (result.returncode, result.stderr)
    message = assert_exact_one_line_error(result.stderr, "receive")
    assert needle.lower() in message.lower(), message
    assert not (sandbox / "data.bin").exists(), "partial file stored under the final name"
    assert leftovers(sandbox) == [], f"temporary files left: {leftovers(sandbox)}"
    assert list(sandbox.iterdir()) == []
    assert snapshot(root, exclude=sandbox) == watched


@pytest.mark.timeout(120)
def test_lying_or_tampering_senders_fail_receive_and_leave_nothing(relay, run_receive, tmp_path):
    """Each abuse in its own tmp dir against its own ./receive; the cases run at once."""
    run_cases(
        {
            abuse: functools.partial(
                check_lying_or_tampering_sender, relay, run_receive, tmp_path / abuse, abuse
            )
            for abuse in ABUSES
        }
    )


@pytest.mark.timeout(60)
def test_offer_larger_than_free_space_is_refused_before_any_byte(relay, run_receive, sandbox):
    fake = FakeSender(relay.host, relay.port, "huge.bin", 1 << 62, [Data(b"x" * 10)])
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "space")
    assert fake.answer is not None and not fake.answer.accept
    assert list(sandbox.iterdir()) == []


@pytest.mark.timeout(60)
def test_offer_of_unknown_kind_is_refused(relay, run_receive, sandbox):
    fake = FakeSender(relay.host, relay.port, "dir", 10, [], kind="directory")
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode != 0
    assert_exact_one_line_error(result.stderr, "receive")
    assert fake.answer is not None and not fake.answer.accept
    assert fake.answer.reason == messages.REASON_UNSUPPORTED
    assert list(sandbox.iterdir()) == []


@pytest.mark.timeout(60)
def test_fake_sender_honest_run_is_acknowledged(relay, run_receive, sandbox):
    """Sanity check of the fake itself: played straight, the real receiver stores and ACKs."""
    payload = os.urandom(700_000)
    steps: list[Step] = [
        Data(payload[:300_000]),
        Data(payload[300_000:600_000]),
        Data(payload[600_000:], final=True),
    ]
    fake = FakeSender(relay.host, relay.port, "honest.bin", len(payload), steps)
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == 0, result.stderr
    assert fake.error is None, fake.error
    assert fake.outcome == "acked" and fake.ack is not None and fake.ack.size == len(payload)
    assert (sandbox / "honest.bin").read_bytes() == payload


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overwrite", [False, True])
def test_symlink_under_offered_name_never_writes_through_it(
    relay, start_send, run_receive, tmp_path, overwrite
):
    """A link in the output dir named like the file must not lead the write outside."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"victim content")
    src = tmp_path / "src" / "link.txt"
    src.parent.mkdir()
    payload = os.urandom(5000)
    src.write_bytes(payload)
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "link.txt").symlink_to(victim)

    # One attempt: a refusal (which otherwise keeps the code alive) ends the sender.
    sender = start_send(relay, src, extra_args=["--attempts", "1"])
    extra = ["--overwrite"] if overwrite else []
    result = run_receive(relay, sender.code, outdir, extra_args=extra, timeout=60)
    sender.wait(30)
    assert victim.read_bytes() == b"victim content", "wrote through the symlink"
    if overwrite and result.returncode == 0:
        link = outdir / "link.txt"
        assert not link.is_symlink() and link.read_bytes() == payload
    else:
        assert result.returncode == EXIT_LOCAL_FILE, result.stderr
        assert_exact_one_line_error(result.stderr, "receive")
        assert (outdir / "link.txt").is_symlink()
    assert leftovers(outdir) == []


@pytest.mark.timeout(60)
def test_dangling_symlink_under_offered_name_is_refused(relay, start_send, run_receive, tmp_path):
    src = tmp_path / "src" / "dangle.txt"
    src.parent.mkdir()
    src.write_bytes(b"data")
    outdir = tmp_path / "out"
    outdir.mkdir()
    target = tmp_path / "would-be-created.txt"
    (outdir / "dangle.txt").symlink_to(target)
    sender = start_send(relay, src, extra_args=["--attempts", "1"])
    result = run_receive(relay, sender.code, outdir, timeout=60)
    assert result.returncode == EXIT_LOCAL_FILE, result.stderr
    assert_exact_one_line_error(result.stderr, "receive", "already exists")
    assert not target.exists()
    assert sender.wait(30) == EXIT_REFUSED_BY_PEER, sender.stderr()


MALFORMED_OFFERS: dict[str, bytes] = {
    "negative": b'{"kind":"file","name":"a.txt","size":-1}',
    "bool": b'{"kind":"file","name":"a.txt","size":true}',
    "float": b'{"kind":"file","name":"a.txt","size":1.5}',
    "name-int": b'{"kind":"file","name":7,"size":1}',
    "no-name": b'{"kind":"file","size":1}',
    "long-name": b'{"kind":"file","name":"' + b"n" * 5000 + b'","size":1}',
    "list": b"[1,2,3]",
    "text": b"not json at all",
    "bytes": b"\xff\xfe\x00",
    "empty": b"",
}


def check_malformed_offer(relay, run_receive, root: Path, body: bytes) -> None:
    root.mkdir()
    sandbox = make_sandbox(root)
    fake = FakeSender(relay.host, relay.port, "a.txt", 1, [Data(b"x", final=True)], raw_offer=body)
    result = run_against_fake(relay, run_receive, fake, sandbox)
    assert result.returncode == EXIT_PEER_GONE, result.stderr  # a malformed offer
    assert_exact_one_line_error(result.stderr, "receive")
    assert list(sandbox.iterdir()) == []


@pytest.mark.timeout(120)
def test_malformed_offers_fail_receive_cleanly(relay, run_receive, tmp_path):
    """Each offer against its own ./receive; the cases run at once."""
    run_cases(
        {
            name: functools.partial(
                check_malformed_offer, relay, run_receive, tmp_path / name, body
            )
            for name, body in MALFORMED_OFFERS.items()
        }
    )
