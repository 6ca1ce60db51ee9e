"""The browser's transfer code against the real ./send and ./receive, without a browser.

web/tools/node-client.mjs runs web/src/transfer (rendezvous, attempts,
retries) and web/src/core (sessions, records, SPAKE2) under Node, over TCP
to the real ./relay: the bytes a page sends through the relay's WebSocket,
sent to the relay's port directly. The other end is ferry's own CLI, so
every exchange here is the browser's protocol code against Python's: files,
a tree, a text, both ways; a wrong code; a refusal.

Locally these skip without node; with CI=true they must run (ferry_testing/node.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry_testing.files import files_equal
from ferry_testing.node import WEB, require_node
from ferry_testing.procs import Relay, read_first_line
from tests.e2e.harness import (
    Registry,
    Result,
    Sender,
    run_program,
    wrong_words_code,
)
from tests.e2e.test_e2e_anything import start_send_with

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # the browser code under Node
CLIENT = WEB / "tools" / "node-client.mjs"


def _node_receive(procs: Registry, relay: Relay, code: str, outdir: Path) -> Result:
    return run_program(
        procs, [require_node(), str(CLIENT), "receive", str(relay), code, str(outdir)], WEB
    )


def _node_send(procs: Registry, relay: Relay, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = procs.popen(
        [require_node(), str(CLIENT), "send", str(relay), *args],
        cwd=WEB,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line, _ = read_first_line(proc.stdout.fileno(), 30, proc.pid)
    return proc, line.decode()


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    assert proc.stderr is not None
    rc = proc.wait(timeout=60)
    return rc, proc.stderr.read().decode("utf-8", "replace")


def _tree(root: Path, empty_dir: bool = True) -> Path:
    """A small tree; a browser sends files only (a folder picker lists no empty directory)."""
    top = root / "photos"
    (top / "2024").mkdir(parents=True)
    if empty_dir:
        (top / "2024" / "empty-dir").mkdir()
    (top / "a.txt").write_text("alpha\n")
    (top / "2024" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    (top / "2024" / "zero").write_bytes(b"")
    return top


def _same_tree(a: Path, b: Path) -> None:
    names_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    names_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*"))
    assert names_a == names_b
    for name in names_a:
        if (a / name).is_file():
            assert files_equal(a / name, b / name), name


def test_cli_file_to_browser_code(
    relay: Relay, start_send: Callable[..., Sender], procs: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(251)) * 20000)  # 5 MB: many 128 KiB records
    out = tmp_path / "out"
    out.mkdir()
    sender = start_send(relay, src)
    result = _node_receive(procs, relay, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait() == 0, sender.stderr()
    assert files_equal(src, out / "big.bin")


def test_cli_tree_and_text_to_browser_code(
    relay: Relay,
    start_send: Callable[..., Sender],
    procs: Registry,
    logdir: Path,
    tmp_path: Path,
) -> None:
    top = _tree(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    sender = start_send(relay, top)
    result = _node_receive(procs, relay, sender.code, out)
    assert result.returncode == 0, result.stderr
    assert sender.wait() == 0, sender.stderr()
    _same_tree(top, out / "photos")

    texter = start_send_with(procs, logdir, relay, ["--text", "héllo, wörld ✓"])
    result = _node_receive(procs, relay, texter.code, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "héllo, wörld ✓"
    assert texter.wait() == 0, texter.stderr()


def test_browser_code_file_tree_text_to_cli(
    relay: Relay, run_receive: Callable[..., Result], procs: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "one.bin"
    src.write_bytes(bytes(range(256)) * 9000)
    out = tmp_path / "out"
    out.mkdir()
    proc, code = _node_send(procs, relay, str(src))
    result = run_receive(relay, code, out)
    assert result.returncode == 0, result.stderr
    assert _finish(proc)[0] == 0
    assert files_equal(src, out / "one.bin")

    top = _tree(tmp_path / "src", empty_dir=False)
    proc, code = _node_send(procs, relay, str(top))
    result = run_receive(relay, code, out)
    assert result.returncode == 0, result.stderr
    assert _finish(proc)[0] == 0
    _same_tree(top, out / "photos")

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first\n")
    b.write_text("")
    several = tmp_path / "several"
    several.mkdir()
    proc, code = _node_send(procs, relay, str(a), str(b))
    result = run_receive(relay, code, several)
    assert result.returncode == 0, result.stderr
    assert _finish(proc)[0] == 0
    assert (several / "a.txt").read_text() == "first\n"
    assert (several / "b.txt").read_bytes() == b""

    proc, code = _node_send(procs, relay, "--text", "from the browser ✓")
    result = run_receive(relay, code, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the browser ✓"
    assert _finish(proc)[0] == 0


def test_wrong_code_both_ways_then_the_right_one(
    relay: Relay,
    start_send: Callable[..., Sender],
    run_receive: Callable[..., Result],
    procs: Registry,
    tmp_path: Path,
) -> None:
    src = tmp_path / "f.txt"
    src.write_text("secret\n")
    out = tmp_path / "out"
    out.mkdir()
    # A browser sender: a CLI receiver with the wrong words fails, the code stays valid.
    proc, code = _node_send(procs, relay, str(src))
    wrong = run_receive(relay, wrong_words_code(code), out)
    assert wrong.returncode != 0
    assert "wrong code" in wrong.stderr
    assert run_receive(relay, code, out).returncode == 0
    assert _finish(proc)[0] == 0
    assert (out / "f.txt").read_text() == "secret\n"
    # A CLI sender: a browser receiver with the wrong words is told "wrong code".
    sender = start_send(relay, src)
    out2 = tmp_path / "out2"
    out2.mkdir()
    wrong = _node_receive(procs, relay, wrong_words_code(sender.code), out2)
    assert wrong.returncode == 1
    assert "WrongCode: wrong code" in wrong.stderr
    assert not any(out2.iterdir())
    assert _node_receive(procs, relay, sender.code, out2).returncode == 0
    assert sender.wait() == 0


def test_refusal_reaches_the_browser_sender(
    relay: Relay, run_receive: Callable[..., Result], procs: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "f.txt"
    src.write_text("new\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "f.txt").write_text("old\n")
    proc, code = _node_send(procs, relay, str(src))
    for _ in range(3):  # the sender's three attempts, each refused: 'exists'
        refused = run_receive(relay, code, out)
        assert refused.returncode != 0
    rc, stderr = _finish(proc)
    assert rc == 1
    assert "RefusedByPeer: the receiver refused" in stderr
    assert (out / "f.txt").read_text() == "old\n"


def test_sender_leaving_ends_the_browser_decision(
    relay: Relay, start_send: Callable[..., Sender], procs: Registry, tmp_path: Path
) -> None:
    # While the person looks at the offer, the connection is still read (as --ask).
    src = tmp_path / "f.txt"
    src.write_text("x\n")
    sender = start_send(relay, src)
    argv = [require_node(), str(CLIENT), "receive", str(relay), sender.code, str(tmp_path)]
    receiver = procs.popen(
        [*argv, "--decide-after", "60"],
        cwd=WEB,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert receiver.stderr is not None
    line, _ = read_first_line(receiver.stderr.fileno(), 30, receiver.pid)
    assert line == b"node-client: offered"
    sender.proc.kill()
    started = time.monotonic()
    rc, stderr = _finish(receiver)
    assert rc == 1
    assert time.monotonic() - started < 30
    assert "ConnectionLost: the sender went away" in stderr
