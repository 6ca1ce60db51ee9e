"""Unit tests for ferry.relay.buffers: spending the per-transfer budget on socket buffers."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.config import KIB, MIB, RelayConfig
from ferry.relay import buffers


def test_plan_default_worst_case_is_within_the_4_mib_budget() -> None:
    plan = buffers.plan(RelayConfig())
    assert RelayConfig().transfer_budget == 4 * MIB
    assert 0.98 * 4 * MIB <= plan.worst_case() <= 4 * MIB


def test_plan_spends_the_budget_on_the_data_direction() -> None:
    plan = buffers.plan(RelayConfig())
    assert plan.receiver_send + plan.sender_receive >= 0.9 * 4 * MIB
    assert plan.control <= 32 * KIB
    # S's window is only part of its buffer, so S gets the larger share.
    assert plan.sender_receive > plan.receiver_send


def test_an_accepted_socket_gets_a_window_scale_for_the_largest_window() -> None:
    """The listener sets no buffer (listen.py): the scale comes from the system's
    maximum, and it must let S's window reach its whole buffer."""
    import re
    import shutil
    import subprocess

    from ferry.address import Address
    from ferry.relay.listen import open_listeners

    ss = shutil.which("ss")
    assert ss, "ss (iproute2) is needed; .ci/run installs it"
    plan = buffers.plan(RelayConfig())
    (listener,) = open_listeners(Address("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener, socket.create_connection(("127.0.0.1", port)) as client:
        accepted, _ = listener.accept()
        with accepted:
            # Before the relay raises it, the socket keeps the kernel's small default.
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < plan.sender_receive
            out = subprocess.run(
                [ss, "-tinH", "state", "established", f"( sport = :{port} )"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            scale = int(re.findall(r"wscale:\d+,(\d+)", out)[0])
            assert 65535 << scale >= plan.sender_receive, out
            plan.apply(accepted, client)
            clamp = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP)
            assert clamp >= plan.sender_receive // 4, clamp


def test_memory_ceiling_is_max_memory_or_a_quarter_of_the_machine() -> None:
    assert buffers.memory_ceiling(RelayConfig(max_memory=12 * MIB)) == 12 * MIB
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert buffers.memory_ceiling(RelayConfig()) == physical // 4
    assert RelayConfig(max_memory=MIB).problems() != []
    assert RelayConfig(max_memory=0).problems() == []


@given(st.integers(0, 64 * MIB), st.integers(1, 8 * MIB))
def test_plan_worst_case_never_exceeds_a_usable_budget(budget: int, pump: int) -> None:
    config = RelayConfig(transfer_budget=budget, pump_buffer=pump)
    plan = buffers.plan(config)
    if not config.problems():
        assert plan.worst_case() <= budget
        assert min(plan.receiver_send, plan.sender_receive) >= plan.control
    assert plan.receiver_send >= 0 and plan.sender_receive >= 0


def test_plan_grows_with_the_budget() -> None:
    small = buffers.plan(RelayConfig(transfer_budget=2 * MIB))
    large = buffers.plan(RelayConfig(transfer_budget=8 * MIB))
    grown = large.receiver_send + large.sender_receive - small.receiver_send - small.sender_receive
    assert grown == 6 * MIB


def test_apply_gives_the_data_direction_its_buffers() -> None:
    plan = buffers.plan(RelayConfig())
    with socket.socket() as sender, socket.socket() as receiver:
        plan.apply(sender, receiver)
        assert sender.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == plan.sender_receive
        assert receiver.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == plan.receiver_send


@pytest.mark.parametrize("budget", [0, 64 * KIB, 511 * KIB])
def test_config_refuses_a_budget_too_small_for_the_fixed_buffers(budget: int) -> None:
    problems = RelayConfig(transfer_budget=budget).problems()
    assert any("transfer_budget" in p for p in problems), problems


def test_set_buffers_report_what_the_kernel_granted() -> None:
    with socket.socket() as sock:
        granted = buffers.set_receive_buffer(sock, 64 * KIB)
        assert granted == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted >= 64 * KIB  # Linux doubles the request
        assert buffers.set_send_buffer(sock, 32 * KIB) >= 32 * KIB


class _Unprivileged:
    """A socket stand-in whose FORCE options fail as without CAP_NET_ADMIN."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.value = 0

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append(option)
        if option in (buffers._RCVBUFFORCE, buffers._SNDBUFFORCE):
            raise PermissionError(1, "Operation not permitted")
        self.value = 2 * value

    def getsockopt(self, level: int, option: int) -> int:
        return self.value


def test_without_cap_net_admin_the_capped_option_is_used_and_force_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(buffers, "_force_refused", False)
    first, second = _Unprivileged(), _Unprivileged()
    assert buffers.set_receive_buffer(first, 64 * KIB) == 128 * KIB  # type: ignore[arg-type]
    assert first.calls == [buffers._RCVBUFFORCE, socket.SO_RCVBUF]
    assert buffers.set_send_buffer(second, 64 * KIB) == 128 * KIB  # type: ignore[arg-type]
    assert second.calls == [socket.SO_SNDBUF]


def test_force_options_are_known_on_linux_and_pass_rmem_max_as_root() -> None:
    # The socket module does not export them; without them the relay would be
    # capped at net.core.rmem_max even with CAP_NET_ADMIN.
    assert buffers._RCVBUFFORCE == 33 and buffers._SNDBUFFORCE == 32
    with open("/proc/sys/net/core/rmem_max") as limit:
        rmem_max = int(limit.read())
    request = rmem_max + 64 * KIB
    with socket.socket() as sock:
        granted = buffers.set_receive_buffer(sock, request)
    # With CAP_NET_ADMIN (root) FORCE passes the cap; without, the cap holds.
    assert granted == 2 * (request if os.geteuid() == 0 else rmem_max)
