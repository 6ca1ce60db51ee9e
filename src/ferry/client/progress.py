"""Progress reporting: a tqdm bar on a terminal, nothing otherwise.

The bar speaks binary units throughout (ferry/units.py): "4.8 MiB/9.5 MiB
[00:02<00:02, 2.3 MiB/s]". Bytes a resumed transfer already had (skip())
move the bar without counting towards its rate: the rate is only what
crossed the network in this run.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Protocol

from ferry import units


class Progress(Protocol):
    def start(self, total: int, label: str) -> None: ...
    def skip(self, kept: int) -> None: ...
    def update(self, done: int) -> None: ...
    def files(self, done: int, total: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int, label: str) -> None:
        pass

    def skip(self, kept: int) -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def files(self, done: int, total: int) -> None:
        pass

    def close(self) -> None:
        pass


KNOWN_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {done}/{size} [{elapsed}<{remaining}, {speed}{postfix}]"
)
UNKNOWN_FORMAT = "{desc}: {done} [{elapsed}, {speed}{postfix}]"
"""The bar when the total is not known (a stream: its size is known at its end)."""


class BarProgress:
    """tqdm on stderr, imported only when a bar is shown."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self._bar: Any = None
        self._file = file

    def start(self, total: int, label: str) -> None:
        self._bar = _bar_class()(
            total=total or None, desc=label, unit="B", file=self._file or sys.stderr,
            leave=True, dynamic_ncols=True,
            bar_format=KNOWN_FORMAT if total else UNKNOWN_FORMAT,
        )  # fmt: skip

    def skip(self, kept: int) -> None:
        """Bytes already there (kept from an earlier try): shown, not counted in the rate."""
        bar = self._bar
        if bar is not None and kept:
            # tqdm's smoothed rate counts n - last_print_n, its average n - initial.
            bar.n += kept
            bar.last_print_n += kept
            bar.initial += kept
            bar.refresh()

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def files(self, done: int, total: int) -> None:
        """A tree: how many of its files are complete (shown beside the bytes)."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{done}/{total} files", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _bar_class() -> type[Any]:
    """tqdm with our fields for bar_format: done, size and speed in binary units."""
    from tqdm import tqdm

    class Bar(tqdm):  # type: ignore[misc]
        @property
        def format_dict(self) -> dict[str, Any]:
            fields: dict[str, Any] = super().format_dict
            moved, elapsed = fields["n"] - fields["initial"], fields["elapsed"]
            speed = fields["rate"] or (moved / elapsed if elapsed else None)
            total = fields["total"]
            fields.update(
                done=units.size(fields["n"]), size=units.size(total) if total else "?",
                speed=units.rate(speed),
            )  # fmt: skip
            return fields

    return Bar


def for_stderr() -> Progress:
    return BarProgress() if sys.stderr.isatty() else NoProgress()


def percent(done: int, total: int) -> str:
    """How far along, for messages such as "connection lost after 42%"."""
    return f"{100 * done // total}%" if total else "0%"


def how_far(done: int, total: int) -> str:
    """How far along, for a message: "42%", or "4.8 MiB" when the total is not known."""
    return percent(done, total) if total > 0 else units.size(done)


def tree_label(files: int, dirs: int) -> str:
    """A tree's bar label, the same words on both sides: "51 files, 3 dirs"."""
    return f"{units.counted(files, 'file')}, {units.counted(dirs, 'dir')}"
