"""Monitoring: drift of the inputs and predictions each school's model sees, on the recorded
(minimised) predictions, against a baseline chosen with the academic calendar. Raises one alert
per school and drifting feature (a repeat refreshes it); small schools are pooled with schools
of the same locality or reported as insufficient data, never as "no drift"."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from workflows.blocks.base import Block, BlockError, Context, Params, Port, PortType, output

ANY = tuple(PortType)

SCHOOL_THRESHOLDS_HELP = (
    "Per-school values set on the Thresholds page: school code → {parameter: value}. Only the "
    "parameters teachers may change, each within its own allowed range."
)


class PerSchoolParams(Params):
    """A monitor whose teacher-editable thresholds (marked ``{"threshold": "school"}``) can be
    set per school, in its ``school_thresholds`` parameter (declared last by each subclass, so
    it comes last in the block's form)."""

    if TYPE_CHECKING:
        school_thresholds: dict[str, dict[str, float]]

    @classmethod
    def school_fields(cls) -> dict[str, FieldInfo]:
        return {
            name: info
            for name, info in cls.model_fields.items()
            if isinstance(info.json_schema_extra, dict)
            and info.json_schema_extra.get("threshold") == "school"
        }

    @field_validator("school_thresholds", check_fields=False)
    @classmethod
    def _known_fields_within_bounds(
        cls, value: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        from pydantic import TypeAdapter

        editable = cls.school_fields()
        for code, values in value.items():
            for name, number in values.items():
                if name not in editable:
                    raise ValueError(
                        f'school "{code}": "{name}" cannot be set per school (these can: '
                        f"{', '.join(editable)})"
                    )
                info = editable[name]
                try:
                    TypeAdapter(Annotated[info.annotation, info]).validate_python(number)
                except ValidationError as exc:
                    raise ValueError(
                        f'school "{code}": {name} = {number:g} is out of range: '
                        f"{exc.errors()[0]['msg'].lower()}"
                    ) from None
        return value

    def for_school(self, code: str) -> Self:
        """These parameters with the school's own values where it has any."""
        own = self.school_thresholds.get(code)
        return self.model_copy(update=own) if own else self


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
        psi = min((self.for_school(code).psi_threshold for code in codes), default=None)
        return self.model_copy(update={"psi_threshold": psi}) if psi is not None else self


def _periods(district: Any) -> list[Any]:
    from edumlops.ml.drift import Period

    return [Period(p.kind, p.name, p.start, p.end) for p in district.calendar.all()]


def _rows(schools: list[Any], start: dt.date, end: dt.date, periods: list[Any]) -> list[dict]:
    from edumlops.deployments.models import Prediction
    from edumlops.ml.drift import masked

    rows = []
    found = Prediction.objects.filter(
        school__in=schools, created_at__date__gte=start, created_at__date__lte=end
    ).values("features", "probability", "created_at")
    for p in found.iterator(chunk_size=2000):
        if masked(p["created_at"].date(), periods):
            continue  # breaks and testing weeks are left out of both windows
        rows.append({**p["features"], "__prediction__": p["probability"]})
    return rows


def _aggregated(
    schools: list[Any],
    model: Any,
    start: dt.date,
    end: dt.date,
    periods: list[Any],
    edge_only: bool = False,
) -> dict[str, list[int]]:
    """Daily aggregates of these schools and this model in the window, summed per feature (the
    same reference bins, so histograms add up); breaks and testing weeks left out."""
    from edumlops.ml.drift import masked
    from edumlops.monitoring.models import DailyAggregate

    found = DailyAggregate.objects.filter(
        school__in=schools, model_version=model, day__gte=start, day__lte=end
    )
    if edge_only:
        found = found.exclude(source="central")
    summed: dict[str, list[int]] = {}
    for row in found:
        if masked(row.day, periods):
            continue
        for name, counts in row.histograms.items():
            if name in summed and len(summed[name]) == len(counts):
                summed[name] = [a + b for a, b in zip(summed[name], counts, strict=True)]
            else:
                summed.setdefault(name, list(counts))
    return summed


def _count(current: Any) -> int:
    if isinstance(current, dict):
        return int(sum(next(iter(current.values()), [])))
    return len(current)


class DriftMonitorBlock(Block):
    kind = "drift_monitor"
    category = "monitor"
    label = "Drift monitor"
    help = (
        "Checks whether what each school's model sees has changed: every feature and the "
        "predictions, on the bins fixed at training time, against last year's same weeks of "
        "term (or the training data, or the previous window). Raises an alert naming the "
        "school and the feature; small schools are pooled or reported as insufficient data."
    )
    icon = "activity"
    Params = DriftParams
    inputs = (Port("input", ANY, "Start", required=False),)
    outputs = (output("report", PortType.REPORT, "Drift report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        import pandas as pd
        from django.db.models import Count

        from edumlops.core import clock
        from edumlops.deployments.models import Prediction
        from edumlops.deployments.services import resolve
        from edumlops.ml import drift
        from edumlops.monitoring.models import DriftCheck
        from edumlops.monitoring.services import raise_alert

        district = context.run.workflow.district
        end = clock.today()
        start = end - dt.timedelta(days=params.window_days - 1)
        periods = _periods(district)
        by_model: dict[int, list[Any]] = {}
        models = {}
        for school in district.schools.order_by("name"):
            deployment = resolve(school)
            if deployment is not None:
                by_model.setdefault(deployment.model_version_id, []).append(school)
                models[deployment.model_version_id] = deployment.model_version
        if not by_model:
            raise BlockError("No model is deployed in this district: nothing to monitor.")
        results, alerts = [], 0
        for model_id, schools in by_model.items():
            model = models[model_id]
            if not model.drift_reference:
                context.log(f"{model} has no drift reference (retrain it to monitor drift).")
                continue
            reference = {
                k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()
            }
            per_school = dict(
                Prediction.objects.filter(
                    school__in=schools, created_at__date__gte=start, created_at__date__lte=end
                )
                .values_list("school")
                .annotate(n=Count("id"))
            )
            counts = {s.name: per_school.get(s.pk, 0) for s in schools}
            places = {s.name: s.locality for s in schools}
            groups = (
                drift.pool_small_groups(counts, places, params.min_count)
                if params.pool_small_schools
                else {s.name: [s.name] for s in schools}
            )
            named = {s.name: s for s in schools}
            for group, members in groups.items():
                members_ = [named[m] for m in members]
                group_params = params.for_schools([s.code for s in members_])
                current: Any = pd.DataFrame(_rows(members_, start, end, periods))
                if len(current) < params.min_count:  # edge nodes send aggregates, not rows
                    summed = _aggregated(members_, model, start, end, periods, edge_only=True)
                    if summed:
                        current = summed
                base_window, base_label = None, "the training data"
                if params.baseline == "seasonal":
                    base_window = drift.seasonal_baseline(start, end, periods)
                    base_label = "the same weeks of last year"
                elif params.baseline == "previous":
                    base_window = drift.previous_window(start, end, periods)
                    base_label = "the previous window"
                baseline = None
                if base_window is not None:
                    baseline = pd.DataFrame(_rows(members_, *base_window, periods))
                    if len(baseline) < params.min_count or isinstance(current, dict):
                        # raw rows older than the retention window are gone: their aggregates
                        baseline = _aggregated(members_, model, *base_window, periods)
                    if _count(baseline) < params.min_count:
                        baseline, base_label = None, "the training data (no baseline rows)"
                reports = self._check(current, baseline, reference, group_params)
                drifted = sorted({f for r in reports for f in r[1].drifted})
                status = (
                    "insufficient_data"
                    if all(r[1].status == "insufficient_data" for r in reports)
                    else "drift"
                    if drifted
                    else "no_drift"
                )
                context.log(
                    f"{group}: {status.replace('_', ' ')} ({_count(current)} predictions against "
                    f"{base_label})" + (f": {', '.join(drifted)}" if drifted else "")
                )
                for label, report in reports:
                    for f in report.features:
                        if not f.drifted:
                            continue
                        severity = (
                            "critical" if f.psi > 2.5 * group_params.psi_threshold else "warning"
                        )
                        for school in members_:
                            _, new = raise_alert(
                                district=district,
                                school=school,
                                monitor="drift",
                                cause=f.name if not label else f"{f.name} ({label})",
                                severity=severity,
                                message=f"{f.reason} against {base_label}; window "
                                f"{start:%d %b} – {end:%d %b %Y}"
                                + (f" in {group}" if group != school.name else "")
                                + ".",
                            )
                            alerts += new
                feature_rows = [
                    {"name": f.name, "psi": f.psi, "js": f.js, "drifted": f.drifted}
                    for _, r in reports
                    for f in r.features
                ]
                DriftCheck.objects.bulk_create(
                    DriftCheck(
                        school=school,
                        group=group,
                        checked_at=clock.now(),
                        window_start=start,
                        window_end=end,
                        baseline=base_label,
                        status=status,
                        features=feature_rows,
                        run_id=context.run_id,
                    )
                    for school in members_
                )
                results.append(
                    {
                        "group": group,
                        "schools": members,
                        "model": str(model),
                        "status": status,
                        "drifted": drifted,
                        "baseline": base_label,
                        "features": [
                            {"name": f.name, "psi": f.psi, "js": f.js, "drifted": f.drifted}
                            for _, r in reports
                            for f in r.features
                        ],
                    }
                )
        context.metric("groups_checked", len(results))
        context.metric("new_alerts", alerts)
        return {"report": {"window": [start.isoformat(), end.isoformat()], "results": results}}

    @staticmethod
    def _check(current: Any, baseline: Any, reference: dict, params: DriftParams) -> list:
        from edumlops.ml import drift

        if isinstance(current, dict) or isinstance(baseline, dict):  # histograms
            if not isinstance(current, dict):
                current = drift.histograms(reference, current)
            if baseline is not None and not isinstance(baseline, dict):
                baseline = drift.histograms(reference, baseline)
            cols = [c for c in reference if c in current and (baseline is None or c in baseline)]
            return [
                (
                    "",
                    drift.detect(
                        {c: reference[c] for c in cols},
                        {c: current[c] for c in cols},
                        baseline=None if baseline is None else {c: baseline[c] for c in cols},
                        min_count=params.min_count,
                        psi_threshold=params.psi_threshold,
                    ),
                )
            ]

        def one(cur: Any, base: Any) -> Any:
            if cur.empty:
                return drift.DriftReport("insufficient_data", 0, 0, [], {})
            cols = [c for c in reference if c in cur.columns]
            ref = {c: reference[c] for c in cols}
            return drift.detect(
                ref,
                cur[cols],
                baseline=None if base is None else base[cols],
                min_count=params.min_count,
                psi_threshold=params.psi_threshold,
                n_boot=200,
            )

        if params.by_grade and "grade" in current.columns and "grade" in reference:
            out = []
            for grade, part in current.groupby("grade"):
                base = None if baseline is None else baseline[baseline["grade"] == grade]
                out.append((f"grade {grade:g}", one(part, base)))
            return out
        return [("", one(current, baseline))]


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


class PerformanceMonitorBlock(Block):
    kind = "performance_monitor"
    category = "monitor"
    label = "Performance monitor"
    help = (
        "When the real outcomes arrive (e.g. end-of-term results uploaded as a dataset), scores "
        "them with each school's model and compares recall, precision and calibration with "
        "validation, per school and per sensitive group. Raises an alert where the model "
        "misses clearly more at-risk students than it did in validation."
    )
    icon = "target"
    Params = PerformanceParams
    inputs = (Port("outcomes", (PortType.DATASET,), "Outcomes (labelled rows)"),)
    outputs = (output("report", PortType.REPORT, "Performance report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        from edumlops.core import clock
        from edumlops.datasets.models import load_reference
        from edumlops.deployments.services import resolve
        from edumlops.ml import evaluation
        from edumlops.ml.training import binary_target
        from edumlops.monitoring.models import PerformanceCheck
        from edumlops.monitoring.services import raise_alert
        from workflows.blocks.data import pseudonym_key, version_for

        district = context.run.workflow.district
        version_for(context, inputs["outcomes"])
        frame, roles = load_reference(inputs["outcomes"], pseudonym_key())
        if not roles.label or not roles.school or roles.school not in frame:
            raise BlockError(
                "The outcomes need their label and school column marked: mark them on the "
                "dataset page."
            )
        schools = {s.name: s for s in district.schools.all()} | {
            s.code: s for s in district.schools.all()
        }
        results, alerts = [], 0
        for name, rows in frame.groupby(frame[roles.school].astype(str)):
            school = schools.get(name)
            deployment = resolve(school) if school else None
            if deployment is None:
                context.log(f"{name}: not a school of {district} with a model deployed; skipped")
                continue
            model = deployment.model_version
            limits = params.for_school(school.code)
            y = binary_target(rows[roles.label], roles.positive)
            if int(y.sum()) < params.min_positives:
                context.log(f"{name}: insufficient data ({int(y.sum())} at-risk students)")
                results.append({"school": name, "status": "insufficient_data"})
                continue
            proba = model.predict_proba(rows)
            seen = evaluation.evaluate(y, proba, threshold=model.threshold)
            expected = (model.validation or {}).get("metrics") or {}
            findings = []
            for metric, limit in (
                ("recall", limits.max_recall_drop),
                ("precision", limits.max_precision_drop),
            ):
                if seen.get(metric) is None or expected.get(metric) is None:
                    continue
                drop = expected[metric] - seen[metric]
                if drop > limit:
                    findings.append((metric, drop, seen[metric], expected[metric]))
            groups = []
            for attribute in [a for a in roles.sensitive if a in rows]:
                for value, part in rows.groupby(rows[attribute].astype(str)):
                    yg = binary_target(part[roles.label], roles.positive)
                    if int(yg.sum()) < params.min_positives:
                        continue
                    metrics = evaluation.evaluate(yg, model.predict_proba(part), model.threshold)
                    groups.append({"group": f"{attribute}={value}", "recall": metrics["recall"]})
                    base = expected.get("recall")
                    if base is not None and metrics["recall"] is not None:
                        drop = base - metrics["recall"]
                        if drop > limits.max_recall_drop:
                            findings.append(
                                (f"recall ({attribute}={value})", drop, metrics["recall"], base)
                            )
            for cause, drop, now, then in findings:
                _, new = raise_alert(
                    district=district,
                    school=school,
                    monitor="performance",
                    cause=cause,
                    severity="critical" if drop > 2 * limits.max_recall_drop else "warning",
                    message=f"{cause} {now:.3f} on {len(rows)} outcomes vs {then:.3f} in "
                    f"validation ({model}).",
                )
                alerts += new
            context.log(
                f"{name}: recall {seen['recall']:.3f}, precision "
                f"{(seen['precision'] or 0):.3f}, Brier {seen['brier']:.3f} on {len(rows)} rows"
                + (f"; {len(findings)} finding(s)" if findings else "")
            )
            PerformanceCheck.objects.create(
                school=school,
                checked_at=clock.now(),
                model_version=model,
                rows=len(rows),
                metrics={k: seen[k] for k in ("recall", "precision", "brier", "auc")},
                groups=groups,
                run_id=context.run_id,
            )
            results.append(
                {
                    "school": name,
                    "status": "degraded" if findings else "ok",
                    "metrics": {k: seen[k] for k in ("recall", "precision", "brier", "auc")},
                    "calibration": seen.get("calibration"),
                    "groups": groups,
                }
            )
        context.metric("new_alerts", alerts)
        return {"report": {"results": results}}


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
    school_thresholds: dict[str, dict[str, float]] = Field({}, description=SCHOOL_THRESHOLDS_HELP)


class DeviceLatencyMonitorBlock(Block):
    kind = "device_latency_monitor"
    category = "monitor"
    label = "Device latency monitor"
    help = (
        "Watches how fast predictions are answered, per school and hardware profile: an old "
        "laptop and a new server each have their own normal (the median p95 of the baseline "
        "days), and only a slowdown against that normal raises an alert."
    )
    icon = "cpu"
    Params = LatencyParams
    inputs = (Port("input", ANY, "Start", required=False),)
    outputs = (output("report", PortType.REPORT, "Latency report"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        import statistics

        from edumlops.core import clock
        from edumlops.monitoring.models import DailyAggregate
        from edumlops.monitoring.services import raise_alert

        district = context.run.workflow.district
        today = clock.today()
        window_start = today - dt.timedelta(days=params.window_days - 1)
        base_start = window_start - dt.timedelta(days=params.baseline_days)
        rows = DailyAggregate.objects.filter(
            school__district=district, day__gte=base_start, day__lte=today
        ).exclude(latency_p95_ms=None)
        series: dict[tuple[Any, str], dict[str, list[float]]] = {}
        for row in rows.select_related("school"):
            key = (row.school, row.device_profile or "unknown")
            part = "now" if row.day >= window_start else "normal"
            series.setdefault(key, {"now": [], "normal": []})[part].append(row.latency_p95_ms)
        results, alerts = [], 0
        for (school, profile), values in sorted(series.items(), key=lambda kv: kv[0][0].name):
            if len(values["normal"]) < 3 or not values["now"]:
                results.append(
                    {"school": school.name, "profile": profile, "status": "insufficient_data"}
                )
                continue
            normal = statistics.median(values["normal"])
            now = max(values["now"])
            ratio = now / normal if normal else 0.0
            max_ratio = params.for_school(school.code).max_ratio
            status = "slow" if ratio > max_ratio else "ok"
            if status == "slow":
                _, new = raise_alert(
                    district=district,
                    school=school,
                    monitor="latency",
                    cause=f"p95 latency on {profile}",
                    severity="critical" if ratio > 2 * max_ratio else "warning",
                    message=f"p95 {now:.1f} ms on {profile}, {ratio:.1f}x its normal "
                    f"{normal:.1f} ms (median of {len(values['normal'])} days).",
                )
                alerts += new
            context.log(f"{school.name} / {profile}: p95 {now:.1f} ms vs normal {normal:.1f} ms")
            results.append(
                {
                    "school": school.name,
                    "profile": profile,
                    "status": status,
                    "p95_ms": now,
                    "normal_ms": normal,
                    "ratio": round(ratio, 2),
                }
            )
        context.metric("new_alerts", alerts)
        return {"report": {"results": results}}
