"""The per-address limiter: pure code, clock injected."""

from __future__ import annotations

import pytest

from ferry.relay.limits import ConnectionCounter, LookupLimiter, address_key, ip_of, is_loopback


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_address_key_groups_ipv6_by_64_and_keeps_ipv4(host: str, key: str) -> None:
    assert address_key(host) == key


def test_connection_counter_refuses_past_limit_and_frees_on_close() -> None:
    counter = ConnectionCounter(2)
    assert counter.open("a") and counter.open("a")
    assert not counter.open("a")
    assert counter.open("b")
    counter.close("a")
    assert counter.open("a")
    counter.close("a")
    counter.close("a")
    counter.close("b")
    assert len(counter) == 0  # nothing remembered for idle addresses


def test_lookup_budget_is_a_burst_then_one_per_refill_interval() -> None:
    limiter = LookupLimiter(per_minute=6, max_tracked=10)
    assert all(limiter.allow("a", 0.0) for _ in range(6))
    assert not limiter.allow("a", 0.0)
    assert not limiter.allow("a", 9.9)  # one token takes 10 s to come back
    assert limiter.allow("a", 10.0)
    assert not limiter.allow("a", 10.0)


def test_lookup_budget_is_per_address() -> None:
    limiter = LookupLimiter(per_minute=1, max_tracked=10)
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 1.0)
    assert limiter.allow("b", 1.0)


def test_lookup_refusals_do_not_extend_the_wait() -> None:
    limiter = LookupLimiter(per_minute=1, max_tracked=10)
    assert limiter.allow("a", 0.0)
    for t in range(1, 60):
        assert not limiter.allow("a", float(t))
    assert limiter.allow("a", 60.0)


def test_retry_after_counts_down_to_the_next_token() -> None:
    limiter = LookupLimiter(per_minute=2, max_tracked=10)
    assert limiter.retry_after("a", 0.0) == 0.0
    limiter.allow("a", 0.0)
    limiter.allow("a", 0.0)
    assert limiter.retry_after("a", 0.0) == pytest.approx(30.0)
    assert limiter.retry_after("a", 20.0) == pytest.approx(10.0)
    assert limiter.retry_after("a", 31.0) == 0.0


def test_full_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    limiter = LookupLimiter(per_minute=5, max_tracked=1000)
    for i in range(500):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", float(i) * 0.01)
    assert len(limiter) == 500
    limiter.allow("late", 200.0)  # a minute after the last: all others refilled
    assert len(limiter) == 1


def test_addresses_past_max_tracked_are_refused_until_some_expire() -> None:
    limiter = LookupLimiter(per_minute=5, max_tracked=2)
    assert limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    assert not limiter.allow("c", 1.0)
    assert limiter.allow("a", 1.0)  # known addresses keep their budget
    assert limiter.allow("c", 61.0)


def test_ip_of_drops_the_zone_unmaps_ipv4_and_passes_names_as_none() -> None:
    assert str(ip_of("::ffff:10.0.0.1")) == "10.0.0.1"
    assert str(ip_of("fe80::1%eth0")) == "fe80::1"
    assert ip_of("relay.example") is None
    assert is_loopback("::ffff:127.0.0.1") and not is_loopback("relay.example")
