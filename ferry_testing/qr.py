"""Reading QR codes back, for tests: from a terminal's half blocks or a screenshot.

zxing-cpp (a dev dependency) decodes; it is told not to try the inverted
image, so a code drawn light-on-dark where it should be dark-on-light fails
to read, as it would with many phone scanners.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from ferry.cli.qr import DARK_ON_LIGHT, RESET

_MODULES = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}


def half_block_matrix(screen: str) -> list[list[bool]]:
    """The modules of the QR code drawn on a terminal screen (cli/qr.py's lines).

    Every line drawn black on bright white is a row of cells; each cell is two
    modules, one above the other. Raises AssertionError for any other character.
    """
    rows: list[list[bool]] = []
    for line in screen.split("\n"):
        if DARK_ON_LIGHT not in line:
            continue
        cells = line.split(DARK_ON_LIGHT, 1)[1].split(RESET, 1)[0]
        assert set(cells) <= set(_MODULES), f"not a half-block line: {cells!r}"
        rows.append([_MODULES[cell][0] for cell in cells])
        rows.append([_MODULES[cell][1] for cell in cells])
    return rows


def decode_matrix(matrix: Sequence[Sequence[bool]], scale: int = 4) -> list[str]:
    """The texts of the QR codes in a module matrix (True: dark), drawn `scale` pixels a
    module on white with a 4-module margin of its own."""
    margin = 4
    width = (len(matrix[0]) + 2 * margin) * scale
    height = (len(matrix) + 2 * margin) * scale
    pixels = bytearray(b"\xff" * (width * height))
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if not dark:
                continue
            for dy in range(scale):
                start = ((y + margin) * scale + dy) * width + (x + margin) * scale
                pixels[start : start + scale] = b"\x00" * scale
    return decode_gray(bytes(pixels), width, height)


def decode_gray(pixels: bytes, width: int, height: int) -> list[str]:
    """The texts of the QR codes in a grayscale image, one byte a pixel, row by row."""
    import zxingcpp

    image = memoryview(pixels).cast("B", [height, width])
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(image, formats=qr_only, try_invert=False)
    return [code.text for code in found]


def decode_png(png: bytes) -> list[str]:
    """The texts of the QR codes in a PNG image (a browser's screenshot)."""
    return decode_gray(*png_gray(png))


def png_gray(png: bytes) -> tuple[bytes, int, int]:
    """A PNG's pixels in gray, one byte each, and its width and height.

    Enough of PNG for a browser's screenshots: 8 bits per channel, gray, RGB,
    gray with alpha or RGBA, not interlaced (the alpha is ignored).
    """
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, compressed = 8, bytearray()
    width = height = channels = 0
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, (depth, interlace)
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            compressed += body
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    previous = bytearray(stride)
    gray = bytearray()
    for y in range(height):
        start = y * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, previous, channels)
        for x in range(0, stride, channels):
            gray.append(sum(line[x : x + min(channels, 3)]) // min(channels, 3))
        previous = line
    return bytes(gray), width, height


def _unfilter(kind: int, line: bytearray, previous: bytearray, step: int) -> None:
    """Undo a PNG scanline filter in place (RFC 2083, 6)."""
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        up = previous[i]
        corner = previous[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            estimate = left + up - corner
            near = min((abs(estimate - left), 0, left), (abs(estimate - up), 1, up),
                       (abs(estimate - corner), 2, corner))  # fmt: skip
            line[i] = (line[i] + near[2]) & 0xFF
        else:
            assert kind == 0, f"unknown PNG filter {kind}"
