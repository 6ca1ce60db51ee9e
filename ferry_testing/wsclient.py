"""A browser's side of the relay's web front, by hand, for tests and benchmarks.

WsClient opens a WebSocket on the relay's /ws as a browser would (masked
frames out, the relay's unmasked frames in, read with ferry's own
FrameDecoder(masked=False)). `shim` turns it into a local TCP port: every
connection to the shim becomes one WebSocket leg to the relay, so the real
./send and ./receive (ferry's own client and protocol sessions) run over a
WebSocket byte stream, exactly the bytes a browser leg carries. The shim
cuts what it forwards into frames of random sizes (some fragmented into
continuation frames) and sends pings, since boundaries must mean nothing.

`python -m ferry_testing.wsclient RELAY_PORT [--whole-frames]` runs the shim
and prints its port on stdout (--whole-frames: one frame per read, for
benchmarks).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import socket
import sys
from dataclasses import dataclass, field

from ferry.errors import WebSocketError
from ferry.protocol import websocket as ws

TIMEOUT = 10.0


class HandshakeRefused(Exception):
    def __init__(self, status: int, head: bytes, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.head = head
        self.body = body


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answer(data: bytes) -> HttpAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpAnswer(status, headers, body)


def http_request(port: int, raw: bytes, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes, return all the relay answers until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def get(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> HttpAnswer:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return parse_answer(http_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode()))


def upgrade_request(port: int, path: str = "/ws", origin: str | None = None, **extra: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": ws.SUBPROTOCOL,
    }
    if origin is not None:
        headers["Origin"] = origin
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class WsClient:
    sock: socket.socket
    decoder: ws.FrameDecoder = field(default_factory=lambda: ws.FrameDecoder(1 << 30, masked=False))
    answer: HttpAnswer | None = None

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        origin: str | None = None,
        host: str = "127.0.0.1",
        request: bytes | None = None,
        receive_buffer: int | None = None,
    ) -> WsClient:
        """Open the socket and do the opening handshake; HandshakeRefused if not 101."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(TIMEOUT):
                await loop.sock_connect(sock, (host, port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_sendall(sock, request or upgrade_request(port, origin=origin))
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = await loop.sock_recv(sock, 65536)
                    if not chunk:
                        break
                    data += chunk
                if b"\r\n\r\n" not in data:
                    raise HandshakeRefused(0, data, b"")
                answer = parse_answer(data)
                if answer.status != 101:
                    while chunk := await loop.sock_recv(sock, 65536):
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    raise HandshakeRefused(answer.status, head, body)
        except BaseException:
            sock.close()
            raise
        client = cls(sock, answer=answer)
        client.decoder.receive_data(answer.body)
        return client

    async def send_raw(self, data: bytes) -> None:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def send(self, data: bytes | str, opcode: ws.Opcode = ws.Opcode.BINARY) -> None:
        payload = data.encode() if isinstance(data, str) else data
        await self.send_raw(ws.encode_frame(opcode, payload, mask=os.urandom(4)))

    async def send_close(self, code: ws.CloseCode = ws.CloseCode.NORMAL) -> None:
        await self.send_raw(ws.encode_close(code, mask=os.urandom(4)))

    async def event(self, timeout: float = TIMEOUT) -> ws.Event | None:
        """The next event from the relay; None once it closed the TCP connection."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while (event := self.decoder.next_event()) is None:
                try:
                    data = await loop.sock_recv(self.sock, 65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return None
                self.decoder.receive_data(data)
            return event

    async def read_until_close(self, timeout: float = TIMEOUT) -> tuple[bytes, int | None]:
        """(payload bytes, the relay's close code) until its close frame or EOF."""
        data = bytearray()
        while (event := await self.event(timeout)) is not None:
            if isinstance(event, ws.DataReceived):
                data += event.data
            elif isinstance(event, ws.CloseReceived):
                return bytes(data), event.code
        return bytes(data), None

    async def line(self, timeout: float = TIMEOUT) -> str:
        """One rendezvous line from the relay (the stream's bytes up to LF)."""
        data = bytearray()
        while not data.endswith(b"\n"):
            event = await self.event(timeout)
            if event is None or isinstance(event, ws.CloseReceived):
                raise ConnectionError(f"closed after {bytes(data)!r}")
            if isinstance(event, ws.DataReceived):
                data += event.data
        return data.decode().rstrip("\n")

    def close(self) -> None:
        self.sock.close()


# -- the shim: TCP clients over WebSocket legs ------------------------------------


async def _tcp_to_ws(
    reader: asyncio.StreamReader, leg: WsClient, rng: random.Random | None
) -> None:
    while data := await reader.read(256 * 1024):
        if rng is None:
            await leg.send(data)
            continue
        view = memoryview(data)
        while view:
            size = min(len(view), rng.choice((1, 7, 1000, 16384, 65536, 262144)))
            piece, view = bytes(view[:size]), view[size:]
            if size > 8 and rng.random() < 0.1:
                # One message in two frames: a fragment and its continuation.
                half = size // 2
                first = ws.encode_frame(ws.Opcode.BINARY, piece[:half], mask=os.urandom(4))
                first = bytes([first[0] & 0x7F]) + first[1:]  # FIN off
                rest = ws.encode_frame(ws.Opcode.CONTINUATION, piece[half:], mask=os.urandom(4))
                await leg.send_raw(first + rest)
            else:
                await leg.send(piece)
            if rng.random() < 0.01:
                await leg.send(b"ping", ws.Opcode.PING)
    await leg.send_close()


async def _ws_to_tcp(leg: WsClient, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        while (event := leg.decoder.next_event()) is not None:
            if isinstance(event, ws.DataReceived):
                writer.write(event.data)
                await writer.drain()
            elif isinstance(event, ws.PingReceived):
                await leg.send(event.payload, ws.Opcode.PONG)
            elif isinstance(event, ws.CloseReceived):
                return
        data = await loop.sock_recv(leg.sock, 256 * 1024)
        if not data:
            return
        leg.decoder.receive_data(data)


async def _serve_one(
    relay_port: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    random_frames: bool,
) -> None:
    rng = random.Random() if random_frames else None
    try:
        leg = await WsClient.connect(relay_port)
    except (OSError, HandshakeRefused, TimeoutError):
        writer.close()
        return
    up = asyncio.create_task(_tcp_to_ws(reader, leg, rng))
    try:
        await _ws_to_tcp(leg, writer)
    except (OSError, WebSocketError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
        # Let the client's last bytes (its close) go out, then hang up.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(up, 2)
        leg.close()


async def shim(relay_port: int, random_frames: bool = True) -> asyncio.Server:
    """A TCP server on 127.0.0.1:0 whose every connection is a WebSocket leg to the relay.

    random_frames: cut the bytes into frames of random sizes, some fragmented,
    with pings between (tests); False: one frame per read (benchmarks)."""
    return await asyncio.start_server(
        lambda r, w: _serve_one(relay_port, r, w, random_frames), "127.0.0.1", 0
    )


async def _main(relay_port: int, random_frames: bool) -> None:
    server = await shim(relay_port, random_frames)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(int(sys.argv[1]), "--whole-frames" not in sys.argv[2:]))
