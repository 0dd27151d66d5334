"""Geometry for the small inline SVG charts of the pages (no JavaScript, nothing downloaded).

Each function returns plain numbers the templates place into <rect>/<polyline> elements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    title: str


def column_bars(
    counts: list[int], labels: list[str], width: int = 160, height: int = 36
) -> list[Bar]:
    """Vertical bars side by side (a histogram or top values), scaled to the tallest."""
    if not counts:
        return []
    top = max(max(counts), 1)
    step = width / len(counts)
    return [
        Bar(
            x=round(i * step + 0.5, 2),
            y=round(height - height * c / top, 2),
            w=round(max(step - 1, 1), 2),
            h=round(height * c / top, 2),
            title=f"{label}: {c}",
        )
        for i, (c, label) in enumerate(zip(counts, labels, strict=True))
    ]


def column_chart(column: dict[str, Any]) -> list[Bar]:
    """The profile chart of one schema column: a histogram for numbers, top values otherwise."""
    stats = column.get("stats") or {}
    hist = stats.get("histogram")
    if hist:
        edges = hist["edges"]
        labels = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(hist["counts"]))]
        return column_bars(hist["counts"], labels)
    top = stats.get("top")
    if top:
        return column_bars([t["count"] for t in top], [t["value"] for t in top])
    return []


@dataclass(frozen=True)
class GroupBar:
    group: str
    n: int
    value: float | None
    width: float  # percent of the scale
    low: float | None  # interval ends, percent of the scale
    high: float | None
    insufficient: bool

    @property
    def span(self) -> float:
        return round((self.high or 0) - (self.low or 0), 2)


def group_bars(groups: list[dict[str, Any]], attribute: str, metric: str) -> list[GroupBar]:
    """One bar per group of an attribute for a rate metric (0–1), with its interval."""
    bars = []
    for g in groups:
        if g["attribute"] != attribute:
            continue
        entry = g["metrics"].get(metric) or {}
        value = entry.get("value")
        interval = entry.get("interval")
        bars.append(
            GroupBar(
                group=str(g["group"]),
                n=g["n"],
                value=value,
                width=round(100 * value, 2) if value is not None else 0.0,
                low=round(100 * interval[0], 2) if interval else None,
                high=round(100 * interval[1], 2) if interval else None,
                insufficient=bool(g.get("insufficient")),
            )
        )
    return bars


def calibration_points(curve: dict[str, list[float]] | None, size: int = 160) -> str:
    """SVG polyline points of a calibration curve in a size × size box (y grows downwards)."""
    if not curve:
        return ""
    pairs = zip(curve.get("mean_predicted", []), curve.get("fraction_positive", []), strict=False)
    return " ".join(f"{x * size:.1f},{size - y * size:.1f}" for x, y in pairs)
