"""Sizes and rates as people read them: one unit system, binary (KiB, MiB, GiB).

Every size a user sees (the "what is coming" line, the progress bar, the
resume and space messages) goes through here, so the bar never shows "4.77M"
beside "1.19GB/s". Pure functions, standard library only.
"""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def size(n: float) -> str:
    """A byte count: "512 B", "4.8 MiB", "1.0 GiB" (one decimal from a KiB up)."""
    if n < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if value < 1023.95 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def rate(bytes_per_second: float | None) -> str:
    """A transfer rate: "1.2 GiB/s"; "? B/s" while it is not known yet."""
    if not bytes_per_second or bytes_per_second < 0:
        return "? B/s"
    return f"{size(bytes_per_second)}/s"


def offered_size(n: int) -> str:
    """An offer's size, where a negative one (a stream's) means not known until its end."""
    return "unknown size" if n < 0 else size(n)


def counted(n: int, noun: str) -> str:
    """ "1 file", "51 files", "0 dirs": the same words on both sides of a transfer."""
    return f"{n} {noun}{'s' * (n != 1)}"
