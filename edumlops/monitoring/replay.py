"""Replay before you save: how many drift alerts a drift monitor with other thresholds would have
raised over the last term, and which (school, week, feature, value), computed from the stored
daily aggregates (they outlive the raw rows) of each school, week by week, against the training
data of the model each school used. Nothing is written: no alert, no check."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edumlops.core import clock
from edumlops.deployments.services import resolve
from edumlops.ml import drift
from edumlops.monitoring.checks.drift import DriftParams, compare
from edumlops.monitoring.checks.windows import Window, count, summed_aggregates
from edumlops.schools.models import District, School

MAX_WEEKS = 26  # a term is at most this long; a calendar without terms: the last 12 weeks
NO_CALENDAR_WEEKS = 12


@dataclass(frozen=True)
class ReplayedAlert:
    school: str
    week: dt.date  # the Monday of the week
    feature: str
    psi: float
    js: float
    rule: str  # the rule that decided, in words

    def as_dict(self) -> dict[str, Any]:
        return {
            "school": self.school,
            "week": self.week.isoformat(),
            "feature": self.feature,
            "psi": self.psi,
            "js": self.js,
            "rule": self.rule,
        }


@dataclass
class Replay:
    period: str  # "Autumn term 2026 (1 Sep – 3 Dec 2026)"
    start: dt.date
    end: dt.date
    weeks: int
    checked: int = 0  # school-weeks with enough predictions to judge
    insufficient: int = 0  # school-weeks with too few
    alerts: list[ReplayedAlert] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "weeks": self.weeks,
            "checked": self.checked,
            "insufficient": self.insufficient,
            "alerts": len(self.alerts),
            "raised": [a.as_dict() for a in self.alerts],
        }


def last_term(district: District, today: dt.date | None = None) -> tuple[str, dt.date, dt.date]:
    """The latest term of the calendar that has begun (up to today), or the last 12 weeks."""
    today = today or clock.today()
    term = district.terms().filter(start__lte=today).order_by("-start").first()
    if term is None:
        start = today - dt.timedelta(weeks=NO_CALENDAR_WEEKS)
        return f"the last {NO_CALENDAR_WEEKS} weeks", start, today
    end = min(term.end, today)
    return term.name, max(term.start, end - dt.timedelta(weeks=MAX_WEEKS)), end


def replay_drift(district: District, schools: list[School], params: DriftParams) -> Replay:
    """Each school alone, each week of the last term, against its model's training data, with
    `params` (a school's own values apply, as in the real check)."""
    name, start, end = last_term(district)
    periods = [drift.Period(p.kind, p.name, p.start, p.end) for p in district.calendar.all()]
    monday = start - dt.timedelta(days=start.weekday())
    weeks = []
    while monday <= end:
        weeks.append(Window(max(monday, start), min(monday + dt.timedelta(days=6), end), periods))
        monday += dt.timedelta(days=7)
    result = Replay(f"{name} ({start:%d %b} – {end:%d %b %Y})", start, end, len(weeks))
    for school in schools:
        deployment = resolve(school)
        if deployment is None or not deployment.model_version.drift_reference:
            continue
        reference = {
            k: drift.FeatureReference.from_dict(v)
            for k, v in deployment.model_version.drift_reference.items()
        }
        limits = params.for_school(school.code)
        for week in weeks:
            data = summed_aggregates([school], reference, week)
            if count(data) < limits.min_count:
                result.insufficient += 1
                continue
            result.checked += 1
            for _, report in compare(data, None, reference, limits):
                for f in (f for f in report.features if f.drifted):
                    rule = _rule(f, limits)
                    monday = week.start - dt.timedelta(days=week.start.weekday())
                    result.alerts.append(
                        ReplayedAlert(school.name, monday, f.name, f.psi, f.js, rule)
                    )
    return result


def _rule(f: drift.FeatureDrift, limits: DriftParams) -> str:
    """The rule (or rules) that made a feature count as drifted, in words."""
    rules = []
    if f.psi > limits.psi_threshold:
        rules.append(f"PSI above {limits.psi_threshold:g}")
    if f.js > limits.js_threshold:
        rules.append(f"Jensen–Shannon above {limits.js_threshold:g}")
    return " and ".join(rules)
