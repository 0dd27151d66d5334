"""Telemetry: daily aggregates built from recorded predictions on the model's reference bins,
raw rows deleted after the retention window with their days kept as aggregates, and edge batches
counted once however often they are sent."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from edumlops.deployments import services, tokens
from edumlops.deployments.models import Prediction
from edumlops.monitoring.models import DailyAggregate
from edumlops.monitoring.telemetry import aggregate_and_prune
from tests.deployments.conftest import make_model, rows_for
from tests.monitoring.test_drift_monitor import record

pytestmark = pytest.mark.django_db


def test_old_rows_become_aggregates_and_go(ml_stores, district, school_a, staff, settings):
    settings.PREDICTION_RETENTION_DAYS = 30
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district", user=staff)
    record(deployment, school_a, rows_for(40, seed=1))
    old = timezone.now() - dt.timedelta(days=45)
    Prediction.objects.update(created_at=old)
    record(deployment, school_a, rows_for(10, seed=2))  # today

    result = aggregate_and_prune()
    assert result["deleted_rows"] == 40 and Prediction.objects.count() == 10
    days = {a.day: a for a in DailyAggregate.objects.filter(school=school_a)}
    assert days[timezone.localdate(old)].count == 40
    aggregate = days[timezone.localdate()]
    assert aggregate.count == 10 and aggregate.bands == {"low": 10}
    assert sum(aggregate.histograms["attendance_rate"]) == 10
    bins = len(model.drift_reference["attendance_rate"]["counts"])
    assert len(aggregate.histograms["attendance_rate"]) == bins


def test_an_edge_batch_counts_once(ml_stores, district, school_a, school_b, staff):
    model = make_model(district, seed=0)
    _, key = tokens.create(district, "edge A", staff, school_a)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    bins = len(model.drift_reference["attendance_rate"]["counts"])
    batch = {
        "idempotency_key": "node-a-2026-11-20-1",
        "school": school_a.pk,
        "aggregates": [
            {
                "day": "2026-11-20",
                "model_version": model.pk,
                "node": "a1",
                "device_profile": "old laptop",
                "count": 7,
                "bands": {"low": 5, "high": 2},
                "histograms": {"attendance_rate": [1] * 7 + [0] * (bins - 7)},
                "latency_p50_ms": 4.0,
                "latency_p95_ms": 9.0,
            }
        ],
    }
    first = client.post("/api/telemetry/", batch, format="json")
    assert first.status_code == 201 and first.json() == {"added": 1, "duplicate": False}
    again = client.post("/api/telemetry/", batch, format="json")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert DailyAggregate.objects.get().count == 7

    later = {**batch, "idempotency_key": "node-a-2026-11-20-2"}
    assert client.post("/api/telemetry/", later, format="json").status_code == 201
    row = DailyAggregate.objects.get()
    assert row.count == 14 and row.bands == {"low": 10, "high": 4}
    assert sum(row.histograms["attendance_rate"]) == 14

    bad = {**batch, "idempotency_key": "k3", "aggregates": [{"day": "2026-11-20"}]}
    response = client.post("/api/telemetry/", bad, format="json")
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {
        "aggregates.0.model_version",
        "aggregates.0.count",
        "aggregates.0.bands",
        "aggregates.0.histograms",
    }
    other = {**batch, "idempotency_key": "k4", "school": school_b.pk}
    assert client.post("/api/telemetry/", other, format="json").status_code == 403
    assert DailyAggregate.objects.get().count == 14
