"""The byte pump on real loopback TCP sockets, splice and copy paths alike."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from ferry.relay.buffers import SKB_SLACK
from ferry.relay.pump import SPLICE_AVAILABLE, pump
from tests.inproc.sockets import tcp_pair
from tests.relay.clock import ClockLoop, run_on_clock, turns

PATHS = [pytest.param(False, id="copy")]
if SPLICE_AVAILABLE:
    PATHS.append(pytest.param(True, id="splice"))


Sockets = tuple[socket.socket, socket.socket, socket.socket, socket.socket]


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    """(a_client, a_relay, b_client, b_relay): two loopback TCP pairs, closed afterwards."""
    a_client, a_relay = tcp_pair()
    b_client, b_relay = tcp_pair()
    yield a_client, a_relay, b_client, b_relay
    for sock in (a_client, a_relay, b_client, b_relay):
        sock.close()


async def _send_all(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


async def _read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await loop.sock_recv(sock, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_moves_both_directions_and_propagates_half_close(
    use_splice: bool, sockets: Sockets
) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    forward = os.urandom(3 * 1024 * 1024 + 17)
    backward = os.urandom(100_001)

    async def a_side() -> bytes:
        await _send_all(a_client, forward)
        a_client.shutdown(socket.SHUT_WR)
        return await _read_to_eof(a_client)

    async def b_side() -> bytes:
        await _send_all(b_client, backward)
        b_client.shutdown(socket.SHUT_WR)
        return await _read_to_eof(b_client)

    result, got_at_a, got_at_b = await asyncio.wait_for(
        asyncio.gather(
            pump(a_relay, b_relay, buffer_size=65536, idle_timeout=10, use_splice=use_splice),
            a_side(),
            b_side(),
        ),
        timeout=30,
    )
    assert got_at_b == forward
    assert got_at_a == backward
    assert (result.bytes_a_to_b, result.bytes_b_to_a) == (len(forward), len(backward))
    assert result.outcome == "closed"


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_delivers_preloaded_bytes_before_the_stream(
    use_splice: bool, sockets: Sockets
) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    a_client.shutdown(socket.SHUT_WR)
    b_client.shutdown(socket.SHUT_WR)
    result, got_at_a, got_at_b = await asyncio.wait_for(
        asyncio.gather(
            pump(
                a_relay,
                b_relay,
                buffer_size=65536,
                idle_timeout=10,
                use_splice=use_splice,
                preload_a_to_b=b"early-from-a",
                preload_b_to_a=b"early-from-b",
            ),
            _read_to_eof(a_client),
            _read_to_eof(b_client),
        ),
        timeout=10,
    )
    assert got_at_b == b"early-from-a"
    assert got_at_a == b"early-from-b"
    assert result.outcome == "closed"


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_with_stalled_reader_holds_a_bounded_amount(
    use_splice: bool, sockets: Sockets
) -> None:
    """Backpressure: a reader that reads nothing stops the writer; the relay holds little."""
    a_client, a_relay, b_client, b_relay = sockets
    buffer = 32 * 1024
    # Every queue on the path gets a small limit, the clients' too, so what the writer
    # can get accepted has an exact bound: the four queues plus the pump's buffer.
    for sock in (a_client, a_relay, b_client, b_relay):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    task = asyncio.create_task(
        pump(a_relay, b_relay, buffer_size=buffer, idle_timeout=1.0, use_splice=use_splice)
    )
    chunk = b"x" * 65536
    accepted = 0
    for _ in range(2000):  # bounded: at most 128 MiB offered
        try:
            accepted += a_client.send(chunk)
        except BlockingIOError:
            await asyncio.sleep(0.05)
            try:
                accepted += a_client.send(chunk)
            except BlockingIOError:
                break
    else:
        pytest.fail("the writer was never back-pressured")
    # Everything accepted sits in those queues (limits as granted, i.e. doubled by the
    # kernel; each may pass its limit by one packet) or in the pump: well under 1 MiB.
    queues = [(a_client, socket.SO_SNDBUF), (a_relay, socket.SO_RCVBUF)]
    queues += [(b_relay, socket.SO_SNDBUF), (b_client, socket.SO_RCVBUF)]
    bound = buffer + sum(s.getsockopt(socket.SOL_SOCKET, o) + SKB_SLACK for s, o in queues)
    assert accepted <= bound < 1024 * 1024, (accepted, bound)
    result = await asyncio.wait_for(task, timeout=10)
    assert result.outcome == "idle"


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_when_a_peer_resets_ends_with_error(use_splice: bool, sockets: Sockets) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    task = asyncio.create_task(
        pump(a_relay, b_relay, buffer_size=65536, idle_timeout=10, use_splice=use_splice)
    )
    await asyncio.sleep(0.05)
    # SO_LINGER 0 makes close() send RST instead of FIN.
    b_client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b_client.close()
    for _ in range(100):
        try:
            a_client.send(b"y" * 65536)
        except (BlockingIOError, ConnectionError):
            pass
        if task.done():
            break
        await asyncio.sleep(0.02)
    result = await asyncio.wait_for(task, timeout=10)
    assert result.outcome == "error"


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_reports_bytes_as_they_move_not_only_at_the_end(
    use_splice: bool, sockets: Sockets
) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    reported: list[int] = []
    task = asyncio.create_task(
        pump(
            a_relay,
            b_relay,
            buffer_size=65536,
            idle_timeout=10,
            use_splice=use_splice,
            on_moved=reported.append,
        )
    )
    await _send_all(a_client, b"x" * 100_000)
    got = 0
    for _ in range(200):  # bounded: the bytes arrive within a few loop turns
        got += len(await asyncio.get_running_loop().sock_recv(b_client, 1 << 16))
        if got == 100_000:
            break
    assert sum(reported) == 100_000 and not task.done()  # counted while the pipe still runs
    a_client.shutdown(socket.SHUT_WR)
    b_client.shutdown(socket.SHUT_WR)
    result = await asyncio.wait_for(task, 10)
    assert sum(reported) == result.bytes_a_to_b + result.bytes_b_to_a == 100_000


@pytest.mark.parametrize("use_splice", PATHS)
def test_pump_idle_timeout_runs_on_the_event_loop_clock(use_splice: bool, sockets: Sockets) -> None:
    """A 10-minute idle timeout, passed by moving the loop's time, not by waiting."""
    a_client, a_relay, b_client, b_relay = sockets

    async def scenario(loop: ClockLoop) -> None:
        task = asyncio.create_task(
            pump(a_relay, b_relay, buffer_size=65536, idle_timeout=600, use_splice=use_splice)
        )
        await _send_all(a_client, b"one")
        assert await loop.sock_recv(b_client, 16) == b"one"
        loop.advance(599)
        await turns()
        assert not task.done()
        loop.advance(2)
        result = await asyncio.wait_for(task, 5)
        assert (result.outcome, result.bytes_a_to_b) == ("idle", 3)

    run_on_clock(scenario)


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_uses_the_clock_it_is_given(use_splice: bool, sockets: Sockets) -> None:
    _, a_relay, _, b_relay = sockets
    now = [0.0]
    task = asyncio.create_task(
        pump(
            a_relay,
            b_relay,
            buffer_size=65536,
            idle_timeout=0.05,
            use_splice=use_splice,
            clock=lambda: now[0],
        )
    )
    # The idle check wakes on the event loop's timer; by the given clock no
    # time passes, so the pipe is never idle until that clock moves.
    for _ in range(3):
        done, _ = await asyncio.wait([task], timeout=0.06)
        assert not done
    now[0] = 1.0
    assert (await asyncio.wait_for(task, 5)).outcome == "idle"


@pytest.mark.parametrize("use_splice", PATHS)
@pytest.mark.parametrize("last", ["a", "b"])
async def test_pump_reports_whose_bytes_moved_last_and_who_closed_first(
    use_splice: bool, last: str, sockets: Sockets
) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(
        pump(a_relay, b_relay, buffer_size=65536, idle_timeout=10, use_splice=use_splice)
    )
    await _send_all(a_client, b"request")
    assert await loop.sock_recv(b_client, 64) == b"request"
    await _send_all(b_client, b"reply")
    assert await loop.sock_recv(a_client, 64) == b"reply"
    if last == "a":
        await _send_all(a_client, b"a word more")
        assert await loop.sock_recv(b_client, 64) == b"a word more"
    b_client.shutdown(socket.SHUT_WR)
    assert await _read_to_eof(a_client) == b""
    a_client.shutdown(socket.SHUT_WR)
    result = await asyncio.wait_for(task, 10)
    assert (result.outcome, result.last_from, result.first_eof) == ("closed", last, "b")


@pytest.mark.parametrize("use_splice", PATHS)
async def test_pump_with_nothing_moved_reports_no_last_side(
    use_splice: bool, sockets: Sockets
) -> None:
    a_client, a_relay, b_client, b_relay = sockets
    a_client.shutdown(socket.SHUT_WR)
    b_client.shutdown(socket.SHUT_WR)
    result = await asyncio.wait_for(
        pump(a_relay, b_relay, buffer_size=65536, idle_timeout=10, use_splice=use_splice), 10
    )
    assert (result.outcome, result.last_from) == ("closed", None)
    assert result.first_eof in ("a", "b")
