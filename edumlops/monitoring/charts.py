"""The drift chart of a school, drawn on the server (templates/monitoring/_drift_chart.html):
the population stability index of the top features per drift check over time, with axes and
dates, the alert threshold actually in force for that school, the school calendar's terms and
breaks shaded, and the other features folded into one line of text."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from edumlops.core import clock
from edumlops.monitoring.models import DriftCheck
from edumlops.schools.models import School

WIDTH, HEIGHT = 680, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 150, 12, 34
DAYS = 90  # how far back the chart reaches
TOP_FEATURES = 5
COLOURS = ("#1f5fbf", "#c2410c", "#15803d", "#7c3aed", "#0e7490")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2")
PERIOD_FILL = {"term": "#eef6ee", "break": "#e6e9f0", "testing": "#fff1d6"}
PERIOD_WORDS = {"term": "term", "break": "break", "testing": "testing weeks"}


@dataclass(frozen=True)
class Rule:
    """The drift rule in force for a school, as the drift monitor applies it."""

    psi: float
    js: float
    own: bool  # the school's own value (else the district's)
    workflow: str  # the workflow whose drift monitor it is


@dataclass
class Series:
    name: str
    colour: str
    dash: str
    points: str  # "x,y x,y …"
    dots: list[tuple[float, float, str]]  # x, y, tooltip
    label_y: float
    last: float
    peak: float


@dataclass
class Shade:
    x: float
    w: float
    kind: str
    fill: str
    label: str


@dataclass
class Tick:
    pos: float
    text: str


@dataclass
class DriftChart:
    start: dt.date
    end: dt.date
    rule: Rule | None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM
    top: int = TOP
    series: list[Series] = field(default_factory=list)
    shades: list[Shade] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    threshold_y: float | None = None
    folded: list[str] = field(default_factory=list)  # the features not drawn
    folded_peak: float = 0.0
    checks: int = 0
    kinds: list[tuple[str, str]] = field(default_factory=list)  # shading shown: (fill, words)

    @property
    def plot_height(self) -> float:
        return self.plot_bottom - self.top

    @property
    def folded_text(self) -> str:
        if not self.folded:
            return ""
        n = len(self.folded)
        return (
            f"{n} more feature{'s' if n != 1 else ''} not drawn (largest PSI "
            f"{self.folded_peak:.3f}): {', '.join(self.folded)}."
        )

    @property
    def threshold_text(self) -> str:
        if self.rule is None:
            return "No drift monitor in a workflow that can run: no threshold in force."
        whose = "this school's own value" if self.rule.own else "the district's value"
        return (
            f"Alert above PSI {self.rule.psi:g} ({whose}, {self.rule.workflow}); a feature also "
            f"alerts when its Jensen–Shannon distance is above {self.rule.js:g}."
        )


def drift_chart(
    school: School, rule: Rule | None, today: dt.date | None = None, top: int = TOP_FEATURES
) -> DriftChart | None:
    """The chart of the school's drift checks of the last DAYS days (None: no check yet)."""
    end = today or clock.today()
    start = end - dt.timedelta(days=DAYS - 1)
    checks = list(
        DriftCheck.objects.filter(school=school, checked_at__date__gte=start)
        .exclude(status="insufficient_data")
        .order_by("checked_at")
    )
    if not checks:
        return None
    values: dict[str, list[tuple[dt.date, float]]] = {}
    for check in checks:
        day = timezone.localtime(check.checked_at).date()
        for f in check.features:
            if f.get("name") != "__prediction__" and f.get("psi") is not None:
                values.setdefault(f["name"], []).append((day, float(f["psi"])))
    chart = DriftChart(start, end, rule, checks=len(checks))
    ranked = sorted(values, key=lambda n: (-max(v for _, v in values[n]), n))
    shown, folded = ranked[:top], ranked[top:]
    chart.folded = folded
    chart.folded_peak = max((max(v for _, v in values[n]) for n in folded), default=0.0)
    peak = max((max(v for _, v in values[n]) for n in shown), default=0.0)
    y_max = _nice(max(peak, (rule.psi * 1.25) if rule else 0.0, 0.05))
    span = (end - start).days or 1

    def x(day: dt.date) -> float:
        return round(LEFT + (day - start).days / span * (chart.plot_right - LEFT), 1)

    def y(v: float) -> float:
        return round(chart.plot_bottom - min(v, y_max) / y_max * (chart.plot_bottom - TOP), 1)

    for period in school.district.calendar.filter(end__gte=start, start__lte=end).order_by("start"):
        a, b = max(period.start, start), min(period.end, end)
        chart.shades.append(
            Shade(
                x(a),
                max(x(b) - x(a), 1.0),
                period.kind,
                PERIOD_FILL.get(period.kind, "#eeeeee"),
                f"{period.name} ({PERIOD_WORDS.get(period.kind, period.kind)}, "
                f"{period.start:%d %b} – {period.end:%d %b %Y})",
            )
        )
    seen = {s.kind for s in chart.shades}
    chart.kinds = [(PERIOD_FILL[k], PERIOD_WORDS[k]) for k in PERIOD_FILL if k in seen]
    labels: list[float] = []
    for i, name in enumerate(shown):
        points = values[name]
        last = points[-1][1]
        label_y = _apart(y(last) + 3, labels)
        labels.append(label_y)
        chart.series.append(
            Series(
                name=name,
                colour=COLOURS[i % len(COLOURS)],
                dash=DASHES[i % len(DASHES)],
                points=" ".join(f"{x(d)},{y(v)}" for d, v in points),
                dots=[(x(d), y(v), f"{name}: PSI {v:.3f} on {d:%d %b %Y}") for d, v in points],
                label_y=label_y,
                last=last,
                peak=max(v for _, v in points),
            )
        )
    if rule is not None:
        chart.threshold_y = y(rule.psi)
    chart.y_ticks = [Tick(y(y_max * i / 4), f"{y_max * i / 4:g}") for i in range(5)]
    chart.x_ticks = [Tick(x(d), f"{d.day} {d:%b}") for d in _date_ticks(start, end)]
    return chart


def _nice(v: float) -> float:
    """A round axis maximum at or above v."""
    for step in (0.04, 0.08, 0.2, 0.4, 0.8, 1.0, 2.0, 4.0, 8.0, 10.0):  # quarters read well
        if v <= step:
            return step
    return float(int(v) + 1)


def _apart(y: float, taken: list[float], gap: float = 11.0) -> float:
    """A label height at least `gap` from the ones already placed."""
    while any(abs(y - t) < gap for t in taken):
        y += gap
    return y


def _date_ticks(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first of each month in the range (every other when there are many), or weekly."""
    firsts = []
    day = dt.date(start.year, start.month, 1)
    while day <= end:
        if day >= start:
            firsts.append(day)
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    if len(firsts) >= 2:
        return firsts[:: 2 if len(firsts) > 6 else 1]
    return [start + dt.timedelta(days=7 * i) for i in range((end - start).days // 7 + 1)]
