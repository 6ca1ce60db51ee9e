"""A dumb TCP relay and its two clients: "what the network allows" for the WAN benchmark.

Theory of operation
-------------------
The same topology as ferry (sender -> relay -> receiver, both legs through
the relay), with nothing that costs time of its own: no handshake beyond
one role byte, no encryption, no framing, no socket buffer settings. No
SO_RCVBUF or SO_SNDBUF is set anywhere, so the kernel autotunes every
socket up to net.ipv4.tcp_rmem/tcp_wmem's maximum, which is the best a
single TCP connection per leg can do on the path. ferry's throughput divided
by this relay's is the share of the path ferry uses.

    relay    HOST:PORT          pairs the next 'S' connection with the next 'R' one
    send     HOST:PORT FILE     prints "ready" once connected, sends, waits for the relay
    receive  HOST:PORT OUTFILE  writes what arrives to OUTFILE

The relay pipes sender -> receiver with blocking sockets, one thread per
pair and a 1 MiB user-space buffer. When the sender's stream ends it closes
its write side towards the receiver, waits for the receiver to close (it
has written the whole file by then), and only then closes the sender's
connection, so the sender exits after the receiver has everything, as
ferry's does after the receiver's acknowledgement.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from pathlib import Path

CHUNK = 1 << 20  # user-space copy buffer; the kernel buffers stay autotuned
ROLE_TIMEOUT = 10.0
SENDER, RECEIVER = b"S", b"R"


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def relay(address: tuple[str, int]) -> None:
    """Accept forever; pair sender and receiver connections in arrival order."""
    waiting: dict[bytes, socket.socket] = {}
    with socket.create_server(address, backlog=64) as server:
        while True:
            conn, _ = server.accept()
            role = _role(conn)
            if role not in (SENDER, RECEIVER) or role in waiting:
                conn.close()  # a stray or duplicate: this relay serves one pair at a time
                continue
            waiting[role] = conn
            if len(waiting) == 2:
                pair = (waiting.pop(SENDER), waiting.pop(RECEIVER))
                threading.Thread(target=_pipe, args=pair, daemon=True).start()


def _role(conn: socket.socket) -> bytes:
    conn.settimeout(ROLE_TIMEOUT)
    try:
        role = conn.recv(1)
    except OSError:
        role = b""
    conn.settimeout(None)
    return role


def _pipe(sender: socket.socket, receiver: socket.socket) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with sender, receiver, contextlib.suppress(OSError):
        while size := sender.recv_into(buffer):
            receiver.sendall(view[:size])
        receiver.shutdown(socket.SHUT_WR)
        receiver.recv(1)  # returns b"" once the receiver has stored the file and closed


def send(address: tuple[str, int], path: Path) -> None:
    with socket.create_connection(address, timeout=30) as conn, open(path, "rb") as source:
        conn.settimeout(None)
        conn.sendall(SENDER)
        print("ready", flush=True)  # the driver starts the receiver now, as after ferry's code
        conn.sendfile(source)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # b"" once the relay has seen the receiver finish


def receive(address: tuple[str, int], path: Path) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with socket.create_connection(address, timeout=30) as conn, open(path, "wb") as out:
        conn.settimeout(None)
        conn.sendall(RECEIVER)
        while size := conn.recv_into(buffer):
            out.write(view[:size])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("relay", "send", "receive"))
    parser.add_argument("address", help="HOST:PORT (IPv4)")
    parser.add_argument("path", nargs="?", type=Path, help="file to send / file to write")
    args = parser.parse_args(argv)
    address = _address(args.address)
    if args.mode == "relay":
        relay(address)
    elif args.path is None:
        parser.error(f"{args.mode} needs a file path")
    elif args.mode == "send":
        send(address, args.path)
    else:
        receive(address, args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
