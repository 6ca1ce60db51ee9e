"""Browser legs against a real relay process: a stalled browser's memory, and its end.

A browser receiver that stops reading must back-pressure the sender with the
transfer's memory within the per-transfer budget, counted the way the CLI's
stalled receiver is (tests/faults/test_stalls_and_vanishing.py): kernel
memory of the relay's TCP sockets (ss -tm), plus the bridge's socketpair
(ss -xm) and the relay's user-space buffers (the pump's pipes and the
bridge's own, bridge.BRIDGE_HOLD counts them with the pair); when the browser
goes, everything is let go. The idle timeout that ends a stalled browser leg
runs on a fake clock in process (tests/relay/test_web_front.py).
"""

from __future__ import annotations

import select
import time
from pathlib import Path

import pytest

from ferry.relay import bridge
from ferry_testing.waiting import until
from ferry_testing.wsclient import WsClient
from tests.faults.procs import figure, relay_process
from tests.faults.test_stalls_and_vanishing import PER_TRANSFER_BUDGET, PUMP_BUFFER, _connect_small
from tests.relay.harness import PAKE_RECORD, claim, register_sender
from tests.sockmem import process_unix_sockets, server_sockets

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20


async def test_stalled_browser_receiver_stays_within_the_transfer_budget(tmp_path: Path) -> None:
    with relay_process(tmp_path) as relay:
        control, nameplate = await register_sender(relay.port)
        browser = await WsClient.connect(relay.port, receive_buffer=32 * 1024)
        await browser.send(claim(nameplate))
        ticket = (await control.line()).split()[1]
        data = await _connect_small(relay.port)
        await data.send(f"FERRY 1 JOIN {nameplate} {ticket}\n")
        assert await data.line() == "PAIRED"
        assert await browser.line() == "PAIRED"
        before = relay.rss_kib()

        def held() -> tuple[int, int]:
            tcp = sum(s.held for s in server_sockets(relay.port))
            pair = sum(s.held_unix for s in process_unix_sockets(relay.pid))
            return tcp, pair

        # The browser reads nothing from here on. Push until the sender cannot
        # write for a second, sampling the relay's socket memory meanwhile.
        chunk = b"\0" * 65536
        pushed, last_progress, peak, peak_tcp, peak_pair = 0, time.monotonic(), 0, 0, 0
        while time.monotonic() - last_progress < 1.0 and pushed < 64 * MIB:
            try:
                pushed += data.sock.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                select.select([], [data.sock], [], 0.1)
                tcp, pair = held()
                if tcp + pair > peak:
                    peak, peak_tcp, peak_pair = tcp + pair, tcp, pair
        tcp, pair = held()
        if tcp + pair > peak:
            peak, peak_tcp, peak_pair = tcp + pair, tcp, pair
        stalled_rss = relay.rss_kib()
        user_space = 2 * PUMP_BUFFER + bridge.USER_HOLD
        assert 0 < pushed < PER_TRANSFER_BUDGET, pushed
        assert peak + user_space <= PER_TRANSFER_BUDGET, (peak_tcp, peak_pair)
        assert peak > 2 * MIB, (peak_tcp, peak_pair)  # the budget is used, not 128 KiB
        assert stalled_rss - before < PER_TRANSFER_BUDGET // 1024
        browser.close()  # the browser goes: the relay ends the pipe and lets every leg go
        rest = await data.read_until_closed(timeout=10)
        assert rest == PAKE_RECORD  # the browser's claim carried it; nothing else
        await until(lambda: relay.metrics()["connections_open"] == 1, "legs closed", 20)
        assert relay.metrics()["active_transfers"] == 0
        for client in (control, data):
            client.close()
        figure(
            "stalled browser receiver",
            f"sender could push {pushed // 1024} KiB before backpressure; relay held at most "
            f"{peak // 1024} KiB in sockets ({peak_tcp // 1024} KiB TCP, ss r+w+f+bl; "
            f"{peak_pair // 1024} KiB socketpair, ss -x r+t) plus {user_space // 1024} KiB "
            f"of pipes and bridge buffers = {(peak + user_space) // 1024} KiB of the "
            f"{PER_TRANSFER_BUDGET // 1024} KiB budget; relay RSS {before} -> {stalled_rss} KiB",
        )
