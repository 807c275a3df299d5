"""Result rows and their rendering as an aligned plain-text table and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number and how to print it."""

    value: float
    unit: str
    """``/s`` for rates, ``s`` for durations, ``ms`` for latencies, ``MB`` for memory
    (value in bytes)."""

    def render(self) -> str:
        """The number with its unit, rounded to what the noise allows."""
        if self.unit == "s":
            return f"{self.value:.3f} s"
        if self.unit == "ms":
            return f"{self.value:.2f} ms"
        if self.unit == "MB":
            return f"{self.value / MB:.1f} MB"
        return f"{self.value:,.0f}{self.unit}"


@dataclass(frozen=True, slots=True)
class Row:
    """A benchmark figure beside the baseline it is judged against."""

    key: str
    """Row number from the brief (``1``, ``4a``…), so the table and JSON line up."""
    name: str
    result: Figure
    baseline_name: str
    baseline: Figure
    target: str
    passed: bool | None
    """``None`` for a row reported for comparison only, without a target."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Result divided by baseline (0 when the baseline is zero)."""
        return self.result.value / self.baseline.value if self.baseline.value else 0.0


_HEADERS = ("#", "benchmark", "result", "baseline", "baseline result", "ratio", "target", "")
_RIGHT_ALIGNED = {2, 4, 5}


def render_table(rows: Sequence[Row]) -> str:
    """Rows as a plain-text table with aligned columns."""
    cells = [
        (
            row.key,
            row.name,
            row.result.render(),
            row.baseline_name,
            row.baseline.render(),
            f"{row.ratio:.2f}x",
            row.target,
            "" if row.passed is None else ("PASS" if row.passed else "FAIL"),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [_HEADERS, *cells]) for i in range(len(_HEADERS))]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if index in _RIGHT_ALIGNED else value.ljust(width)
            for index, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(_HEADERS), rule, *(line(values) for values in cells)])


def write_json(
    path: Path, rows: Sequence[Row], notes: Sequence[str], metadata: dict[str, Any]
) -> None:
    """Write every row (with its ratio and details), the notes and run metadata."""
    document = {
        **metadata,
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
        "notes": list(notes),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
