"""Unit tests for ferry.protocol.http: sniffing, request heads and responses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.errors import HttpError
from ferry.protocol.http import (
    MAX_HEAD,
    MAX_HEADERS,
    Protocol,
    error_response,
    head_end,
    parse_request,
    response,
    sniff,
)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (b"", Protocol.UNKNOWN),
        (b"G", Protocol.UNKNOWN),
        (b"GET", Protocol.UNKNOWN),
        (b"HEA", Protocol.UNKNOWN),
        (b"GET / HTTP/1.1\r\n", Protocol.HTTP),
        (b"HEAD / HTTP/1.1\r\n", Protocol.HTTP),
        (b"FERRY 1 SEND\n", Protocol.FERRY),
        (b"F", Protocol.FERRY),
        (b"PROXY TCP4 1.2.3.4", Protocol.FERRY),
        (b"\r\n\r\n\x00\r\nQUIT\n", Protocol.FERRY),  # PROXY v2 signature
        (b"POST / HTTP/1.1\r\n", Protocol.FERRY),
        (b"GETX", Protocol.FERRY),
        (b"\x16", Protocol.TLS),
        (b"\x16\x03\x01\x02\x00\x01", Protocol.TLS),  # a ClientHello's record header
    ],
)
def test_sniff_tells_http_from_ferry_by_first_bytes(first: bytes, expected: Protocol) -> None:
    assert sniff(first) is expected


def test_parse_request_reads_line_and_headers() -> None:
    head = (
        b"GET /app.js?v=1 HTTP/1.1\r\nHost: relay:9021\r\n"
        b"Accept: a\r\naccept: b\r\nX-Empty:\r\n\r\n"
    )
    assert head_end(head + b"extra") == len(head)
    request = parse_request(head)
    assert (request.method, request.target, request.path) == ("GET", "/app.js?v=1", "/app.js")
    assert request.header("HOST") == "relay:9021"
    assert request.header("accept") == "a, b"
    assert request.header("x-empty") == ""
    assert request.header("missing") == ""


def test_head_end_waits_then_refuses_past_the_cap() -> None:
    assert head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    with pytest.raises(HttpError) as caught:
        head_end(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEAD // 6))
    assert caught.value.status == 431


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/2\r\n\r\n",
        b"GET relative HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_malformed_heads_are_400(head: bytes) -> None:
    with pytest.raises(HttpError) as caught:
        parse_request(head)
    assert caught.value.status == 400


def test_too_many_headers_are_431() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n"
    with pytest.raises(HttpError) as caught:
        parse_request(head)
    assert caught.value.status == 431


def test_response_sets_length_and_close_and_omits_body_for_head() -> None:
    full = response(200, {"Content-Type": "text/plain"}, b"hello")
    assert full == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nhello"
    )
    assert response(200, {}, b"hello", include_body=False).endswith(b"\r\n\r\n")
    assert b"404 Not Found" in error_response(HttpError(404, "no such file"))


def test_response_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="split"):
        response(200, {"X": "a\r\nSet-Cookie: b"})


@given(st.binary(max_size=600))
def test_garbage_heads_give_a_request_or_an_http_error(data: bytes) -> None:
    try:
        end = head_end(data)
        if end is not None:
            parse_request(data[:end])
    except HttpError:
        pass
