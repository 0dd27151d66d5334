"""The drift check: drift of the inputs and predictions each school's model sees, on the recorded
(minimised) predictions, against a baseline chosen with the academic calendar. Raises one alert
per school and drifting feature (a repeat refreshes it); small schools are pooled with schools
of the same locality or reported as insufficient data, never as "no drift"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from django.db.models import Count
from pydantic import Field

from edumlops.core import clock
from edumlops.deployments.models import Prediction
from edumlops.deployments.services import resolve
from edumlops.ml import drift
from edumlops.monitoring.checks.params import SCHOOL_THRESHOLDS_HELP, CheckError, PerSchoolParams
from edumlops.monitoring.checks.windows import (
    Data,
    Window,
    baseline_window,
    count,
    window_data,
)
from edumlops.monitoring.models import Alert, DriftCheck
from edumlops.monitoring.services import raise_alert
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School

Reference = dict[str, drift.FeatureReference]


class DriftParams(PerSchoolParams):
    window_days: int = Field(
        14, ge=1, le=120, description="How many days of recent predictions to look at.",
        json_schema_extra={"unit": "days"},
    )  # fmt: skip
    baseline: Literal["seasonal", "training", "previous"] = Field(
        "seasonal",
        description=(
            "seasonal: the same weeks of the term last year (falls back to the training data "
            "when there is none); training: the data the model learned from; previous: the "
            "window just before (naive: start-of-term dips look like drift)."
        ),
    )
    psi_threshold: float = Field(
        0.2, gt=0, le=2, description="Drift sensitivity: a larger population stability index "
        "than this counts as a change (0.1 sensitive, 0.25 relaxed). Small schools checked "
        "together use the most sensitive (smallest) value among them.",
        json_schema_extra={"threshold": "school", "label": "Drift sensitivity"},
    )  # fmt: skip
    js_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Distribution distance limit (Jensen–Shannon): a feature also counts as "
        "changed when its Jensen–Shannon distance to the baseline is larger than this (0 same, "
        "1 nothing in common), even when its population stability index is below the value "
        "above.",
        json_schema_extra={
            "threshold": "school",
            "label": "Distribution distance limit (Jensen–Shannon)",
        },
    )
    alpha: float = Field(
        0.05, gt=0, le=0.5, description="Significance (p-value): a change counts only when its "
        "p-value, corrected across the features of one check, is below this, so that noise in a "
        "large window is not read as drift.",
        json_schema_extra={"threshold": "district", "label": "Significance level (p-value)"},
    )  # fmt: skip
    min_count: int = Field(
        30,
        ge=5,
        le=10_000,
        description="Fewer predictions than this: insufficient data.",
        json_schema_extra={
            "threshold": "district",
            "label": "Fewest predictions for a drift check",
            "unit": "predictions",
        },
    )
    pool_small_schools: bool = Field(
        True, description="Check small schools together with others of the same locality."
    )
    by_grade: bool = Field(
        False,
        description="Compare within each grade, so a cohort growing older is not read as drift.",
    )
    school_thresholds: dict[str, dict[str, float]] = Field({}, description=SCHOOL_THRESHOLDS_HELP)

    def for_schools(self, codes: list[str]) -> DriftParams:
        """For a pooled group of schools: the most sensitive (smallest) drift sensitivity that
        any of them asks for."""
        if not codes:
            return self
        own = [self.for_school(code) for code in codes]
        return self.model_copy(
            update={
                "psi_threshold": min(p.psi_threshold for p in own),
                "js_threshold": min(p.js_threshold for p in own),
            }
        )


# --- results ----------------------------------------------------------------------------------
@dataclass
class GroupDrift:
    """The verdict on one group: a school alone, or small schools of a locality pooled."""

    group: str
    schools: list[School]
    model: ModelVersion
    status: str  # drift / no_drift / insufficient_data
    drifted: list[str]
    baseline: str  # what the window was compared with, in words
    predictions: int
    features: list[dict[str, Any]]  # [{name, psi, js, drifted}]
    alerts: list[Alert] = field(default_factory=list)  # raised or refreshed
    new_alerts: int = 0
    checks: list[DriftCheck] = field(default_factory=list)  # stored, one per school

    def summary(self) -> str:
        return (
            f"{self.group}: {self.status.replace('_', ' ')} ({self.predictions} predictions "
            f"against {self.baseline})" + (f": {', '.join(self.drifted)}" if self.drifted else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "schools": [s.name for s in self.schools],
            "model": str(self.model),
            "status": self.status,
            "drifted": self.drifted,
            "baseline": self.baseline,
            "features": self.features,
        }


@dataclass
class DriftResult:
    window: Window
    groups: list[GroupDrift] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what a person reads, in order

    @property
    def new_alerts(self) -> int:
        return sum(g.new_alerts for g in self.groups)

    def report(self) -> dict[str, Any]:
        return {
            "window": [self.window.start.isoformat(), self.window.end.isoformat()],
            "results": [g.as_dict() for g in self.groups],
        }


# --- the check --------------------------------------------------------------------------------
def check_drift(
    district: District, params: DriftParams, *, run_id: int | None = None
) -> DriftResult:
    """Check every deployed model of the district, group by group: raise alerts, store one
    DriftCheck per school, and return the verdicts."""
    window = Window.ending_today(district, params.window_days)
    deployed = deployed_models(district)
    if not deployed:
        raise CheckError("No model is deployed in this district: nothing to monitor.")
    result = DriftResult(window)
    for model, schools in deployed:
        if not model.drift_reference:
            result.log.append(f"{model} has no drift reference (retrain it to monitor drift).")
            continue
        reference = {
            k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()
        }
        check = _ModelCheck(district, model, reference, window, params, run_id)
        for group, members in groups(schools, window, params).items():
            checked = check.group(group, members)
            result.groups.append(checked)
            result.log.append(checked.summary())
    return result


def deployed_models(district: District) -> list[tuple[ModelVersion, list[School]]]:
    """Each model deployed in the district, with the schools it answers for (by name)."""
    by_model: dict[int, tuple[ModelVersion, list[School]]] = {}
    for school in district.schools.order_by("name"):
        deployment = resolve(school)
        if deployment is not None:
            entry = by_model.setdefault(deployment.model_version_id, (deployment.model_version, []))
            entry[1].append(school)
    return list(by_model.values())


def groups(schools: list[School], window: Window, params: DriftParams) -> dict[str, list[School]]:
    """The groups to check: each school alone, or small schools pooled by locality."""
    if not params.pool_small_schools:
        return {s.name: [s] for s in schools}
    found = Prediction.objects.filter(
        school__in=schools, created_at__date__gte=window.start, created_at__date__lte=window.end
    )
    per_school = dict(found.values_list("school").annotate(n=Count("id")))
    counts = {s.name: per_school.get(s.pk, 0) for s in schools}
    places = {s.name: s.locality for s in schools}
    named = {s.name: s for s in schools}
    pooled = drift.pool_small_groups(counts, places, params.min_count)
    return {group: [named[m] for m in members] for group, members in pooled.items()}


@dataclass(frozen=True)
class _ModelCheck:
    """One model's groups of schools, each checked against the model's reference bins."""

    district: District
    model: ModelVersion
    reference: Reference
    window: Window
    params: DriftParams
    run_id: int | None

    def group(self, name: str, members: list[School]) -> GroupDrift:
        limits = self.params.for_schools([s.code for s in members])
        current = self._current(members)
        baseline, label = self._baseline(members, current)
        reports = compare(current, baseline, self.reference, limits)
        drifted = sorted({f for _, r in reports for f in r.drifted})
        features = [
            # wasserstein: how far values moved, in reference standard deviations (numeric
            # features compared on rows; None on histograms and categories)
            {
                "name": f.name,
                "psi": f.psi,
                "js": f.js,
                "wasserstein": f.wasserstein,
                "drifted": f.drifted,
            }
            for _, r in reports
            for f in r.features
        ]
        status = _status(reports, drifted)
        checked = GroupDrift(
            name, members, self.model, status, drifted, label, count(current), features
        )
        for part, report in reports:
            for feature in (f for f in report.features if f.drifted):
                self._alert(checked, feature, part, limits)
        checked.checks = self._store(checked)
        return checked

    def _current(self, members: list[School]) -> Data:
        """The window's data, central predictions and edge aggregates together."""
        return window_data(members, self.reference, self.window, self.params.min_count)

    def _baseline(self, members: list[School], current: Data) -> tuple[Data | None, str]:
        """What the window is compared with (None: the training data), and its name. The
        baseline's days are read like the window's: rows, or the aggregates that outlive them
        (kept for every model version, re-binned onto this model's bins)."""
        days, label = baseline_window(self.params.baseline, self.window)
        if days is None:
            return None, label
        baseline = window_data(members, self.reference, days, self.params.min_count)
        if count(baseline) < self.params.min_count:
            return None, f"the training data (too few predictions in {label})"
        return baseline, label

    def _alert(
        self, checked: GroupDrift, feature: drift.FeatureDrift, part: str, limits: DriftParams
    ) -> None:
        severity = "critical" if feature.psi > 2.5 * limits.psi_threshold else "warning"
        w = self.window
        for school in checked.schools:
            alert, new = raise_alert(
                district=self.district,
                school=school,
                monitor="drift",
                cause=feature.name if not part else f"{feature.name} ({part})",
                severity=severity,
                message=f"{feature.reason} against {checked.baseline}; window "
                f"{w.start:%d %b} – {w.end:%d %b %Y}"
                + (f" in {checked.group}" if checked.group != school.name else "")
                + ".",
            )
            checked.alerts.append(alert)
            checked.new_alerts += new

    def _store(self, checked: GroupDrift) -> list[DriftCheck]:
        return DriftCheck.objects.bulk_create(
            DriftCheck(
                school=school,
                group=checked.group,
                checked_at=clock.now(),
                window_start=self.window.start,
                window_end=self.window.end,
                baseline=checked.baseline,
                status=checked.status,
                features=checked.features,
                run_id=self.run_id,
            )
            for school in checked.schools
        )


# --- comparing --------------------------------------------------------------------------------
def compare(
    current: Data, baseline: Data | None, reference: Reference, params: DriftParams
) -> list[tuple[str, drift.DriftReport]]:
    """The drift reports of one group, each with its part ("" for all, "grade 7" per grade):
    on histograms when either side is aggregates, else on the rows (per grade if asked)."""
    if isinstance(current, dict) or isinstance(baseline, dict):
        return [("", _compare_histograms(current, baseline, reference, params))]
    if params.by_grade and "grade" in current.columns and "grade" in reference:
        return [
            (f"grade {grade:g}", _compare_rows(part, _grade(baseline, grade), reference, params))
            for grade, part in current.groupby("grade")
        ]
    return [("", _compare_rows(current, baseline, reference, params))]


def _grade(rows: pd.DataFrame | None, grade: Any) -> pd.DataFrame | None:
    return None if rows is None else rows[rows["grade"] == grade]


def _compare_histograms(
    current: Data, baseline: Data | None, reference: Reference, params: DriftParams
) -> drift.DriftReport:
    if not isinstance(current, dict):
        current = drift.histograms(reference, current)
    if baseline is not None and not isinstance(baseline, dict):
        baseline = drift.histograms(reference, baseline)
    cols = [c for c in reference if c in current and (baseline is None or c in baseline)]
    return drift.detect(
        {c: reference[c] for c in cols},
        {c: current[c] for c in cols},
        baseline=None if baseline is None else {c: baseline[c] for c in cols},
        min_count=params.min_count,
        psi_threshold=params.psi_threshold,
        js_threshold=params.js_threshold,
        alpha=params.alpha,
    )


def _compare_rows(
    current: pd.DataFrame, baseline: pd.DataFrame | None, reference: Reference, params: DriftParams
) -> drift.DriftReport:
    if current.empty:
        return drift.DriftReport("insufficient_data", 0, 0, [], {})
    cols = [c for c in reference if c in current.columns]
    return drift.detect(
        {c: reference[c] for c in cols},
        current[cols],
        baseline=None if baseline is None else baseline[cols],
        min_count=params.min_count,
        psi_threshold=params.psi_threshold,
        js_threshold=params.js_threshold,
        alpha=params.alpha,
        n_boot=200,
    )


def _status(reports: list[tuple[str, drift.DriftReport]], drifted: list[str]) -> str:
    if all(r.status == "insufficient_data" for _, r in reports):
        return "insufficient_data"
    return "drift" if drifted else "no_drift"
