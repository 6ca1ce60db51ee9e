"""The browser core (web/src/core) under Node: its own tests, and live exchanges with Python.

test_node_test_suite runs `node --test web/test/`: every vector of
web/test/vectors.json reproduced, JS <-> JS exchanges, the decoder fed whole
and byte by byte, the caps. The live tests run web/tools/interop-peer.mjs as
one side of a key exchange and ferry.crypto as the other, both with fresh
randomness: PAKE messages, key confirmation, and a first sealed record each
way (OFFER from the sender, ANSWER from the receiver).

Locally these skip without node; with CI=true they must run (ferry_testing/node.py).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from ferry.crypto import Opener, Pake, Role, Sealer, confirmation, peer_confirmed
from ferry.protocol import messages
from ferry.protocol.records import TAG_SIZE, Header, RecordDecoder, RecordType
from ferry_testing.node import WEB, require_node

pytestmark = pytest.mark.timeout(180)
CODE = "7-guitar-orbit-velvet"


def test_node_test_suite() -> None:
    node = require_node()
    result = subprocess.run(
        [node, "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=150
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    failures = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0, (failures, summary, result.stderr[-3000:])
    assert "# fail 0" in summary, summary
    assert not any(line == "# pass 0" for line in summary), summary


def _first_record(role: Role, keys: Any) -> bytes:
    sealer = Sealer(keys.seal_key)
    if role is Role.SENDER:
        offer = messages.Offer(messages.KIND_FILE, "naïve.txt", 5)
        body = messages.padded(messages.encode_offer(offer))
        rtype = RecordType.OFFER
    else:
        body = messages.encode_answer(messages.Answer(False, "declined", "no, thanks"))
        rtype = RecordType.ANSWER
    header = Header(len(body) + TAG_SIZE, rtype, 0).encode()
    return header + sealer.seal(header, body)


def _exchange(py_role: Role, py_code: str, js_code: str) -> tuple[bool, dict[str, Any], Any]:
    """Run one exchange; returns (Python confirmed JS, JS's report, what Python opened)."""
    node = require_node()
    js_role = py_role.peer
    with subprocess.Popen(
        [node, "tools/interop-peer.mjs"],
        cwd=WEB,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            return _drive(proc, py_role, py_code, js_role, js_code)
        finally:
            if proc.poll() is None:
                proc.kill()


def _drive(
    proc: subprocess.Popen[str], py_role: Role, py_code: str, js_role: Role, js_code: str
) -> tuple[bool, dict[str, Any], Any]:
    assert proc.stdin is not None and proc.stdout is not None

    def say(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    say(json.dumps({"role": js_role.value, "code": js_code}))
    pake = Pake(py_role, py_code.encode())
    say(pake.start().hex())
    keys = pake.finish(bytes.fromhex(proc.stdout.readline().strip()))
    say(f"{confirmation(keys).hex()} {_first_record(py_role, keys).hex()}")
    js_mac, js_record = proc.stdout.readline().split()
    confirmed = peer_confirmed(keys, bytes.fromhex(js_mac))
    opened: Any = None
    if confirmed:
        decoder = RecordDecoder()
        decoder.receive_data(bytes.fromhex(js_record))
        record = decoder.next_record()
        assert record is not None
        plain = Opener(keys.open_key).open(record.header.encode(), bytes(record.body))
        decode = messages.decode_answer if py_role is Role.SENDER else messages.decode_offer
        opened = decode(plain)
    report = json.loads(proc.stdout.readline())
    assert proc.wait(timeout=30) == 0
    return confirmed, report, opened


def test_js_sender_and_python_receiver_agree_and_open_each_others_records() -> None:
    confirmed, report, opened = _exchange(Role.RECEIVER, CODE, CODE)
    assert confirmed and report["confirmed"]
    assert opened == messages.Offer(messages.KIND_TEXT, "", 5)
    assert report["record"]["accept"] is False
    assert (report["record"]["reason"], report["record"]["message"]) == ("declined", "no, thanks")


def test_python_sender_and_js_receiver_agree_and_open_each_others_records() -> None:
    confirmed, report, opened = _exchange(Role.SENDER, CODE, CODE)
    assert confirmed and report["confirmed"]
    assert opened == messages.Answer(True)
    record = report["record"]
    assert (record["kind"], record["name"], record["size"]) == ("file", "naïve.txt", 5)


@pytest.mark.parametrize("py_role", [Role.SENDER, Role.RECEIVER])
def test_a_wrong_code_fails_confirmation_on_both_sides(py_role: Role) -> None:
    confirmed, report, opened = _exchange(py_role, CODE, "7-guitar-orbit-amber")
    assert not confirmed and not report["confirmed"]
    assert opened is None and report["record"] is None
