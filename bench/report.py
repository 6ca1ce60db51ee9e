"""Figures (samples + target) and the table they print as."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def size_label(size: int) -> str:
    return f"{size // GIB} GiB" if size >= GIB and size % GIB == 0 else f"{size // MIB} MiB"


@dataclass(frozen=True)
class Target:
    op: str
    """">=" (higher is better) or "<=" (lower is better)."""
    value: float

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {number(self.value)}"


@dataclass
class Figure:
    name: str
    unit: str
    target: Target | None = None
    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    failures: list[str] = field(default_factory=list)
    """Why runs failed (they count in no sample)."""

    def add(self, value: float) -> None:
        self.samples.append(value)

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def verdict(self) -> str:
        """ "yes"/"NO" for the median against the target; "-" without either."""
        if self.target is None or self.median is None:
            return "-"
        return "yes" if self.target.met(self.median) else "NO"

    def _failed(self) -> list[str]:
        if not self.failures:
            return []
        return [f"{len(self.failures)} run(s) FAILED, last: {self.failures[-1][:70]}"]

    def cells(self) -> list[str]:
        if self.median is None:
            notes = "; ".join(([self.skipped] if self.skipped else []) + self._failed())
            return [self.name, "-", "-", "0", self.unit, _target(self), "-", notes]
        spread = f"{number(min(self.samples))}–{number(max(self.samples))}"
        notes = "; ".join(([self.skipped] if self.skipped else []) + self._failed() + self.notes)
        return [
            self.name, number(self.median), spread, str(len(self.samples)), self.unit,
            _target(self), self.verdict(), notes,
        ]  # fmt: skip


def _target(figure: Figure) -> str:
    return str(figure.target) if figure.target else ""


def number(value: float) -> str:
    """Three significant figures or so, no exponent."""
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


HEADER = ["figure", "median", "min–max", "n", "unit", "target", "met", "notes"]


def table(figures: list[Figure]) -> str:
    rows = [HEADER] + [figure.cells() for figure in figures]
    widths = [max(len(row[col]) for row in rows) for col in range(len(HEADER) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  -----")
    return "\n".join(lines)


# -- the machine -----------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(root: Path = ROOT) -> str:
    """HEAD's commit, read from .git directly (no git command)."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as load:
            return " ".join(load.read().split()[:3])
    except OSError:
        return "?"


@dataclass
class Machine:
    nproc: int
    cpu: str
    date: str
    commit: str
    python: str
    load_start: str
    load_end: str = ""

    def lines(self) -> list[str]:
        return [
            f"machine: {self.nproc} CPUs, {self.cpu}; Python {self.python}",
            f"date:    {self.date}   ferry commit: {self.commit} (plus any uncommitted edits)",
            f"load average (1/5/15 min) at start: {self.load_start}; at end: {self.load_end}",
        ]


def machine() -> Machine:
    return Machine(
        nproc=len(os.sched_getaffinity(0)),
        cpu=cpu_model(),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=git_commit(),
        python=platform.python_version(),
        load_start=load_average(),
    )


def as_json(figures: list[Figure], host: Machine) -> dict[str, object]:
    return {
        "machine": asdict(host),
        "figures": [
            {**asdict(figure), "median": figure.median, "verdict": figure.verdict()}
            for figure in figures
        ],
    }


def unpack_ref(ref: str, into: Path, *paths: str) -> Path:
    """The files of commit `ref` (only `paths`, if any: e.g. "src", "relay"), unpacked
    with `git archive` under `into`: the "old" side of a benchmark's old/new rows."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, *paths], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into
