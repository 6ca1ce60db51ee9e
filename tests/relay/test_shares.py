"""Per-network shares of the global pools: a flood from a few
networks cannot fill the relay; newcomers from other addresses still get in.

The flooders are loopback aliases (127.0.0.2, 127.0.0.3, ...), counted as
remote hosts (the harness runs with limit_loopback).
"""

from __future__ import annotations

import pytest

from ferry.protocol import rendezvous as rv
from ferry.relay.limits import PoolShares, network_key
from ferry.relay.table import State
from ferry_testing.waiting import until

from .harness import RawClient, claim, close_all, register_sender, running_relay

pytestmark = pytest.mark.timeout(60)

FLOODERS = [f"127.0.0.{n}" for n in range(2, 22)]  # 20 aliases
HONEST = "127.0.1.1"


def test_share_is_three_quarters_of_the_pool_over_the_networks_rounded_up() -> None:
    assert PoolShares(20_000, 2000).share == 8
    assert PoolShares(2000, 2000).share == 1
    assert PoolShares(4000, 2000).share == 2


def test_shares_apply_only_once_a_quarter_of_the_pool_is_in_use() -> None:
    shares = PoolShares(100, 50)  # share 2
    for _ in range(10):
        assert shares.may_take("203.0.113.9", in_use=24)
        shares.take("203.0.113.9")
    assert not shares.may_take("203.0.113.9", in_use=25)
    assert shares.may_take("198.51.100.1", in_use=25)
    assert shares.may_take("", in_use=99)  # unlimited (loopback without --limit-loopback)
    for _ in range(9):
        shares.give_back("203.0.113.9")
    assert shares.may_take("203.0.113.9", in_use=25)
    shares.give_back("203.0.113.9")
    assert len(shares) == 0


@pytest.mark.parametrize(
    ("key", "network"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2::/64", "2001:db8:1::/48"),
        ("2001:db8:1:ff00::/64", "2001:db8:1::/48"),
        ("", ""),
    ],
)
def test_network_key_is_the_ipv4_address_or_the_ipv6_48(key: str, network: str) -> None:
    assert network_key(key) == network


async def _flood_handshakes(port: int, per_alias: int) -> list[RawClient]:
    clients = []
    for source in FLOODERS:
        for _ in range(per_alias):
            clients.append(await RawClient.connect(port, source))
    return clients


async def test_a_handshake_flood_from_many_aliases_leaves_room_for_a_newcomer() -> None:
    async with running_relay(max_handshakes=200, fair_share_addresses=50) as r:
        flood = await _flood_handshakes(r.port, per_alias=20)  # 400 silent connections
        # At most a quarter of the pool freely, then 3 per network: 50 + 20 × 3.
        relay = r.relay

        def settled() -> bool:
            return relay.handshaking + relay.metrics.refusals[rv.REASON_BUSY] == len(flood)

        await until(settled, "every flood connection admitted or refused")
        assert relay.handshaking <= 110
        honest, nameplate = await register_sender(r.port, HONEST)
        assert nameplate >= 1
        close_all(honest, *flood)


async def test_a_sender_flood_from_many_aliases_leaves_room_for_a_newcomer() -> None:
    async with running_relay(max_waiting_senders=40, fair_share_addresses=10) as r:
        flood = []
        for source in FLOODERS[:4]:
            for _ in range(10):
                client = await RawClient.connect(r.port, source)
                await client.send("FERRY 1 SEND\n")
                flood.append((client, await client.line()))
        refused = [line for _, line in flood if line.startswith("ERROR busy")]
        # 10 (a quarter) freely, then 3 per network, 4 networks.
        assert r.relay.table.count(State.WAITING) <= 10 + 4 * 3
        assert refused
        honest, _ = await register_sender(r.port, HONEST)
        close_all(honest, *(client for client, _ in flood))


async def test_a_claim_flood_from_two_addresses_leaves_room_for_a_newcomer() -> None:
    async with running_relay(max_active_transfers=8, fair_share_addresses=4) as r:
        senders = [await register_sender(r.port, f"127.0.2.{n}") for n in range(1, 11)]
        claims = []
        for source, (_, nameplate) in zip(FLOODERS[:2] * 5, senders[:9], strict=False):
            receiver = await RawClient.connect(r.port, source)
            await receiver.send(claim(nameplate))
            claims.append(receiver)
        # 2 (a quarter) freely, then 2 per address: the rest were refused busy.
        await until(lambda: r.relay.table.count(State.CLAIMED) <= 4, "the claims settled")
        lines = [await receiver.line() for receiver in claims[4:]]
        assert all(line.startswith(f"ERROR {rv.REASON_BUSY}") for line in lines), lines
        honest = await RawClient.connect(r.port, HONEST)
        await honest.send(claim(senders[9][1]))
        control = senders[9][0]
        assert (await control.line()).startswith("INCOMING ")
        close_all(honest, *claims, *(control for control, _ in senders))
