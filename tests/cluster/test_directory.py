"""The Redis directory (relay/cluster.py) against a real redis-server, in process.

Skipped locally without redis-server; with CI=true it must run (ferry_testing/cluster.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ferry.errors import DirectoryUnavailable
from ferry.relay.directory import Owner
from ferry.relay.metrics import Metrics, render
from ferry_testing import procs
from ferry_testing.cluster import RedisServer, require_binaries

pytest.importorskip("redis")

from ferry.relay.cluster import RedisDirectory


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_binaries()
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    redis_server.command("FLUSHALL")
    return redis_server.url


_made: list[RedisDirectory] = []
"""Every directory the running test made: closed at its teardown, passed or failed."""


def directory(url: str, node: str, ttl: float = 10.0, timeout: float = 2.0) -> RedisDirectory:
    made = RedisDirectory(url, node, f"127.0.0.1:{9000 + int(node[-1])}", ttl, timeout=timeout)
    _made.append(made)
    return made


@pytest.fixture(autouse=True)
async def _close_directories() -> AsyncIterator[None]:
    """A test that fails before its own close() would leave its Redis connections to the
    garbage collector, whose ResourceWarning then fails whichever test runs next."""
    yield
    while _made:
        await _made.pop().close()


async def test_concurrent_allocations_on_two_nodes_are_unique_and_smallest_first(url):
    # 100 allocations at once open their Redis connections at once: on a busy 2-core
    # machine that can take longer than the 2 s the other tests allow. What is checked
    # here is uniqueness and order, not speed.
    one, two = directory(url, "n1", timeout=10.0), directory(url, "n2", timeout=10.0)
    numbers = await asyncio.gather(*(d.allocate() for _ in range(50) for d in (one, two)))
    assert sorted(n for n in numbers if n is not None) == list(range(1, 101))
    await one.close()
    await two.close()


async def test_a_released_number_is_the_next_one_given(url, redis_server):
    one = directory(url, "n1")
    first, second, third = [await one.allocate() for _ in range(3)]
    assert (first, second, third) == (1, 2, 3)
    one.release(2)
    await one.close()  # waits for the release
    assert redis_server.get("ferry:np:2") is None
    two = directory(url, "n2")
    assert await two.allocate() == 2
    assert await two.allocate() == 4
    await two.close()


async def test_release_by_another_node_leaves_the_owner_s_nameplate(url, redis_server):
    one, two = directory(url, "n1"), directory(url, "n2")
    number = await one.allocate()
    assert number is not None
    two._held.add(number)  # as if n2 believed it held it too
    two.release(number)
    await two.close()
    assert (redis_server.get(f"ferry:np:{number}") or "").startswith("n1 ")
    await one.close()


async def test_locate_names_the_owner_elsewhere_and_none_for_own_or_unknown(url):
    one, two = directory(url, "n1"), directory(url, "n2")
    number = await one.allocate()
    assert number is not None
    assert await two.locate(number) == Owner("n1", "127.0.0.1:9001")
    assert await one.locate(number) is None
    assert await two.locate(number + 1) is None
    await one.close()
    await two.close()


async def test_refresh_restores_the_ttl_of_held_nameplates_and_the_heartbeat(url, redis_server):
    one = directory(url, "n1", ttl=10.0)
    number = await one.allocate()
    redis_server.command("PEXPIRE", f"ferry:np:{number}", "50")
    await one.refresh()
    assert int(redis_server.command("PTTL", f"ferry:np:{number}")[1:].strip()) > 9000
    assert redis_server.get("ferry:node:n1") == "127.0.0.1:9001"
    assert one.gauges()["cluster_nodes_live"][1] == 1
    await one.close()
    assert redis_server.get("ferry:node:n1") is None  # a clean stop leaves no heartbeat


async def test_numbers_of_a_dead_node_are_reclaimed_once_expired(url, redis_server):
    dead = directory(url, "n1", ttl=0.2)
    assert await dead.allocate() == 1
    assert await dead.allocate() == 2
    await dead.close()  # the node died: nobody refreshes
    deadline = asyncio.get_running_loop().time() + 5
    while redis_server.get("ferry:np:1") or redis_server.get("ferry:np:2"):
        assert asyncio.get_running_loop().time() < deadline, "the keys did not expire"
        await asyncio.sleep(0.05)
    live = directory(url, "n2")
    assert await live.allocate() == 1
    assert await live.allocate() == 2
    assert await live.allocate() == 3
    await live.close()


async def test_after_redis_lost_everything_refresh_registers_the_held_nameplates(url, redis_server):
    one, two = directory(url, "n1"), directory(url, "n2")
    assert [await one.allocate(), await one.allocate(), await one.allocate()] == [1, 2, 3]
    one.release(1)
    await asyncio.sleep(0)
    await asyncio.wait(list(one._releasing))
    redis_server.command("FLUSHALL")  # a restart without persistence
    assert await two.allocate() == 1  # before n1's next refresh: 1 is free anyway
    await one.refresh()
    assert (redis_server.get("ferry:np:2") or "").startswith("n1 ")
    assert (redis_server.get("ferry:np:3") or "").startswith("n1 ")
    assert await two.allocate() == 4  # never one of n1's
    assert one.conflicts == 0
    await one.close()
    await two.close()


async def test_a_number_taken_by_another_node_meanwhile_is_a_conflict_not_a_theft(
    url, redis_server
):
    one, two = directory(url, "n1"), directory(url, "n2")
    assert await one.allocate() == 1
    redis_server.command("FLUSHALL")
    assert await two.allocate() == 1
    await one.refresh()
    assert one.conflicts == 1
    assert (redis_server.get("ferry:np:1") or "").startswith("n2 ")
    await one.close()
    await two.close()


async def test_an_unreachable_redis_is_unavailable_quickly_and_counted():
    url = f"redis://{procs.HOST}:{procs.free_port()}/0"
    lost = RedisDirectory(url, "n1", "127.0.0.1:9001", 10.0, timeout=0.5)
    with pytest.raises(DirectoryUnavailable):
        await lost.allocate()
    with pytest.raises(DirectoryUnavailable):
        await lost.locate(1)
    gauges = lost.gauges()
    assert gauges["cluster_directory_up"][1] == 0
    assert gauges["cluster_redis_errors_total"][1] == 2
    # What only counts up is a Prometheus counter, named _total.
    text = render(Metrics(), gauges)
    for counted in ("redis_errors", "directory_operations", "nameplate_conflicts"):
        assert f"# TYPE ferry_relay_cluster_{counted}_total counter\n" in text
    assert "# TYPE ferry_relay_cluster_directory_up gauge\n" in text
    await lost.close()
