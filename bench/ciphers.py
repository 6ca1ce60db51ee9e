"""Measure the AEAD candidates for DATA records: AES-256-GCM vs ChaCha20-Poly1305.

    .venv/bin/python -m bench.ciphers

Prints MB/s of encrypt_into for several record sizes (one core, in memory).
This is the measurement behind ferry's choice of AES-256-GCM (docs/PROTOCOL.md).
"""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

VOLUME = 512 * 1024 * 1024
SIZES = (16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024)


def throughput(cipher: AESGCM | ChaCha20Poly1305, size: int) -> float:
    data = memoryview(bytearray(os.urandom(size)))
    out = bytearray(size + 16)
    rounds = VOLUME // size
    start = time.perf_counter()
    for counter in range(rounds):
        cipher.encrypt_into(counter.to_bytes(12, "big"), data, b"header", out)
    return rounds * size / (time.perf_counter() - start) / 1e6


def main() -> None:
    print(f"{'record':>8}  {'AES-256-GCM':>12}  {'ChaCha20-Poly1305':>18}   (MB/s, one core)")
    for size in SIZES:
        aes = throughput(AESGCM(os.urandom(32)), size)
        chacha = throughput(ChaCha20Poly1305(os.urandom(32)), size)
        print(f"{size // 1024:>6} K  {aes:>12.0f}  {chacha:>18.0f}")


if __name__ == "__main__":
    main()
