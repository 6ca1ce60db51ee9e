"""Parsing of relay addresses: `host:port`, `[v6]:port`, and `:port` to listen everywhere.

Pure functions, standard library only (the relay uses them too). Light on
purpose: cli/relay.py parses its address with this module before it imports
anything else, so Address is a plain value class rather than a dataclass
(importing dataclasses imports inspect, most of the time before listening).
"""

from __future__ import annotations

from ferry.errors import InvalidAddress


class Address:
    """A host and a port; immutable, compared and hashed by value."""

    __slots__ = ("host", "port")
    host: str
    """Host name or IP literal (without brackets); "" means every interface."""
    port: int

    def __init__(self, host: str, port: int) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Address is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    def __repr__(self) -> str:
        return f"Address(host={self.host!r}, port={self.port!r})"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str, *, listen: bool = False) -> Address:
    """Parse host:port. With listen=True the host may be empty (":9021" or "9021"),
    and the port 0 (any free port)."""
    text = text.strip()
    if listen and text.isascii() and text.isdigit():
        text = ":" + text  # a bare port: listen everywhere
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise InvalidAddress(f"invalid address {text!r}: expected [v6-address]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise InvalidAddress(
                f"invalid address {text!r}: expected host:port, e.g. relay.example.com:9021"
            )
        if ":" in host:
            raise InvalidAddress(
                f"invalid address {text!r}: put IPv6 addresses in brackets, [::1]:9021"
            )
    valid = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    lowest = 0 if listen else 1  # listening on port 0: the system picks a free one
    if not valid or not lowest <= int(port_text) < 65536:
        raise InvalidAddress(f"invalid port in {text!r}: expected a number from {lowest} to 65535")
    if not host and not listen:
        raise InvalidAddress(f"invalid address {text!r}: the relay's host name is missing")
    if any(ch.isspace() or ch in "/@" for ch in host):
        raise InvalidAddress(f"invalid host in {text!r}")
    return Address(host, int(port_text))
