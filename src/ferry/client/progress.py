"""Progress reporting: a tqdm bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, label: str) -> None: ...
    def update(self, done: int) -> None: ...
    def files(self, done: int, total: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int, label: str) -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def files(self, done: int, total: int) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """tqdm on stderr, imported only when a bar is shown."""

    def __init__(self) -> None:
        self._bar: object | None = None

    def start(self, total: int, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
            file=sys.stderr, leave=True, dynamic_ncols=True,
        )  # fmt: skip

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)  # type: ignore[attr-defined]

    def files(self, done: int, total: int) -> None:
        """A tree: how many of its files are complete (shown beside the bytes)."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{done}/{total} files", refresh=False)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()  # type: ignore[attr-defined]
            self._bar = None


def for_stderr() -> Progress:
    return BarProgress() if sys.stderr.isatty() else NoProgress()


def percent(done: int, total: int) -> str:
    """How far along, for messages such as "the sender went away after 42%"."""
    return f"{100 * done // total}%" if total else "0%"
