"""Every FERRY_* environment variable, parsed and checked in this one place.

A variable stands for a flag, so it is checked like the flag and a bad
value is the same kind of one-line usage error ("FERRY_WAIT: must be a
positive number of seconds, not 'xyz'"). Standard library only: the relay
reads its FERRY_RELAY_<SETTING> variables through here too.

    client      FERRY_WAIT, FERRY_ATTEMPTS, FERRY_WRONG_CODES, FERRY_RECORD_SIZE,
                FERRY_CODE, FERRY_DEBUG
    relay       FERRY_RELAY_<SETTING> for every RelayConfig field, and
                FERRY_RELAY_LOG_FORMAT, FERRY_RELAY_METRICS, FERRY_RELAY_READY_FILE
    shims       FERRY_PYTHON, FERRY_SETUP_TIMEOUT (read by the shell shims and
                scripts/bootstrap.py, before any of this code can be imported)
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from ferry.errors import UsageError

T = TypeVar("T")

RELAY_PREFIX = "FERRY_RELAY_"
MIN_RECORD_SIZE = 4096
"""Smallest DATA record size FERRY_RECORD_SIZE may ask for, in bytes."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# -- value parsers: argparse types and environment parsers alike --------------------------


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def count(text: str) -> int:
    """A whole number, at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1, not {text!r}")
    return int(text)


def whole(text: str) -> int:
    """A whole number, 0 or more."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}")
    return int(text)


def number(text: str) -> float:
    """A finite number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number, 0 or more, not {text!r}")
    return value


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"must be one of {'/'.join(_TRUE + _FALSE)}, not {text!r}")


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected {' or '.join(choices)}, not {text!r}")
        return text

    return parse


def record_size(text: str) -> int:
    from ferry.protocol.records import MAX_DATA_PAYLOAD

    if not text.isdigit() or not MIN_RECORD_SIZE <= int(text) <= MAX_DATA_PAYLOAD:
        raise argparse.ArgumentTypeError(
            f"must be a number of bytes from {MIN_RECORD_SIZE} to {MAX_DATA_PAYLOAD}"
        )
    return int(text)


def words(text: str) -> tuple[str, ...]:
    """A list of items separated by commas or spaces."""
    return tuple(item for item in text.replace(",", " ").split() if item)


def for_type(default: object) -> Callable[[str], object]:
    """The parser for a setting with this default's type."""
    if isinstance(default, tuple):
        return words
    if isinstance(default, bool):
        return boolean
    if isinstance(default, int):
        return whole
    if isinstance(default, float):
        return number
    return str


# -- reading -----------------------------------------------------------------------------


def read(
    name: str,
    parse: Callable[[str], T],
    default: T,
    environ: Mapping[str, str] | None = None,
) -> T:
    """The variable's value, checked; `default` when unset or empty."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def text(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A free-form variable (a code, a path), None when unset or empty."""
    raw = (os.environ if environ is None else environ).get(name)
    return raw or None


def relay_setting(name: str, default: T, environ: Mapping[str, str] | None = None) -> T:
    """FERRY_RELAY_<NAME> for a relay setting, checked against the default's type."""
    parse = for_type(default)
    return read(RELAY_PREFIX + name.upper(), parse, default, environ)  # type: ignore[arg-type]


def debug(environ: Mapping[str, str] | None = None) -> bool:
    """FERRY_DEBUG: tracebacks for internal errors (a yes/no word; check_shared() has
    refused any other value before this is asked, so here it only means "no")."""
    value = text("FERRY_DEBUG", environ)
    return value is not None and value.strip().lower() in _TRUE


def check_shared(environ: Mapping[str, str] | None = None) -> None:
    """The variables every program reads, checked at its start like its flags.

    FERRY_SETUP_TIMEOUT matters only on a first run (scripts/bootstrap.py
    reads it before ferry can be imported); a bad value is refused here
    too, so that it is not accepted silently on every later run.
    """
    read("FERRY_DEBUG", boolean, False, environ)
    read("FERRY_SETUP_TIMEOUT", seconds, 0.0, environ)
