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
                insufficient=bool(g.get("insufficient")) or entry.get("judged") is False,
            )
        )
    return bars


def calibration_points(curve: dict[str, list[float]] | None, size: int = 160) -> str:
    """SVG polyline points of a calibration curve in a size × size box (y grows downwards)."""
    if not curve:
        return ""
    pairs = zip(curve.get("mean_predicted", []), curve.get("fraction_positive", []), strict=False)
    return " ".join(f"{x * size:.1f},{size - y * size:.1f}" for x, y in pairs)


# --- lines over time (drift per feature), with calendar periods shaded -------------------------
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 4", "10 4")


@dataclass(frozen=True)
class Line:
    name: str
    points: str  # "x,y x,y ..." for <polyline>
    dash: str  # stroke-dasharray: colour is never the only difference
    last_x: float
    last_y: float
    last: float


@dataclass(frozen=True)
class Band:
    x: float
    w: float
    label: str
    kind: str


@dataclass(frozen=True)
class Marker:
    x: float
    label: str


@dataclass(frozen=True)
class TimeChart:
    width: int
    height: int
    lines: list[Line]
    bands: list[Band]
    markers: list[Marker]
    threshold_y: float | None
    y_max: float
    start: str
    end: str


def time_chart(
    series: dict[str, list[tuple[Any, float]]],
    *,
    periods: list[tuple[str, str, Any, Any]] = (),
    markers: list[tuple[Any, str]] = (),
    threshold: float | None = None,
    width: int = 640,
    height: int = 180,
) -> TimeChart | None:
    """Lines of (date or datetime, value) per series on one time axis; `periods` (kind, name,
    start, end) are shaded, `markers` (time, label) drawn as ticks (alerts), `threshold` as a
    dashed rule. Only the lines above half the threshold are labelled on the chart; the
    template lists every line with its latest value beside it."""
    import datetime as dt

    def ts(value: Any) -> float:
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return dt.datetime.combine(value, dt.time.min, tzinfo=dt.UTC).timestamp()

    stamps = [ts(d) for values in series.values() for d, _ in values]
    if not stamps:
        return None
    first, last = min(stamps), max(stamps)
    if last - first < 86400:
        first = last - 7 * 86400
    span = last - first
    top = max([v for values in series.values() for _, v in values] + [threshold or 0]) * 1.15
    top = top or 1.0

    def x(d: Any) -> float:
        return round(min(max((ts(d) - first) / span, 0.0), 1.0) * (width - 110), 1)

    def y(v: float) -> float:
        return round(height - v / top * (height - 10), 1)

    lines = []
    for i, (name, values) in enumerate(sorted(series.items())):
        values = sorted(values, key=lambda p: ts(p[0]))
        pts = " ".join(f"{x(d)},{y(v)}" for d, v in values)
        lx, ly = x(values[-1][0]), y(values[-1][1])
        lines.append(Line(name, pts, DASHES[i % len(DASHES)], lx, ly, values[-1][1]))
    bands = []
    for kind, name, start, end in periods:
        if ts(end) >= first and ts(start) <= last:
            bands.append(Band(x(start), max(x(end) - x(start), 2.0), name, kind))
    marks = [Marker(x(d), label) for d, label in markers if first <= ts(d) <= last]
    when = dt.datetime.fromtimestamp
    return TimeChart(
        width,
        height,
        lines,
        bands,
        marks,
        y(threshold) if threshold else None,
        round(top, 3),
        when(first, dt.UTC).date().isoformat(),
        when(last, dt.UTC).date().isoformat(),
    )


# --- a count per day with both axes: "predictions per day" ------------------------------------
@dataclass(frozen=True)
class Tick:
    at: float  # x for date ticks, y for count ticks
    label: str


@dataclass(frozen=True)
class DayChart:
    width: int
    height: int
    left: int  # the plot area: x from left to width, y from 0 to bottom
    bottom: int
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    total: int
    busiest: int


def day_columns(
    days: list[Any], counts: list[int], *, width: int = 480, height: int = 150, every: int = 7
) -> DayChart:
    """One bar per day on a dated x axis (a tick every `every` days and on the last day) and a
    count axis from 0 to a round top (0, half, top), for `<svg>` of width × height."""
    if len(days) != len(counts):
        raise ValueError(f"{len(days)} days but {len(counts)} counts: give one count per day.")
    left, bottom = 36, height - 22  # room for the count labels and the date labels
    busiest = max(counts, default=0)
    top = _round_top(busiest)
    plot_w, plot_h = width - left, bottom - 4
    step = plot_w / max(len(days), 1)
    bars = [
        Bar(
            x=round(left + i * step + 0.5, 2),
            y=round(bottom - plot_h * c / top, 2),
            w=round(max(step - 1, 1), 2),
            h=round(plot_h * c / top, 2),
            title=f"{_day(d)}: {c} prediction{'s' if c != 1 else ''}",
        )
        for i, (d, c) in enumerate(zip(days, counts, strict=True))
    ]
    last = len(days) - 1
    x_ticks = [
        Tick(round(left + (i + 0.5) * step, 2), _day(d))
        for i, d in enumerate(days)
        if (last - i) % every == 0
    ]
    y_ticks = [Tick(round(bottom - plot_h * v / top, 2), str(v)) for v in (0, top // 2, top)]
    return DayChart(width, height, left, bottom, bars, x_ticks, y_ticks, sum(counts), busiest)


def _round_top(n: int) -> int:
    """The smallest of 2, 4, 10, 20, 40, 100, ... (even, so half is whole) at or above n."""
    scale = 1
    while True:
        for m in (2, 4, 10):
            if n <= m * scale:
                return m * scale
        scale *= 10


def _day(d: Any) -> str:
    return d.strftime("%-d %b") if hasattr(d, "strftime") else str(d)
