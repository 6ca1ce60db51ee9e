"""Connecting to a relay whose name resolves to several addresses (happy eyeballs)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from ferry.address import Address
from ferry.client import dial, relay_link
from ferry.client.relay_link import RelayLink
from ferry.errors import RelayUnreachable

DEAD = ("192.0.2.1", 9)  # TEST-NET-1: never dialled, the fake below stands in for it


@pytest.fixture
def listener() -> Any:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def _resolving_to(*sockaddrs: tuple[str, int]) -> Any:
    async def getaddrinfo(*_args: object, **_kwargs: object) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", addr) for addr in sockaddrs]

    return getaddrinfo


async def test_a_silent_first_address_costs_a_moment_not_the_connect_timeout(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = relay_link._open
    hung: list[asyncio.Task[Any]] = []

    async def fake_open(family: int, type_: int, proto: int, sockaddr: Any) -> socket.socket:
        if sockaddr == DEAD:  # a black hole: the SYN is never answered
            hung.append(asyncio.current_task())  # type: ignore[arg-type]
            await asyncio.sleep(3600)
        return await real_open(family, type_, proto, sockaddr)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _resolving_to(DEAD, listener.getsockname()))
    monkeypatch.setattr(relay_link, "_open", fake_open)
    started = time.monotonic()
    link = await RelayLink.connect(Address("relay.example", 9021), timeout=10)
    took = time.monotonic() - started
    link.close()
    assert took < 2, took
    assert hung and hung[0].cancelled()


async def test_every_address_refusing_is_one_unreachable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        loop, "getaddrinfo", _resolving_to(("127.0.0.1", port), ("127.0.0.1", port))
    )
    with pytest.raises(RelayUnreachable, match="not reachable"):
        await RelayLink.connect(Address("relay.example", port), timeout=5)


async def test_a_connect_started_at_start_up_is_the_one_taken_over(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ./receive starts its connect before the heavy imports (client/dial.py): the
    # link takes that socket over, and resolves and dials nothing more.
    host, port = listener.getsockname()
    dialing = dial.start(host, port)
    assert dialing is not None and dialing.wait(10)
    listener.settimeout(10)
    accepted, _ = listener.accept()  # the kernel completed it before anyone waited

    async def no_resolving(*_args: object, **_kwargs: object) -> list[Any]:
        raise AssertionError("resolved again")

    async def no_dialling(*_args: object) -> socket.socket:
        raise AssertionError("dialled again")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_resolving)
    monkeypatch.setattr(relay_link, "_open", no_dialling)
    link = await RelayLink.connect(Address(host, port), timeout=10, dialing=dialing)
    with accepted:
        assert link.sock.getsockname() == accepted.getpeername()
        assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        link.close()


async def test_a_connect_started_early_that_failed_is_reported_as_unreachable() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    host, port = closed.getsockname()
    closed.close()  # nothing listens there: the early connect is refused
    dialing = dial.start(host, port)
    assert dialing is not None and dialing.wait(10)
    with pytest.raises(RelayUnreachable, match="connection refused"):
        await RelayLink.connect(Address(host, port), timeout=10, dialing=dialing)


def test_a_name_that_does_not_resolve_early_is_left_to_the_link() -> None:
    dialing = dial.start("nonexistent.invalid", 9021)
    assert dialing is not None and dialing.wait(30)
    assert dialing.take() == ([], None)
