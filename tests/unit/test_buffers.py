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


# -- splitting the data part by the legs' round trips -------------------------------

ROUND_TRIPS = st.one_of(st.none(), st.integers(0, 10_000_000))  # microseconds, up to 10 s


@given(st.integers(0, 64 * MIB), ROUND_TRIPS, ROUND_TRIPS)
def test_split_never_exceeds_the_data_part_and_keeps_whole_kib(
    data: int, sender_rtt: int | None, receiver_rtt: int | None
) -> None:
    receiver_send, sender_receive = buffers.split_data(data, sender_rtt, receiver_rtt)
    assert receiver_send >= 0 and sender_receive >= 0
    assert receiver_send + sender_receive <= data
    assert receiver_send % (2 * KIB) == 0 and sender_receive % (2 * KIB) == 0


@given(st.integers(512 * KIB, 64 * MIB), st.integers(1, 8 * MIB), ROUND_TRIPS, ROUND_TRIPS)
def test_split_plan_never_holds_more_than_the_budget(
    budget: int, pump: int, sender_rtt: int | None, receiver_rtt: int | None
) -> None:
    config = RelayConfig(transfer_budget=budget, pump_buffer=pump)
    if config.problems():
        return
    plan = buffers.plan(config).for_round_trips(sender_rtt, receiver_rtt)
    assert plan.worst_case() <= budget
    data = plan.receiver_send + plan.sender_receive
    # each leg keeps its floor, give or take the rounding to whole KiB
    assert min(plan.receiver_send, plan.sender_receive) >= buffers.MIN_LEG_SHARE * data - 4 * KIB


@pytest.mark.parametrize(
    ("sender_rtt", "receiver_rtt"),
    [(None, None), (None, 90_000), (10_000, None), (50_000, 50_000), (20, 900), (0, 0)],
)
def test_split_of_equal_unknown_or_sub_millisecond_legs_is_the_fixed_split(
    sender_rtt: int | None, receiver_rtt: int | None
) -> None:
    plan = buffers.plan(RelayConfig())
    assert plan.for_round_trips(sender_rtt, receiver_rtt) == plan


def test_split_gives_the_long_leg_the_budget() -> None:
    plan = buffers.plan(RelayConfig())
    far_receiver = plan.for_round_trips(10_000, 90_000)
    far_sender = plan.for_round_trips(90_000, 10_000)
    # bytes per second of the slower leg, with the equal split's in-flight ratio
    assert far_receiver.receiver_send >= 1.9 * plan.receiver_send
    assert far_sender.sender_receive >= 1.6 * plan.sender_receive
    assert far_receiver.receiver_send + far_receiver.sender_receive == (
        plan.receiver_send + plan.sender_receive
    )


@given(st.integers(1_000, 1_000_000), st.integers(1_000, 1_000_000), st.integers(1, 1_000_000))
def test_split_gives_a_longer_receiver_leg_never_less(
    sender_rtt: int, receiver_rtt: int, longer: int
) -> None:
    data = buffers.plan(RelayConfig()).receiver_send * 2
    before, _ = buffers.split_data(data, sender_rtt, receiver_rtt)
    after, _ = buffers.split_data(data, sender_rtt, receiver_rtt + longer)
    assert after >= before


def test_round_trip_reads_the_kernels_estimate_of_a_tcp_socket() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
    ):
        accepted, _ = listener.accept()
        with accepted:
            for sock in (client, accepted):
                rtt = buffers.round_trip(sock)
                assert rtt is not None and 0 < rtt < 1_000_000  # loopback: well under 1 s
    left, right = socket.socketpair()
    with left, right:
        assert buffers.round_trip(left) is None  # not TCP: the equal split
