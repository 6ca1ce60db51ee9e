"""The pairing table with numbers a cluster directory allocated (register(nameplate=))."""

from __future__ import annotations

import itertools

import pytest

from ferry.config import RelayConfig
from ferry.errors import Refusal
from ferry.protocol import rendezvous as rv
from ferry.relay.table import PairingTable


def make_table() -> PairingTable[str]:
    numbers = itertools.count()
    return PairingTable(RelayConfig(), lambda: f"{next(numbers):032x}")


def test_a_directory_number_is_used_as_given_and_held():
    table = make_table()
    entry = table.register("sender", 0.0, nameplate=41)
    assert entry.nameplate == 41
    assert table.holds(41) and not table.holds(1)


def test_a_directory_number_is_not_reused_locally_once_freed():
    table = make_table()
    table.unregister(table.register("a", 0.0, nameplate=5))
    # The directory frees it; the local allocator (single relay) never hands it out.
    assert [table.register(name, 0.0).nameplate for name in "bcd"] == [1, 2, 3]
    assert table.register("e", 0.0, nameplate=5).nameplate == 5


def test_a_directory_number_already_held_here_is_refused_as_unavailable():
    table = make_table()
    table.register("old", 0.0, nameplate=3)
    with pytest.raises(Refusal) as refused:
        table.register("new", 0.0, nameplate=3)
    assert refused.value.reason == rv.REASON_UNAVAILABLE
    assert table.entries()[0].sender == "old"
