"""Transfer codes: a public nameplate number followed by secret words.

Theory of operation: a code reads ``7-guitar-orbit-velvet``. The number (the
*nameplate*, 1 to 999999) is not secret: it only tells the relay which two
clients belong together. The words are the secret, drawn uniformly with
``secrets.choice`` from the 512 words in ``wordlist.txt``, so each word carries
9 bits and the default of 3 words gives 27 bits (1 in 134,217,728). Both sides
use the canonical text of the whole code as the PAKE password, and the PAKE
allows one online guess per attempt, so a short code is enough.

The list is built so that typing mistakes are caught rather than mistaken for
another word: no two words are within one edit of each other and no word is a
prefix of another. Parsing is forgiving about case, surrounding white space and
separators (hyphens or spaces, repeated) and strict about everything else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ferry.errors import InvalidCode

DEFAULT_WORD_COUNT = 3
MIN_WORD_COUNT = 3
"""Fewer words than any ferry sender makes can only be a typo: refused locally, so
it never costs the sender one of its attempts."""
MAX_WORD_COUNT = 8
MAX_NAMEPLATE = 999_999

_EXAMPLE = "7-guitar-orbit-velvet"
_SEPARATORS = re.compile(r"[ -]+")
_SHOWN_WORD_MAX = 12  # longer junk is cut short in error messages


@cache
def words() -> tuple[str, ...]:
    """The word list, read once from ``wordlist.txt`` next to this module."""
    text = Path(__file__).with_name("wordlist.txt").read_text(encoding="ascii")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@cache
def _word_set() -> frozenset[str]:
    return frozenset(words())


@dataclass(frozen=True, repr=False)
class Code:
    """A parsed or generated code; ``text`` is its canonical form."""

    nameplate: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def password(self) -> bytes:
        return self.text.encode("ascii")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        # The words are the secret: never let them reach a log through repr().
        return f"Code(nameplate={self.nameplate}, words=<{len(self.words)} hidden>)"


def generate_code(
    nameplate: int,
    word_count: int = DEFAULT_WORD_COUNT,
    choice: Callable[[Sequence[str]], str] = secrets.choice,
) -> Code:
    """A fresh code for ``nameplate`` with ``word_count`` words picked by ``choice``."""
    if not 1 <= nameplate <= MAX_NAMEPLATE:
        raise ValueError(f"nameplate must be 1..{MAX_NAMEPLATE}, got {nameplate}")
    if not MIN_WORD_COUNT <= word_count <= MAX_WORD_COUNT:
        raise ValueError(f"word_count must be {MIN_WORD_COUNT}..{MAX_WORD_COUNT}, got {word_count}")
    wordlist = words()
    return Code(nameplate, tuple(choice(wordlist) for _ in range(word_count)))


def _invalid(reason: str) -> InvalidCode:
    return InvalidCode(f"invalid code: {reason}")


def parse_code(text: str) -> Code:
    """Parse what a person typed; raise InvalidCode with a one-line reason."""
    if not text.isascii():
        raise _invalid("it contains a character that is not plain ASCII")
    text = text.strip()
    if not text:
        raise _invalid(f"it is empty (expected something like {_EXAMPLE})")
    if not text.isprintable():
        raise _invalid("it contains a control character")
    number, *parts = _SEPARATORS.split(text.lower())
    if parts and not parts[-1]:
        parts.pop()  # a trailing separator is harmless
    if not number.isdecimal():
        raise _invalid(f"it must start with a number, like {_EXAMPLE}")
    digits = number.lstrip("0")  # leading zeros are allowed and dropped
    # Compare lengths first: int() of a very long digit string is slow or refused.
    if len(digits) > len(str(MAX_NAMEPLATE)) or not 1 <= int(digits or "0") <= MAX_NAMEPLATE:
        raise _invalid(f"the number must be between 1 and {MAX_NAMEPLATE}")
    if len(parts) < MIN_WORD_COUNT:
        raise _invalid(f"expected at least {MIN_WORD_COUNT} words after the number")
    if len(parts) > MAX_WORD_COUNT:
        raise _invalid(f"expected at most {MAX_WORD_COUNT} words after the number")
    known = _word_set()
    for word in parts:
        if word not in known:
            shown = word if len(word) <= _SHOWN_WORD_MAX else word[:_SHOWN_WORD_MAX] + "..."
            raise _invalid(f"'{shown}' is not a ferry word (check the spelling)")
    return Code(int(digits), tuple(parts))
