"""A QR code on a terminal: `./send --qr` draws the browser link with it.

Theory of operation. segno (a maintained, pure-Python QR encoder) makes the
module matrix; this module only draws it. Each character cell shows two
modules, one above the other, with Unicode half blocks:

    " "  both light      "▀"  upper dark      "▄"  lower dark      "█"  both dark

The whole code, its quiet zone included, is drawn in black on bright white
(SGR 30;107) whatever the terminal's own colours, so it reads the same on a
dark theme as on a light one: a code drawn in the default colours comes out
inverted on a dark terminal, which many phone scanners do not read. Each
line resets the colours at its end, so nothing bleeds past the code. The
quiet zone is QUIET_ZONE modules on every side, as ISO/IEC 18004 asks (the
bottom one half a module more: the half block rows pair modules up).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Final

from ferry import platform

QUIET_ZONE: Final = 4
"""Light modules around the code, on each side."""
DARK_ON_LIGHT: Final = "\x1b[30;107m"
RESET: Final = "\x1b[0m"
_CELLS: Final = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_matrix(text: str) -> list[list[bool]]:
    """The modules of a QR code of ``text`` (True: dark), quiet zone included.

    Error correction L, raised by segno as far as the size allows: a code on a
    screen is not scuffed, and a smaller one fits more terminals.
    """
    import segno  # only for --qr: off the path to the code line

    code = segno.make(text, micro=False, error="L", boost_error=True)
    return [[bool(module) for module in row] for row in code.matrix_iter(border=QUIET_ZONE)]


def half_block_lines(matrix: Sequence[Sequence[bool]]) -> list[str]:
    """The matrix drawn two module rows per line (module docstring)."""
    width = len(matrix[0]) if matrix else 0
    light = [False] * width
    lines = []
    for top in range(0, len(matrix), 2):
        upper = matrix[top]
        lower = matrix[top + 1] if top + 1 < len(matrix) else light
        cells = "".join(_CELLS[pair] for pair in zip(upper, lower, strict=True))
        lines.append(f"{DARK_ON_LIGHT}{cells}{RESET}")
    return lines


def qr_lines(text: str) -> list[str]:
    """A QR code of ``text`` as lines for a terminal, each as wide as the code."""
    return half_block_lines(qr_matrix(text))


def qr_width(lines: Sequence[str]) -> int:
    """Columns the lines of qr_lines take."""
    return max((len(line) - len(DARK_ON_LIGHT) - len(RESET) for line in lines), default=0)


def enable_terminal_colors() -> None:
    """Let the console interpret ANSI colour sequences (the code is drawn in colour).

    Terminals on Linux and macOS, and Windows Terminal, always do; the classic
    Windows console only once asked, which colorama does (a dependency of tqdm
    there, so in the runtime lock for Windows). Without it, nothing is done.
    """
    if not platform.WINDOWS:
        return
    try:
        colorama = importlib.import_module("colorama")
    except ImportError:
        return
    fix = getattr(colorama, "just_fix_windows_console", None)  # colorama 0.4.6+
    if fix is not None:
        fix()
