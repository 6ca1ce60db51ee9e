"""Outcome lines say what happened: real ./relay, ./send and ./receive processes.

The relay cannot read what it carries; the rule it applies (a pipe is happy
only if both sides closed cleanly and the receiver's bytes moved last, as a
receiver's ACK does) is in src/ferry/relay/session.py and docs/OPERATIONS.md.
Here: a delivered file is happy on both lines, a sender that stops in the
middle of the file is not.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ferry_testing.files import assert_nothing_stored, sparse_file
from ferry_testing.procs import Relay
from ferry_testing.waiting import until
from tests.faults.procs import (
    clients,
    receive,
    relay_process,
    send,
)

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20
FILE_SIZE = 256 * MIB


def outcome_lines(relay: Relay) -> dict[str, str]:
    """role -> its outcome line, for the sender and receiver lines logged so far."""
    lines = {}
    for line in relay.log().splitlines():
        for role in ("sender", "receiver"):
            if "outcome=" in line and f" role={role} " in line:
                lines[role] = line
    return lines


def outcome(line: str) -> str:
    return line.split("outcome=", 1)[1].split()[0]


async def test_delivered_file_is_happy_on_both_lines(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        source = sparse_file(tmp_path / "whole.bin", 8 * MIB)
        (tmp_path / "out").mkdir()
        with clients() as started:
            sender = send(started, tmp_path, relay.port, source)
            out = tmp_path / "out"
            receiver = receive(started, tmp_path, relay.port, await sender.code(), out)
            assert await receiver.exit_code() == 0, receiver.stderr()
            assert await sender.exit_code() == 0, sender.stderr()
        await until(lambda: len(outcome_lines(relay)) == 2, "both outcome lines", 10)
        lines = outcome_lines(relay)
        assert outcome(lines["receiver"]) == "happy", lines
        assert outcome(lines["sender"]) == "happy", lines
        assert f"bytes_to_receiver={8 * MIB}" not in lines["receiver"]  # records, not the file


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_sender_stopped_mid_transfer_is_not_happy(tmp_path: Path, signum: int) -> None:
    with relay_process(tmp_path) as relay:
        source = sparse_file(tmp_path / "big.bin", FILE_SIZE)
        out = tmp_path / "out"
        out.mkdir()
        with clients() as started:
            # Uncompressed: the test waits for relayed bytes, and a sparse file's zeros
            # would cross the relay 1,000 times smaller whenever the sender compresses.
            sender = send(started, tmp_path, relay.port, source, options=("--no-compress",))
            receiver = receive(started, tmp_path, relay.port, await sender.code(), out)
            # Stop the receiver part-way (its window fills, the sender blocks),
            # so the sender is surely stopped mid-file, not after its last byte.
            await until(
                lambda: relay.metrics().get("bytes_relayed_total", 0) > 16 * MIB,
                "16 MiB relayed",
                30,
            )
            receiver.kill(signal.SIGSTOP)
            sender.kill(signum)
            assert await sender.exit_code() != 0
            receiver.kill(signal.SIGCONT)
            assert await receiver.exit_code() != 0, receiver.stderr()
        await until(lambda: len(outcome_lines(relay)) == 2, "both outcome lines", 10)
        lines = outcome_lines(relay)
        assert outcome(lines["receiver"]) == "errory", lines
        assert 'detail="sender spoke last"' in lines["receiver"], lines
        assert "closed_first=sender" in lines["receiver"], lines
        assert outcome(lines["sender"]) == "errory", lines
        assert_nothing_stored(out, "big.bin")  # the receiver kept nothing but a resumable partial
