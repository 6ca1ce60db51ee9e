"""Every refusal reaches the client: ERROR line, half-close, linger (server._hang_up).

Closing a socket that still holds unread client bytes makes the kernel send
RST, which can destroy the ERROR line before the client reads it. A client
that pipelines its request (as ./receive does: RECV line and PAKE message
in one go) always leaves such bytes behind when it is refused.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from ferry.config import MAX_EARLY_BYTES
from ferry.protocol import rendezvous as rv
from tests.relay.harness import RawClient, close_all, running_relay

pytestmark = pytest.mark.timeout(30)

UNREAD = 64 * 1024
"""Bytes a refused client has sent that the relay never reads."""


def connect_and_send_at_once(port: int, source: str, data: bytes) -> socket.socket:
    """Connect and send before the relay's event loop can accept (this call blocks it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(data)
    sock.setblocking(False)
    return sock


async def read_reply(sock: socket.socket) -> bytes:
    """All the relay sent until it closed; a reset raises ConnectionResetError."""
    loop, data = asyncio.get_running_loop(), b""
    async with asyncio.timeout(5):
        while chunk := await loop.sock_recv(sock, 4096):
            data += chunk
    return data


@pytest.mark.parametrize("attempt", range(5))
async def test_client_refused_at_admission_with_unread_bytes_reads_the_error_line(
    attempt: int,
) -> None:
    async with running_relay(max_connections_per_address=1) as r:
        held = await RawClient.connect(r.port, "127.0.0.2")
        request = b"FERRY 1 RECV 7\n" + b"x" * UNREAD  # its PAKE flight, and then some
        refused = connect_and_send_at_once(r.port, "127.0.0.2", request)
        try:
            reply = await read_reply(refused)
        finally:
            refused.close()
        assert reply.startswith(b"ERROR " + rv.REASON_TOO_MANY_CONNECTIONS.encode()), reply
        close_all(held)


@pytest.mark.parametrize("attempt", range(5))
async def test_client_refused_after_its_request_with_unread_bytes_reads_the_error_line(
    attempt: int,
) -> None:
    async with running_relay() as r:
        # No sender holds nameplate 7. (Past MAX_EARLY_BYTES the refusal would come
        # sooner, as a bad request: test_early_bytes_and_memory.py.)
        request = b"FERRY 1 RECV 7\n" + b"x" * (MAX_EARLY_BYTES - 64)
        refused = connect_and_send_at_once(r.port, "127.0.0.1", request)
        try:
            reply = await read_reply(refused)
        finally:
            refused.close()
        assert reply.startswith(b"ERROR " + rv.REASON_UNKNOWN_NAMEPLATE.encode()), reply
