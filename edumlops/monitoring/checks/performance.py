"""The performance check: when the real outcomes arrive (e.g. end-of-term results), score them
with each school's model and compare recall and precision with validation, per school and per
sensitive group. Raises an alert where the model misses clearly more at-risk students than it
did in validation, and stores one PerformanceCheck per school checked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import Field

from edumlops.core import clock
from edumlops.deployments.services import resolve
from edumlops.ml import evaluation
from edumlops.ml.datasets import Roles
from edumlops.ml.training import binary_target
from edumlops.monitoring.checks.params import SCHOOL_THRESHOLDS_HELP, CheckError, PerSchoolParams
from edumlops.monitoring.models import Alert, PerformanceCheck
from edumlops.monitoring.services import raise_alert
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

METRICS = ("recall", "precision", "brier", "auc")


class PerformanceParams(PerSchoolParams):
    max_recall_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Alert when recall is this much below validation.",
        json_schema_extra={"threshold": "school", "label": "Allowed drop in recall"},
    )
    max_precision_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Alert when precision is this much below validation.",
        json_schema_extra={"threshold": "school", "label": "Allowed drop in precision"},
    )
    min_positives: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Schools or groups with fewer at-risk students: insufficient data.",
        json_schema_extra={
            "threshold": "district",
            "label": "Fewest at-risk students for a performance check",
            "unit": "students",
        },
    )
    school_thresholds: dict[str, dict[str, float]] = Field({}, description=SCHOOL_THRESHOLDS_HELP)


@dataclass(frozen=True)
class Finding:
    """A metric clearly below validation: what, by how much, now and then."""

    cause: str  # "recall", "precision" or "recall (ses=low)"
    drop: float
    now: float
    then: float


@dataclass
class SchoolPerformance:
    """The verdict on one school's outcomes (named as in the outcomes: its name or code)."""

    school: str
    status: str  # ok / degraded / insufficient_data
    rows: int
    positives: int
    metrics: dict[str, Any] = field(default_factory=dict)  # recall, precision, brier, auc
    calibration: Any = None
    # [{"group", "recall", "positives", "found"}]
    groups: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)  # raised or refreshed
    new_alerts: int = 0
    check: PerformanceCheck | None = None  # stored unless insufficient data

    def summary(self) -> str:
        if self.status == "insufficient_data":
            return f"{self.school}: insufficient data ({self.positives} at-risk students)"
        m = self.metrics
        return (
            f"{self.school}: recall {m['recall']:.3f}, precision "
            f"{(m['precision'] or 0):.3f}, Brier {m['brier']:.3f} on {self.rows} rows"
            + (f"; {len(self.findings)} finding(s)" if self.findings else "")
        )

    def as_dict(self) -> dict[str, Any]:
        if self.status == "insufficient_data":
            return {"school": self.school, "status": self.status}
        return {
            "school": self.school,
            "status": self.status,
            "metrics": self.metrics,
            "calibration": self.calibration,
            "groups": self.groups,
        }


@dataclass
class PerformanceResult:
    schools: list[SchoolPerformance] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what a person reads, in order

    @property
    def new_alerts(self) -> int:
        return sum(s.new_alerts for s in self.schools)

    def report(self) -> dict[str, Any]:
        return {"results": [s.as_dict() for s in self.schools]}


def check_performance(
    district: District,
    outcomes: pd.DataFrame,
    roles: Roles,
    params: PerformanceParams,
    *,
    run_id: int | None = None,
) -> PerformanceResult:
    """Check each school of the district named in the outcomes against its deployed model."""
    if not roles.label or not roles.school or roles.school not in outcomes:
        raise CheckError(
            "The outcomes need their label and school column marked: mark them on the dataset page."
        )
    schools = {s.name: s for s in district.schools.all()} | {
        s.code: s for s in district.schools.all()
    }
    result = PerformanceResult()
    for name, rows in outcomes.groupby(outcomes[roles.school].astype(str)):
        school = schools.get(name)
        deployment = resolve(school) if school else None
        if school is None or deployment is None:
            result.log.append(f"{name}: not a school of {district} with a model deployed; skipped")
            continue
        model, limits = deployment.model_version, params.for_school(school.code)
        checked = _check_school(district, school, name, model, rows, roles, limits, run_id)
        result.schools.append(checked)
        result.log.append(checked.summary())
    return result


def _check_school(
    district: District,
    school: School,
    name: str,
    model: ModelVersion,
    rows: pd.DataFrame,
    roles: Roles,
    limits: PerformanceParams,
    run_id: int | None,
) -> SchoolPerformance:
    y = binary_target(rows[roles.label], roles.positive)
    checked = SchoolPerformance(name, "insufficient_data", len(rows), int(y.sum()))
    if checked.positives < limits.min_positives:
        return checked
    seen = evaluation.evaluate(y, model.predict_proba(rows), threshold=model.threshold)
    expected = (model.validation or {}).get("metrics") or {}
    checked.metrics = {k: seen[k] for k in METRICS}
    # the counts behind recall, so pages can publish it with differential privacy
    checked.metrics |= {"positives": checked.positives, "found": _found(seen, checked.positives)}
    checked.calibration = seen.get("calibration")
    checked.findings = drops(seen, expected, limits)
    for group, part, y_part in _sensitive_groups(rows, roles, limits.min_positives):
        metrics = evaluation.evaluate(y_part, model.predict_proba(part), model.threshold)
        positives = int(y_part.sum())
        checked.groups.append(
            {
                "group": group,
                "recall": metrics["recall"],
                "positives": positives,
                "found": _found(metrics, positives),
            }
        )
        checked.findings += drops(metrics, expected, limits, group=group)
    checked.status = "degraded" if checked.findings else "ok"
    for finding in checked.findings:
        _alert(district, school, model, checked, finding, limits)
    checked.check = PerformanceCheck.objects.create(
        school=school,
        checked_at=clock.now(),
        model_version=model,
        rows=checked.rows,
        metrics=checked.metrics,
        groups=checked.groups,
        run_id=run_id,
    )
    return checked


def _found(metrics: dict[str, Any], positives: int) -> int:
    """How many of the at-risk students the model flagged (recall × at-risk students)."""
    return round((metrics.get("recall") or 0.0) * positives)


def drops(
    seen: dict[str, Any], expected: dict[str, Any], limits: PerformanceParams, group: str = ""
) -> list[Finding]:
    """The metrics that fell further below validation than allowed (recall only for a
    sensitive group, named "recall (ses=low)")."""
    allowed = {"recall": limits.max_recall_drop, "precision": limits.max_precision_drop}
    found = []
    for metric in ("recall", "precision") if not group else ("recall",):
        if seen.get(metric) is None or expected.get(metric) is None:
            continue
        drop = expected[metric] - seen[metric]
        if drop > allowed[metric]:
            cause = f"{metric} ({group})" if group else metric
            found.append(Finding(cause, drop, seen[metric], expected[metric]))
    return found


def _sensitive_groups(
    rows: pd.DataFrame, roles: Roles, min_positives: int
) -> Iterator[tuple[str, pd.DataFrame, pd.Series]]:
    """Each value of each sensitive attribute ("ses=low") with enough at-risk students."""
    for attribute in [a for a in roles.sensitive if a in rows]:
        for value, part in rows.groupby(rows[attribute].astype(str)):
            y = binary_target(part[roles.label], roles.positive)
            if int(y.sum()) >= min_positives:
                yield f"{attribute}={value}", part, y


def _alert(
    district: District,
    school: School,
    model: ModelVersion,
    checked: SchoolPerformance,
    finding: Finding,
    limits: PerformanceParams,
) -> None:
    alert, new = raise_alert(
        district=district,
        school=school,
        monitor="performance",
        cause=finding.cause,
        severity="critical" if finding.drop > 2 * limits.max_recall_drop else "warning",
        message=f"{finding.cause} {finding.now:.3f} on {checked.rows} outcomes vs "
        f"{finding.then:.3f} in validation ({model}).",
    )
    checked.alerts.append(alert)
    checked.new_alerts += new
