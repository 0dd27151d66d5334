"""Daily aggregates: built from the recorded predictions (then the raw rows can go after the
retention window) and received from edge nodes in idempotent batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from edumlops.deployments.models import Prediction
from edumlops.ml import drift
from edumlops.monitoring.models import DailyAggregate, TelemetryBatch
from edumlops.schools.models import School


def aggregate_day(school: School, day: dt.date) -> list[DailyAggregate]:
    """(Re)build the central aggregates of one school and day from its recorded predictions."""
    rows = list(
        Prediction.objects.filter(school=school, created_at__date=day)
        .select_related("model_version")
        .values(
            "model_version", "features", "probability", "band", "latency_ms", "unseen_categories"
        )
    )
    by_model: dict[int, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model_version"], []).append(row)
    made = []
    from edumlops.registry.models import ModelVersion

    for model_id, items in by_model.items():
        model = ModelVersion.objects.get(pk=model_id)
        references = {
            k: drift.FeatureReference.from_dict(v) for k, v in (model.drift_reference or {}).items()
        }
        histograms = {}
        for name, ref in references.items():
            if name == "__prediction__":
                values = [i["probability"] for i in items]
            else:
                values = [i["features"].get(name) for i in items]
            histograms[name] = ref.histogram(values).tolist()
        bands: dict[str, int] = {}
        for i in items:
            bands[i["band"]] = bands.get(i["band"], 0) + 1
        unseen: dict[str, int] = {}
        for i in items:
            for name in i["unseen_categories"] or []:
                unseen[name] = unseen.get(name, 0) + 1
        latencies = np.asarray([i["latency_ms"] for i in items], dtype=float)
        aggregate, _ = DailyAggregate.objects.update_or_create(
            school=school,
            day=day,
            model_version=model,
            source="central",
            device_profile="server",
            defaults={
                "count": len(items),
                "bands": bands,
                "histograms": histograms,
                "latency_p50_ms": float(np.percentile(latencies, 50)),
                "latency_p95_ms": float(np.percentile(latencies, 95)),
                "unseen_categories": unseen,
            },
        )
        made.append(aggregate)
    return made


def unseen_categories(school: School, since: dt.date) -> dict[str, int]:
    """Since `since`: how many predictions of the school held a category the model never saw
    in training, per feature — from the daily aggregates and, for days whose raw rows are
    newer than their aggregate, from the recorded predictions (the larger count per day)."""
    per_day: dict[tuple[dt.date, str], int] = {}
    for day, counts in DailyAggregate.objects.filter(school=school, day__gte=since).values_list(
        "day", "unseen_categories"
    ):
        for name, n in (counts or {}).items():
            per_day[day, name] = per_day.get((day, name), 0) + int(n)
    raw: dict[tuple[dt.date, str], int] = {}
    rows = (
        Prediction.objects.filter(school=school, created_at__date__gte=since)
        .exclude(unseen_categories=[])
        .values_list("created_at__date", "unseen_categories")
    )
    for day, names in rows:
        for name in names:
            raw[day, name] = raw.get((day, name), 0) + 1
    totals: dict[str, int] = {}
    for key in {*per_day, *raw}:
        totals[key[1]] = totals.get(key[1], 0) + max(per_day.get(key, 0), raw.get(key, 0))
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def aggregate_and_prune(today: dt.date | None = None) -> dict[str, int]:
    """Aggregate yesterday and today, then delete raw predictions older than the retention
    window, aggregating their days first so nothing is lost."""
    today = today or timezone.localdate()
    keep = int(getattr(settings, "PREDICTION_RETENTION_DAYS", 30))
    cutoff = today - dt.timedelta(days=keep)
    old_days = set(
        Prediction.objects.filter(created_at__date__lt=cutoff).values_list(
            "school_id", "created_at__date"
        )
    )
    recent = set(
        Prediction.objects.filter(created_at__date__gte=today - dt.timedelta(days=1)).values_list(
            "school_id", "created_at__date"
        )
    )
    schools = {s.pk: s for s in School.objects.filter(pk__in={s for s, _ in old_days | recent})}
    for school_id, day in sorted(old_days | recent):
        aggregate_day(schools[school_id], day)
    deleted, _ = Prediction.objects.filter(created_at__date__lt=cutoff).delete()
    return {"aggregated_days": len(old_days | recent), "deleted_rows": deleted}


FIELDS = {"day", "model_version", "count", "bands", "histograms"}
MAX_TOTAL = 2**31 - 1  # the largest count a daily aggregate holds


class TelemetryError(ValueError):
    """A batch refused; `field` names the value at fault (dotted, e.g. aggregates.0.count)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _checked(aggregates: Any) -> list[dict[str, Any]]:
    """Each aggregate read through AggregateIn, or a TelemetryError naming the first bad one."""
    from edumlops.monitoring.serializers import AggregateIn

    if not isinstance(aggregates, list) or not aggregates:
        raise TelemetryError('"aggregates" must be a non-empty list.', "aggregates")
    out = []
    for i, item in enumerate(aggregates):
        missing = FIELDS - set(item) if isinstance(item, dict) else FIELDS
        if missing:
            raise TelemetryError(
                f"Aggregate {i} lacks {', '.join(sorted(missing))}.", f"aggregates.{i}"
            )
        checked = AggregateIn(data=item)
        if not checked.is_valid():
            field, problems = next(iter(checked.errors.items()))
            problem = problems[0] if isinstance(problems, list) else problems
            if isinstance(problem, dict):  # a nested value: name its first key
                key, inner = next(iter(problem.items()))
                field, problem = f"{field}.{key}", inner[0] if isinstance(inner, list) else inner
            raise TelemetryError(f"Aggregate {i}: {field}: {problem}", f"aggregates.{i}.{field}")
        out.append(checked.validated_data)
    return out


def receive(district: Any, key: str, school: School, aggregates: list[Any]) -> tuple[int, bool]:
    """Add a batch of edge aggregates once. Returns (aggregates added, duplicate?)."""
    from edumlops.registry.models import ModelVersion

    key = key.strip() if isinstance(key, str) else ""
    if not key or len(key) > 120:
        raise TelemetryError(
            "Give each batch an idempotency_key (1 to 120 characters).", "idempotency_key"
        )
    aggregates = _checked(aggregates)
    try:
        with transaction.atomic():
            TelemetryBatch.objects.create(key=key, district=district, aggregates=len(aggregates))
            for i, item in enumerate(aggregates):
                day = item["day"]
                model = ModelVersion.objects.filter(
                    pk=item["model_version"], district=district
                ).first()
                if model is None:
                    raise TelemetryError(
                        f"Aggregate {i}: no model version {item['model_version']} in {district}.",
                        f"aggregates.{i}.model_version",
                    )
                source = f"edge:{item.get('node') or 'unknown'}"[:80]
                profile = str(item.get("device_profile", ""))[:80]
                row, created = DailyAggregate.objects.select_for_update().get_or_create(
                    school=school,
                    day=day,
                    model_version=model,
                    source=source,
                    device_profile=profile,
                    defaults={
                        "count": item["count"],
                        "bands": item["bands"],
                        "histograms": item["histograms"],
                        "latency_p50_ms": item.get("latency_p50_ms"),
                        "latency_p95_ms": item.get("latency_p95_ms"),
                    },
                )
                if not created:  # a later batch of the same day: add it up
                    if row.count + item["count"] > MAX_TOTAL:
                        raise TelemetryError(
                            f"Aggregate {i}: the day's count would pass {MAX_TOTAL}.",
                            f"aggregates.{i}.count",
                        )
                    row.count = F("count") + item["count"]
                    row.bands = _add(row.bands, item["bands"])
                    row.histograms = {
                        k: _add_lists(row.histograms.get(k, []), item["histograms"].get(k, []))
                        for k in {*row.histograms, *item["histograms"]}
                    }
                    row.save()
    except IntegrityError:
        return 0, True  # the key was used before (or by a parallel resend): counted once
    return len(aggregates), False


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


def _add_lists(a: list, b: list) -> list:
    if not a or not b:
        return list(a or b)
    if len(a) != len(b):
        raise TelemetryError("Histograms of one feature must use the same bins.")
    return [x + y for x, y in zip(a, b, strict=True)]
