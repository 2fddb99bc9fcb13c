"""The bench's one table: each figure with its median and min–max, and each target with its measured ratio and
PASS or MISS."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Row:
    figure: str
    samples: list[float] = field(default_factory=list)
    unit: str = ""
    target: str = ""  # e.g. "≤ 1.05 × CLI + 0.3 s"
    measured: str = ""  # the value the target is held to, e.g. "0.98"
    passed: bool | None = None  # None: no target on this row, or not measured
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "n/a" if self.target and self.target != "report" else ""
        return "PASS" if self.passed else "MISS"


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| figure | median | min–max | unit | target | measured | verdict |",
        "| --- | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for row in rows:
        if row.samples:
            median, spread = _number(row.median), f"{_number(min(row.samples))}–{_number(max(row.samples))}"
            if len(row.samples) == 1:
                spread = "(1 run)"
        else:
            median, spread = "—", row.note or "not measured"
        lines.append(f"| {row.figure} | {median} | {spread} | {row.unit} | {row.target} | {row.measured} "
                     f"| {row.verdict} |")
    return "\n".join(lines)


def missed(rows: list[Row]) -> list[str]:
    return [row.figure for row in rows if row.passed is False]
