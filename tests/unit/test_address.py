"""Unit tests for ferry.address: parsing relay addresses and printing them back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.address import Address, parse_address
from ferry.errors import InvalidAddress, UsageError

ports = st.integers(min_value=1, max_value=65535)
host_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
host_names = st.lists(host_labels, min_size=1, max_size=4).map(".".join)
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(str)
hosts = st.one_of(host_names, ipv4_hosts, ipv6_hosts)


# --- valid addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("relay.example.com:9021", Address("relay.example.com", 9021)),
        ("localhost:9021", Address("localhost", 9021)),
        ("127.0.0.1:1", Address("127.0.0.1", 1)),
        ("host:65535", Address("host", 65535)),
        ("[::1]:9021", Address("::1", 9021)),
        ("[2001:db8::7]:443", Address("2001:db8::7", 443)),
        ("[fe80::1%eth0]:9021", Address("fe80::1%eth0", 9021)),
        ("  localhost:9021\n", Address("localhost", 9021)),
        ("host:09021", Address("host", 9021)),
    ],
)
def test_parse_address_valid_text_gives_host_and_port(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9021", Address("", 9021)),
        ("0.0.0.0:9021", Address("0.0.0.0", 9021)),
        ("[::]:9021", Address("::", 9021)),
        ("localhost:9021", Address("localhost", 9021)),
    ],
)
def test_parse_address_with_listen_accepts_empty_host_and_ordinary_hosts(
    text: str, expected: Address
) -> None:
    assert parse_address(text, listen=True) == expected


def test_parse_address_empty_host_without_listen_raises_invalid_address() -> None:
    with pytest.raises(InvalidAddress, match="host name is missing"):
        parse_address(":9021")


# --- invalid addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "port",
    ["65536", "99999", "-1", "+80", "abc", "", " ", " 80", "8 0", "8o", "1e3", "0x50"],
)
@pytest.mark.parametrize("listen", [False, True])
def test_parse_address_bad_port_raises_invalid_address(port: str, listen: bool) -> None:
    with pytest.raises(InvalidAddress, match="port"):
        parse_address(f"relay.example.com:{port}", listen=listen)


@pytest.mark.parametrize("port", ["0", "00"])
def test_parse_address_port_zero_is_for_listening_only(port: str) -> None:
    with pytest.raises(InvalidAddress, match="port"):
        parse_address(f"relay.example.com:{port}")
    assert parse_address(f"127.0.0.1:{port}", listen=True) == Address("127.0.0.1", 0)
    assert parse_address(f":{port}", listen=True) == Address("", 0)


@pytest.mark.parametrize("port", ["\u0663\u0660", "\uff18\uff10", "\u00b2", "\u2460"])
def test_parse_address_non_ascii_digits_in_port_raise_invalid_address(port: str) -> None:
    with pytest.raises(InvalidAddress, match="port"):
        parse_address(f"host:{port}")


def test_parse_address_port_with_thousands_of_digits_raises_invalid_address() -> None:
    with pytest.raises(InvalidAddress):
        parse_address("host:" + "9" * 5000)


@pytest.mark.parametrize("text", ["::1:9021", "2001:db8::7:443", "fe80::1:80", "a:b:80"])
@pytest.mark.parametrize("listen", [False, True])
def test_parse_address_unbracketed_ipv6_raises_invalid_address(text: str, listen: bool) -> None:
    with pytest.raises(InvalidAddress, match="brackets"):
        parse_address(text, listen=listen)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "localhost",
        "[::1]",
        "[::1]9021",
        "[::1]:",
        "[]:9021",
        "[::1:9021",
        "[::1]x:9021",
        "[::1]::9021",
    ],
)
@pytest.mark.parametrize("listen", [False, True])
def test_parse_address_malformed_text_raises_invalid_address(text: str, listen: bool) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(text, listen=listen)


@pytest.mark.parametrize(
    "text",
    [
        "relay example:9021",
        "relay\texample:9021",
        "user@relay:9021",
        "relay/path:9021",
        "http://relay:9021",
        "[ ::1]:9021",
        "[::1/64]:9021",
    ],
)
def test_parse_address_host_with_space_slash_or_at_raises_invalid_address(text: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(text)


def test_invalid_address_is_a_usage_error_for_the_cli() -> None:
    with pytest.raises(UsageError):
        parse_address("nope")


def test_invalid_address_message_quotes_the_text_and_shows_an_example() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address("relay.example.com")
    assert "'relay.example.com'" in caught.value.message
    assert ":9021" in caught.value.message


# --- printing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("relay.example.com", 9021), "relay.example.com:9021"),
        (Address("127.0.0.1", 80), "127.0.0.1:80"),
        (Address("::1", 9021), "[::1]:9021"),
        (Address("", 9021), ":9021"),
    ],
)
def test_address_str_gives_parseable_text(address: Address, text: str) -> None:
    assert str(address) == text
    assert parse_address(text, listen=True) == address


@given(hosts, ports)
def test_parse_address_of_str_of_any_address_gives_same_address(host: str, port: int) -> None:
    address = Address(host, port)
    assert parse_address(str(address)) == address


@given(ports)
def test_parse_address_of_str_of_listen_everywhere_address_gives_same_address(port: int) -> None:
    address = Address("", port)
    assert parse_address(str(address), listen=True) == address


@given(st.text(max_size=60), st.booleans())
def test_parse_address_any_text_gives_address_that_round_trips_or_raises_invalid_address(
    text: str, listen: bool
) -> None:
    try:
        address = parse_address(text, listen=listen)
    except InvalidAddress as exc:
        assert "\n" not in exc.message or "\n" in text
        return
    # Port 0 ("any free port") is a listening address only (./relay :0 --ready-file).
    assert (0 if listen else 1) <= address.port <= 65535
    assert address.host or listen
    assert parse_address(str(address), listen=listen) == address


@given(
    st.lists(
        st.sampled_from(["[", "]", ":", "::1", "host", "9021", "0", "65536", "", " ", "@", "x"]),
        max_size=6,
    ).map("".join),
    st.booleans(),
)
def test_parse_address_near_valid_text_gives_address_or_raises_invalid_address(
    text: str, listen: bool
) -> None:
    try:
        address = parse_address(text, listen=listen)
    except InvalidAddress:
        return
    assert (0 if listen else 1) <= address.port <= 65535
    assert parse_address(str(address), listen=listen) == address


def test_parse_address_bare_port_when_listening_means_every_interface() -> None:
    assert parse_address("9021", listen=True) == Address("", 9021)


def test_parse_address_bare_port_for_a_client_raises_invalid_address() -> None:
    with pytest.raises(InvalidAddress):
        parse_address("9021")
