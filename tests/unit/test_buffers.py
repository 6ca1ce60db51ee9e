"""Unit tests for ferry.relay.buffers: spending the per-transfer budget on socket buffers."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.config import KIB, MIB, RelayConfig
from ferry.relay import buffers


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def test_plan_default_worst_case_is_within_the_4_mib_budget() -> None:
    plan = buffers.plan(RelayConfig())
    assert RelayConfig().transfer_budget == 4 * MIB
    assert plan.worst_case() <= 4 * MIB


def test_plan_default_spends_the_budget_on_the_data_direction() -> None:
    plan = buffers.plan(RelayConfig())
    # Two kernel-doubled data buffers take most of the budget, the rest is small.
    assert 4 * plan.data >= 0.85 * 4 * MIB
    assert plan.control <= 16 * KIB


def test_plan_listener_leaves_window_scale_headroom_over_the_data_buffer() -> None:
    plan = buffers.plan(RelayConfig())
    # The data socket's window can reach its whole (doubled) buffer only if
    # 65535 << scale covers it; the scale comes from the listener's buffer.
    assert plan.listen >= 2 * plan.data
    assert _ceil_log2(2 * plan.listen) > _ceil_log2(2 * plan.data)


@given(st.integers(0, 64 * MIB), st.integers(1, 8 * MIB))
def test_plan_worst_case_never_exceeds_a_usable_budget(budget: int, pump: int) -> None:
    config = RelayConfig(transfer_budget=budget, pump_buffer=pump)
    plan = buffers.plan(config)
    if not config.problems():
        assert plan.worst_case() <= budget
        assert plan.data >= plan.control
    assert plan.data >= 0


def test_plan_grows_with_the_budget() -> None:
    small = buffers.plan(RelayConfig(transfer_budget=2 * MIB))
    large = buffers.plan(RelayConfig(transfer_budget=8 * MIB))
    assert large.data - small.data == (8 - 2) * MIB // 4


@pytest.mark.parametrize("budget", [0, 64 * KIB, 383 * KIB])
def test_config_refuses_a_budget_too_small_for_the_fixed_buffers(budget: int) -> None:
    problems = RelayConfig(transfer_budget=budget).problems()
    assert any("transfer_budget" in p for p in problems), problems


def test_set_buffers_report_what_the_kernel_granted() -> None:
    with socket.socket() as sock:
        granted = buffers.set_receive_buffer(sock, 64 * KIB)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= 64 * KIB  # Linux doubles the request
        assert buffers.set_send_buffer(sock, 32 * KIB) >= 32 * KIB
