"""Opening the relay's listeners (ferry.relay.listen), with the binding faked."""

from __future__ import annotations

import errno
import socket

import pytest

from ferry.address import Address
from ferry.relay import listen


class FakeSocket:
    def __init__(self, family: int, port: int) -> None:
        self.family, self.port, self.closed = family, port, False

    def getsockname(self) -> tuple[str, int]:
        return ("::" if self.family == socket.AF_INET6 else "0.0.0.0", self.port)

    def close(self) -> None:
        self.closed = True


def test_port_zero_taken_on_the_second_family_retries_on_a_new_port_for_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A free IPv6 port may be held on IPv4 by someone else: never serve IPv6 alone."""
    made: list[FakeSocket] = []
    ports = iter([40001, 40002])
    taken = {40001}

    def fake_listener(family: int, sockaddr: tuple[object, ...]) -> FakeSocket:
        port = sockaddr[1]
        assert isinstance(port, int)
        if port == 0:
            port = next(ports)
        elif port in taken:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        made.append(FakeSocket(family, port))
        return made[-1]

    monkeypatch.setattr(listen, "_listener", fake_listener)
    listeners = listen.open_listeners(Address("", 0))
    assert [(s.family, s.port) for s in listeners] == [  # type: ignore[attr-defined]
        (socket.AF_INET6, 40002),
        (socket.AF_INET, 40002),
    ]
    assert made[0].closed and not any(s.closed for s in listeners)  # type: ignore[attr-defined]


def test_a_family_missing_altogether_still_serves_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake_listener(family: int, sockaddr: tuple[object, ...]) -> FakeSocket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported")
        return FakeSocket(family, 40010)

    monkeypatch.setattr(listen, "_listener", fake_listener)
    listeners = listen.open_listeners(Address("", 0))
    assert [s.family for s in listeners] == [socket.AF_INET]
