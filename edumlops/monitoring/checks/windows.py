"""The days a drift check reads, and what it reads in them: the recorded predictions (raw rows)
or, where those are gone or never came (edge nodes), the daily aggregates' histograms. Breaks and
testing weeks of the district's calendar are left out of every window."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from edumlops.core import clock
from edumlops.deployments.models import Prediction
from edumlops.ml import drift
from edumlops.monitoring.models import DailyAggregate
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

# What a window holds: raw rows (one column per feature, plus "__prediction__"), or the
# histograms edge nodes and the daily job keep, per feature on the model's reference bins.
Data = pd.DataFrame | dict[str, list[int]]


@dataclass(frozen=True)
class Window:
    """Days from `start` to `end` (inclusive), with the calendar's periods."""

    start: dt.date
    end: dt.date
    periods: list[drift.Period]

    @classmethod
    def ending_today(cls, district: District, days: int) -> Window:
        end = clock.today()
        periods = [drift.Period(p.kind, p.name, p.start, p.end) for p in district.calendar.all()]
        return cls(end - dt.timedelta(days=days - 1), end, periods)

    def masked(self, day: dt.date) -> bool:
        return drift.masked(day, self.periods)


def baseline_window(kind: str, window: Window) -> tuple[Window | None, str]:
    """The baseline's days for this kind of baseline (None: the training data), and its name.
    A seasonal baseline keeps its name when the calendar has no matching term."""
    dates = None
    if kind == "seasonal":
        dates = drift.seasonal_baseline(window.start, window.end, window.periods)
        label = "the same weeks of last year"
    elif kind == "previous":
        dates = drift.previous_window(window.start, window.end, window.periods)
        label = "the previous window"
    else:
        label = "the training data"
    return (None if dates is None else Window(*dates, window.periods)), label


def recorded_rows(schools: list[School], window: Window) -> pd.DataFrame:
    """The recorded predictions of these schools in the window, one row each (features and
    "__prediction__")."""
    rows = []
    found = Prediction.objects.filter(
        school__in=schools, created_at__date__gte=window.start, created_at__date__lte=window.end
    ).values("features", "probability", "created_at")
    for p in found.iterator(chunk_size=2000):
        if window.masked(p["created_at"].date()):
            continue  # breaks and testing weeks are left out of both windows
        rows.append({**p["features"], "__prediction__": p["probability"]})
    return pd.DataFrame(rows)


def summed_aggregates(
    schools: list[School], model: ModelVersion, window: Window, edge_only: bool = False
) -> dict[str, list[int]]:
    """Daily aggregates of these schools and this model in the window, summed per feature (the
    same reference bins, so histograms add up)."""
    found = DailyAggregate.objects.filter(
        school__in=schools, model_version=model, day__gte=window.start, day__lte=window.end
    )
    if edge_only:
        found = found.exclude(source="central")
    summed: dict[str, list[int]] = {}
    for row in (r for r in found if not window.masked(r.day)):
        for name, counts in row.histograms.items():
            if name in summed and len(summed[name]) == len(counts):
                summed[name] = [a + b for a, b in zip(summed[name], counts, strict=True)]
            else:
                summed.setdefault(name, list(counts))
    return summed


def count(data: Data) -> int:
    """How many predictions a window holds."""
    if isinstance(data, dict):
        return int(sum(next(iter(data.values()), [])))
    return len(data)
