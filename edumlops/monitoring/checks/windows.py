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
from edumlops.schools.models import District, School

# What a window holds: raw rows (one column per feature, plus "__prediction__"), or the
# histograms edge nodes and the daily job keep, per feature on the model's reference bins.
Data = pd.DataFrame | dict[str, list[float]]


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
    """The baseline's days for this kind of baseline (None: the training data), and its name as
    an alert says it: "the same weeks of 2025–26", "the previous 4 weeks", "the training data".
    A seasonal baseline without a matching term of an earlier school year is the training data,
    and says why."""
    if kind == "seasonal":
        dates = drift.seasonal_baseline(window.start, window.end, window.periods)
        if dates is None:
            return None, "the training data (no earlier school year in the calendar)"
        return Window(*dates, window.periods), f"the same weeks of {drift.school_year(dates[0])}"
    if kind == "previous":
        dates = drift.previous_window(window.start, window.end, window.periods)
        return Window(*dates, window.periods), f"the previous {_length(window)}"
    return None, "the training data"


def _length(window: Window) -> str:
    days = (window.end - window.start).days + 1
    if days % 7 == 0:
        weeks = days // 7
        return "week" if weeks == 1 else f"{weeks} weeks"
    return "day" if days == 1 else f"{days} days"


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
    schools: list[School],
    reference: dict[str, drift.FeatureReference],
    window: Window,
    source: str = "all",
) -> dict[str, list[float]]:
    """Daily aggregates of these schools in the window, of every model version, summed per
    feature on `reference`'s bins: an aggregate kept on another model's bins (an earlier model,
    before a retraining) is re-binned onto these. `source`: "all", "central" or "edge"."""
    found = DailyAggregate.objects.filter(
        school__in=schools, day__gte=window.start, day__lte=window.end
    ).select_related("model_version")
    if source == "central":
        found = found.filter(source="central")
    elif source == "edge":
        found = found.exclude(source="central")
    references: dict[int, dict[str, drift.FeatureReference]] = {}
    parts = []
    for row in found:
        if window.masked(row.day):
            continue
        own = references.get(row.model_version_id)
        if own is None:
            own = {
                k: drift.FeatureReference.from_dict(v)
                for k, v in (row.model_version.drift_reference or {}).items()
            }
            references[row.model_version_id] = own
        part = {}
        for name, counts in row.histograms.items():
            target = reference.get(name)
            if target is None:
                continue  # a feature the current model does not use
            source_ref = own.get(name)
            if source_ref is None or len(counts) != len(source_ref.labels):
                if len(counts) == len(target.labels):
                    part[name] = list(counts)  # no bins of its own on record: these, by size
                continue
            if source_ref.kind != target.kind:
                continue
            same = source_ref.edges == target.edges and source_ref.categories == target.categories
            part[name] = list(counts) if same else target.rebin(counts, source_ref)
        parts.append(part)
    return drift.add_histograms(*parts)


def window_data(
    schools: list[School],
    reference: dict[str, drift.FeatureReference],
    window: Window,
    min_count: int,
) -> Data:
    """Everything known of these schools in the window, central and edge together: the recorded
    rows alone when no edge node reported (raw rows allow the finer tests); rows (or, where
    they are gone, the central aggregates) plus the edge nodes' aggregates otherwise; all
    aggregates when the rows are pruned (older than the retention window)."""
    rows = recorded_rows(schools, window)
    edge = summed_aggregates(schools, reference, window, source="edge")
    if not edge:
        if len(rows) >= min_count:
            return rows
        central = summed_aggregates(schools, reference, window, source="central")
        return central if count(central) > len(rows) else rows
    if len(rows):
        central = drift.histograms(reference, rows)
        stored = summed_aggregates(schools, reference, window, source="central")
        if count(stored) > len(rows):  # some of the window's rows were pruned already
            central = stored
    else:
        central = summed_aggregates(schools, reference, window, source="central")
    return drift.add_histograms(central, edge)


def count(data: Data) -> int:
    """How many predictions a window holds."""
    if isinstance(data, dict):
        return int(round(sum(next(iter(data.values()), []))))
    return len(data)
