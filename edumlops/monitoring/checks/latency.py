"""The device-latency check: how fast predictions are answered, per school and hardware profile.
An old laptop and a new server each have their own normal (the median daily p95 of the baseline
days); only a slowdown against that normal raises an alert."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from edumlops.core import clock
from edumlops.monitoring.checks.params import SCHOOL_THRESHOLDS_HELP, PerSchoolParams
from edumlops.monitoring.models import Alert, DailyAggregate
from edumlops.monitoring.services import raise_alert
from edumlops.schools.models import District, School


class LatencyParams(PerSchoolParams):
    window_days: int = Field(
        3, ge=1, le=60, description="Recent days to judge.", json_schema_extra={"unit": "days"}
    )
    baseline_days: int = Field(
        28,
        ge=3,
        le=365,
        description="Days before the window that set each device profile's normal latency.",
        json_schema_extra={"unit": "days"},
    )
    max_ratio: float = Field(
        2.0,
        ge=1.1,
        le=20,
        description="Alert when a profile's p95 latency is this many times its own normal.",
        json_schema_extra={
            "threshold": "school",
            "label": "Latency alert ratio",
            "unit": "× normal",
        },
    )
    min_normal_days: int = Field(
        3,
        ge=1,
        le=365,
        description="Fewer baseline days with a p95 than this: no normal to judge against "
        "(insufficient data, no alert).",
        json_schema_extra={
            "threshold": "district",
            "label": "Fewest days for a device's normal latency",
            "unit": "days",
        },
    )
    school_thresholds: dict[str, dict[str, float]] = Field({}, description=SCHOOL_THRESHOLDS_HELP)


@dataclass
class ProfileLatency:
    """The verdict on one school's device profile."""

    school: School
    profile: str
    status: str  # ok / slow / insufficient_data
    p95_ms: float | None = None  # the worst daily p95 of the window
    normal_ms: float | None = None  # the median daily p95 of the baseline days
    normal_days: int = 0
    ratio: float = 0.0
    alert: Alert | None = None  # raised or refreshed
    new_alert: bool = False

    def summary(self) -> str:
        return (
            f"{self.school.name} / {self.profile}: p95 {self.p95_ms:.1f} ms vs normal "
            f"{self.normal_ms:.1f} ms"
        )

    def as_dict(self) -> dict[str, Any]:
        found = {"school": self.school.name, "profile": self.profile, "status": self.status}
        if self.status == "insufficient_data":
            return found
        return found | {
            "p95_ms": self.p95_ms,
            "normal_ms": self.normal_ms,
            "ratio": round(self.ratio, 2),
        }


@dataclass
class LatencyResult:
    profiles: list[ProfileLatency] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what a person reads, in order

    @property
    def new_alerts(self) -> int:
        return sum(p.new_alert for p in self.profiles)

    def report(self) -> dict[str, Any]:
        return {"results": [p.as_dict() for p in self.profiles]}


@dataclass
class _Series:
    normal: list[float] = field(default_factory=list)  # daily p95s of the baseline days
    now: list[float] = field(default_factory=list)  # daily p95s of the window


def check_latency(district: District, params: LatencyParams) -> LatencyResult:
    """Judge each school's device profiles of the last `window_days` against their normal."""
    today = clock.today()
    window_start = today - dt.timedelta(days=params.window_days - 1)
    series = _series(
        district, window_start - dt.timedelta(days=params.baseline_days), window_start, today
    )
    result = LatencyResult()
    for (school, profile), values in sorted(series.items(), key=lambda kv: kv[0][0].name):
        if len(values.normal) < params.min_normal_days or not values.now:
            result.profiles.append(ProfileLatency(school, profile, "insufficient_data"))
            continue
        checked = _judge(district, school, profile, values, params.for_school(school.code))
        result.profiles.append(checked)
        result.log.append(checked.summary())
    return result


def _series(
    district: District, start: dt.date, window_start: dt.date, end: dt.date
) -> dict[tuple[School, str], _Series]:
    """Daily p95 latencies per school and device profile, split at the window's start."""
    rows = DailyAggregate.objects.filter(
        school__district=district, day__gte=start, day__lte=end
    ).exclude(latency_p95_ms=None)
    series: dict[tuple[School, str], _Series] = {}
    for row in rows.select_related("school"):
        values = series.setdefault((row.school, row.device_profile or "unknown"), _Series())
        (values.now if row.day >= window_start else values.normal).append(row.latency_p95_ms)
    return series


def _judge(
    district: District, school: School, profile: str, values: _Series, limits: LatencyParams
) -> ProfileLatency:
    normal = statistics.median(values.normal)
    now = max(values.now)
    ratio = now / normal if normal else 0.0
    status = "slow" if ratio > limits.max_ratio else "ok"
    checked = ProfileLatency(school, profile, status, now, normal, len(values.normal), ratio)
    if status == "slow":
        checked.alert, checked.new_alert = raise_alert(
            district=district,
            school=school,
            monitor="latency",
            cause=f"p95 latency on {profile}",
            severity="critical" if ratio > 2 * limits.max_ratio else "warning",
            message=f"p95 {now:.1f} ms on {profile}, {ratio:.1f}x its normal "
            f"{normal:.1f} ms (median of {len(values.normal)} days).",
        )
    return checked
