"""The words a user reads: sizes and rates in one unit system, the progress bar's honest
rate after a resume, who a lost connection blames, what proves a server is not a relay,
OS errors in words, and the variables every program checks at its start."""

from __future__ import annotations

import io
import re

import pytest

from ferry import environment, units
from ferry.cli.send import build_parser
from ferry.client.peer import abort_for, lost
from ferry.client.progress import BarProgress, tree_label
from ferry.client.relay_link import os_reason
from ferry.errors import (
    ConnectionLost,
    IntegrityError,
    LocalFileError,
    NoSpace,
    RefusedByPeer,
    SourceChanged,
    UsageError,
)
from ferry.protocol import messages
from ferry.protocol import rendezvous as rv
from ferry.relay.metrics import Metrics, render
from tests.memory import Clock

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1234, "1.2 KiB"),
        (5_000_000, "4.8 MiB"),
        (1024**3, "1.0 GiB"),
        (1024**3 - 1, "1.0 GiB"),
        (int(9.77 * 1024**4), "9.8 TiB"),
    ],
)
def test_size_is_binary_with_one_decimal_from_a_kib(n: int, shown: str) -> None:
    assert units.size(n) == shown


def test_rate_and_offered_size_and_counts() -> None:
    assert units.rate(1.19e9) == "1.1 GiB/s"
    assert units.rate(None) == units.rate(0) == "? B/s"
    assert units.offered_size(messages.UNKNOWN_SIZE) == "unknown size"
    assert units.offered_size(5_000_000) == "4.8 MiB"
    assert tree_label(51, 3) == "51 files, 3 dirs"
    assert tree_label(1, 1) == "1 file, 1 dir"


def bar_after(kept: int, moved_per_second: list[int], total: int = 100 * MIB) -> str:
    """What a bar showed last: `kept` bytes skipped, then one update a second."""
    out = io.StringIO()
    progress = BarProgress(out)
    clock = Clock()
    progress.start(total, "big.bin")
    bar = progress._bar
    bar._time = clock
    bar.start_t = bar.last_print_t = clock.now
    progress.skip(kept)
    for moved in moved_per_second:
        clock.now += 1.0
        progress.update(moved)
    progress.close()
    return out.getvalue().split("\r")[-1]


def test_the_bar_starts_at_the_kept_bytes_and_its_rate_counts_only_what_moved() -> None:
    line = bar_after(90 * MIB, [MIB, MIB])
    assert "92.0 MiB/100.0 MiB" in line, line
    assert re.search(r", 1\.0 MiB/s\]", line), line  # not 46 MiB/s (kept bytes counted)
    assert "00:08" in line, line  # 8 MiB left at 1 MiB/s


def test_the_bar_speaks_one_unit_system() -> None:
    line = bar_after(0, [5_000_000], total=5_000_000)
    assert "4.8 MiB/4.8 MiB" in line, line
    assert not re.search(r"\d[kMGT]B|\d[kMGT] ", line), line  # no SI, no bare "4.77M"


def test_a_bar_of_unknown_total_shows_bytes_and_rate() -> None:
    line = bar_after(0, [3 * MIB], total=0)
    assert line.startswith("big.bin: 3.0 MiB ["), line
    assert "3.0 MiB/s" in line, line


def test_a_lost_connection_names_both_the_relay_and_the_peer() -> None:
    assert (
        lost("sender", 42, 100) == "connection lost after 42% (the relay or the sender went away)"
    )
    assert lost("receiver", 5_000_000) == (
        "connection lost after 4.8 MiB (the relay or the receiver went away)"
    )  # a stream: no total to make a percentage of
    assert lost("receiver") == "connection lost (the relay or the receiver went away)"


def test_a_full_disk_has_its_own_abort_reason() -> None:
    assert abort_for(NoSpace(), "receiver", "a.bin") == messages.Abort(
        messages.REASON_NO_SPACE, "could not store 'a.bin': out of disk space"
    )
    abort = abort_for(LocalFileError(), "receiver", "a.bin")
    assert abort is not None and abort.reason == messages.REASON_LOCAL_ERROR


def test_an_abort_names_the_errors_class_and_the_offered_name_never_a_local_path() -> None:
    local = LocalFileError("cannot read /home/ann/photos/sub/b.bin: Permission denied")
    for side, verb in (("sender", "send"), ("receiver", "store")):
        abort = abort_for(local, side, "photos")
        assert abort == messages.Abort(
            messages.REASON_LOCAL_ERROR,
            f"could not {verb} 'photos': cannot read or write a local file",
        )
    assert abort_for(IntegrityError("x in /tmp"), "sender", "") == messages.Abort(
        messages.REASON_LOCAL_ERROR,
        "could not send what was offered: the data was altered in transit (authentication failed)",
    )


def test_a_changed_source_is_aborted_as_changed_under_its_name_in_the_tree() -> None:
    changed = SourceChanged(
        "/home/ann/photos/sub/b.bin changed while it was being sent", "photos/sub/b.bin"
    )
    abort = abort_for(changed, "sender", "", "nothing was stored; the same code works again")
    assert abort == messages.Abort(
        messages.REASON_CHANGED,
        "photos/sub/b.bin changed while it was being sent; nothing was stored; "
        "the same code works again",
    )


def test_nothing_is_told_a_peer_that_went_away_gave_up_or_for_a_bug() -> None:
    for error in (ConnectionLost(), RefusedByPeer(), KeyboardInterrupt(), ValueError("bug")):
        assert abort_for(error, "receiver", "a.bin") is None


RELAY_LINES = [b"NAMEPLATE 7\n", b"TICKET " + b"a" * 32 + b"\n", b"PAIRED\n", b"PING\n",
               b"ERROR busy relay busy\n", b"INCOMING " + b"b" * 32 + b"\n"]  # fmt: skip


@pytest.mark.parametrize("line", RELAY_LINES)
def test_every_start_of_a_relay_line_could_be_a_relay(line: bytes) -> None:
    for end in range(len(line) + 1):
        assert rv.could_be_relay(line[:end]), line[:end]
    assert rv.could_be_relay(b"PAIRED\n\x00\x01binary pipelined data")


@pytest.mark.parametrize(
    "start",
    [b"HTTP/1.1 400 Bad Request\r\n", b"H", b"SSH-2.0-OpenSSH", b"\x15\x03\x01\x00\x02\x02F",
     b"<!DOCTYPE", b"-ERR unknown command", b"PINGS\n", b"ERRORS x\n", b"pairED\n"],
)  # fmt: skip
def test_answers_no_relay_sends_prove_it_is_not_a_relay(start: bytes) -> None:
    assert not rv.could_be_relay(start)


def test_an_os_error_is_said_in_words_not_asyncios_connect_call_failed() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9021)")
    assert os_reason(refused) == "connection refused"
    assert os_reason(OSError("odd")) == "odd"


@pytest.mark.parametrize(
    ("name", "value"),
    [("FERRY_DEBUG", "maybe"), ("FERRY_SETUP_TIMEOUT", "abc"), ("FERRY_SETUP_TIMEOUT", "-1")],
)
def test_the_shared_variables_are_checked(name: str, value: str) -> None:
    with pytest.raises(UsageError, match=name):
        environment.check_shared({name: value})


def test_good_shared_variables_pass_and_debug_means_yes_words_only() -> None:
    environment.check_shared({"FERRY_DEBUG": "on", "FERRY_SETUP_TIMEOUT": "30"})
    environment.check_shared({})
    assert environment.debug({"FERRY_DEBUG": "1"})
    assert not environment.debug({"FERRY_DEBUG": "off"})
    assert not environment.debug({})


def test_attempts_help_counts_refusals_too() -> None:
    help_text = " ".join(build_parser().format_help().split())
    assert "refusals by the receiver" in help_text


def test_a_metric_named_total_is_a_counter_any_other_a_gauge() -> None:
    text = render(Metrics(), {"x_total": ("Counted.", 3), "y": ("Now.", 1)})
    assert "# TYPE ferry_relay_x_total counter\nferry_relay_x_total 3\n" in text
    assert "# TYPE ferry_relay_y gauge\nferry_relay_y 1\n" in text
