"""Unit tests for ferry.cli.qr (the QR code ./send --qr draws) and for
ferry_testing.qr, which reads such codes back in the end-to-end tests."""

from __future__ import annotations

import struct
import zlib

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.cli.qr import DARK_ON_LIGHT, QUIET_ZONE, RESET, half_block_lines, qr_lines, qr_matrix
from ferry.cli.send import browser_hints
from ferry.codes import parse_code
from ferry_testing.qr import decode_matrix, decode_png, half_block_matrix

LINK = "https://relay.example:9021/#7-guitar-orbit-velvet"


def test_half_block_lines_pair_rows_and_pad_an_odd_last_row_with_light() -> None:
    dark, light = True, False
    matrix = [[dark, light, dark, light], [dark, dark, light, light], [light, dark, dark, light]]
    assert half_block_lines(matrix) == [
        f"{DARK_ON_LIGHT}█▄▀ {RESET}",
        f"{DARK_ON_LIGHT} ▀▀ {RESET}",
    ]


def test_qr_lines_read_back_as_the_link_and_as_the_encoders_own_matrix() -> None:
    screen = "\n".join(qr_lines(LINK))
    matrix = half_block_matrix(screen)
    assert decode_matrix(matrix) == [LINK]
    code = segno.make(LINK, micro=False, error="L", boost_error=True)
    expected = [[bool(m) for m in row] for row in code.matrix_iter(border=QUIET_ZONE)]
    assert matrix[: len(expected)] == expected
    assert matrix[len(expected) :] == [[False] * len(expected[0])]  # the odd row's padding


def test_qr_lines_draw_black_on_bright_white_whatever_the_terminal_and_reset_each_line() -> None:
    for line in qr_lines(LINK):
        assert line.startswith("\x1b[30;107m") and line.endswith("\x1b[0m"), repr(line)
        assert line.count("\x1b") == 2


def test_qr_matrix_has_a_light_quiet_zone_of_four_modules_on_every_side() -> None:
    matrix = qr_matrix(LINK)
    size = len(matrix)
    assert all(len(row) == size for row in matrix)
    for i in range(QUIET_ZONE):
        assert not any(matrix[i]) and not any(matrix[size - 1 - i])
        assert not any(row[i] or row[size - 1 - i] for row in matrix)
    assert matrix[QUIET_ZONE][QUIET_ZONE]  # the finder pattern starts right after it


def test_an_inverted_code_does_not_read_back() -> None:
    # ferry_testing.qr must fail a code drawn light on dark, as many phones would.
    matrix = qr_matrix(LINK)
    assert decode_matrix([[not m for m in row] for row in matrix]) == []


@settings(max_examples=20, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./:#?=", min_size=1, max_size=140))
def test_qr_lines_of_any_link_read_back_as_that_link(text: str) -> None:
    assert decode_matrix(half_block_matrix("\n".join(qr_lines(text)))) == [text]


def _png(gray_rows: list[bytes], filter_kind: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    width, height = len(gray_rows[0]), len(gray_rows)
    raw = bytearray()
    previous = bytes(width * 3)
    for row in gray_rows:
        rgb = bytes(value for pixel in row for value in (pixel, pixel, pixel))
        if filter_kind == 2:  # "up": each byte minus the one above
            filtered = bytes((a - b) & 0xFF for a, b in zip(rgb, previous, strict=True))
        else:
            filtered = rgb
        raw += bytes([filter_kind]) + filtered
        previous = rgb
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.mark.parametrize("filter_kind", [0, 2], ids=["none", "up"])
def test_decode_png_reads_a_code_from_an_rgb_png(filter_kind: int) -> None:
    scale = 3
    rows = []
    for row in qr_matrix(LINK):
        line = bytes(0 if dark else 255 for dark in row for _ in range(scale))
        rows.extend([line] * scale)
    assert decode_png(_png(rows, filter_kind)) == [LINK]


def test_browser_hints_give_the_link_and_its_code_or_say_why_there_is_none() -> None:
    code = parse_code("7-guitar-orbit-velvet")
    url = "https://relay.example:9021/"
    assert browser_hints(url, code, qr=False, columns=120) == [
        f"send: or open this link in a browser: {LINK}"
    ]
    first, *drawn = browser_hints(url, code, qr=True, columns=120)
    assert first == f"send: or open this link in a browser: {LINK}"
    assert decode_matrix(half_block_matrix("\n".join(drawn))) == [LINK]
    assert browser_hints("", code, qr=False, columns=120) == []
    (why,) = browser_hints("", code, qr=True, columns=120)
    assert why.startswith("send: no QR code: ") and "--web-url" in why
    _, narrow = browser_hints(url, code, qr=True, columns=30)
    assert narrow == "send: no QR code: the terminal is 30 columns wide, the code needs 37"
