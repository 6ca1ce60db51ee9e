"""The node-to-node handshake's pure parts (forward.py): HMAC over a fresh challenge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import NodeHandshakeFailed, Refusal
from ferry.relay import forward

SECRET = b"0123456789abcdef0123456789abcdef"
CHALLENGE = "ab" * 16


def test_auth_line_made_with_the_secret_verifies_and_names_the_client():
    line = forward.auth_line(SECRET, CHALLENGE, "node2", "192.0.2.7:5555")
    assert forward.verify_auth(SECRET, CHALLENGE, "node2", line) == "192.0.2.7:5555"


@pytest.mark.parametrize(
    ("secret", "challenge", "node", "peer"),
    [
        (b"another secret of enough bytes!!", CHALLENGE, "node2", "192.0.2.7:5555"),
        (SECRET, "cd" * 16, "node2", "192.0.2.7:5555"),  # an answer to another challenge
        (SECRET, CHALLENGE, "node3", "192.0.2.7:5555"),  # claims another node's id
    ],
)
def test_auth_line_for_anything_else_is_refused_as_unauthorized(secret, challenge, node, peer):
    line = forward.auth_line(secret, challenge, node, peer)
    with pytest.raises(Refusal) as refused:
        forward.verify_auth(SECRET, CHALLENGE, "node2", line)
    assert refused.value.reason == forward.REASON_UNAUTHORIZED


def test_auth_line_with_the_client_address_changed_is_refused():
    line = forward.auth_line(SECRET, CHALLENGE, "node2", "192.0.2.7:5555")
    forged = line.replace(b"192.0.2.7", b"192.0.2.8")
    with pytest.raises(Refusal):
        forward.verify_auth(SECRET, CHALLENGE, "node2", forged)


@given(st.binary(max_size=200))
def test_verify_auth_on_garbage_refuses_never_crashes(line):
    with pytest.raises(Refusal):
        forward.verify_auth(SECRET, CHALLENGE, "node2", line)


@given(st.binary(max_size=200))
def test_parse_hello_gives_an_id_or_refuses(tail):
    try:
        node = forward.parse_hello(forward.NODE_HELLO + tail)
    except Refusal as refused:
        assert refused.reason == forward.REASON_UNAUTHORIZED
    else:
        assert forward.hello_line(node) == forward.NODE_HELLO + tail.rstrip(b"\r\n") + b"\n"


def test_challenge_round_trips_and_an_error_line_is_not_a_challenge():
    assert forward.parse_challenge(forward.challenge_line(CHALLENGE)) == CHALLENGE
    with pytest.raises(NodeHandshakeFailed):
        forward.parse_challenge(b"ERROR unauthorized malformed node hello\n")


def test_printable_peer_keeps_addresses_and_replaces_anything_else():
    assert forward.printable_peer("[2001:db8::1]:443") == "[2001:db8::1]:443"
    assert forward.printable_peer("1.2.3.4:5 via x") == "unknown"


def test_read_secret_refuses_a_short_secret(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        forward.read_secret(str(path))
    path.write_bytes(b"  " + SECRET + b"\n")
    assert forward.read_secret(str(path)) == SECRET
