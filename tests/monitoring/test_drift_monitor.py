"""The drift monitor block on recorded predictions (real PostgreSQL): a school whose attendance
is recorded lower raises one alert naming the feature, a steady school raises none, a tiny
school is "insufficient data", a second check refreshes rather than repeats the alert, and
alerts are acknowledged and resolved with a comment in the audit trail."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.deployments import services
from edumlops.deployments.models import Prediction
from edumlops.ml.synth import generate_district
from edumlops.monitoring.models import Alert
from tests.conftest import _school
from tests.deployments.conftest import make_model
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import node
from workflows import engine
from workflows.compiler import validate
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def students(n, model, seed):
    """n rows drawn from a large district (few students twice), like the training rows."""
    frame = generate_district(30 * n, seed=seed).sample(n, random_state=seed)
    columns = model.feature_spec().columns
    return [
        {k: (None if v != v else v) for k, v in row.items()}
        for row in frame[columns].to_dict("records")
    ]


def record(deployment, school, rows):
    Prediction.objects.bulk_create(
        Prediction(
            school=school,
            deployment=deployment,
            model_version=deployment.model_version,
            features=row,
            probability=0.3,
            band="low",
            latency_ms=1.0,
        )
        for row in rows
    )


def monitor(district, owner, **params):
    graph = {
        "nodes": [node("start", "manual_trigger"), node("drift", "drift_monitor", **params)],
        "edges": [
            {"source": "start", "source_port": "start", "target": "drift", "target_port": "input"}
        ],
    }
    assert validate(graph) == []
    workflow, _ = Workflow.objects.get_or_create(district=district, name="Drift", owner=owner)
    workflow.save_version(graph, "monitor", owner)
    run = engine.start_run(workflow, user=owner)
    assert run_here(run) == "succeeded", steps_of(run)["drift"].reason
    return steps_of(run)["drift"]


def test_drift_monitor_alerts_the_school_and_names_the_feature(
    ml_stores,
    district,
    school_a,
    school_b,
    staff,
    teacher_b,
):
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district", user=staff)
    tiny = _school(district, "tiny", "Tiny Rural School")
    lower = students(300, model, seed=3)
    for row in lower:
        if row["attendance_rate"] is not None:
            row["attendance_rate"] = max(0.0, row["attendance_rate"] - 0.15)
    record(deployment, school_a, lower)
    record(deployment, school_b, students(300, model, seed=4))
    record(deployment, tiny, students(12, model, seed=5))

    step = monitor(district, staff, baseline="training", pool_small_schools=False)
    alerts = Alert.objects.filter(status="open")
    assert [(a.school, a.cause) for a in alerts] == [(school_a, "attendance_rate")]
    assert "against the training data" in alerts[0].message
    logs = " ".join(line["message"] for line in step.logs)
    assert f"{school_b.name}: no drift" in logs and "Tiny Rural School: insufficient data" in logs
    report = {r["group"]: r for r in step.outputs["report"]["results"]}
    assert report["Tiny Rural School"]["status"] == "insufficient_data"

    monitor(district, staff, baseline="training", pool_small_schools=False)
    assert Alert.objects.count() == 1  # the same cause refreshes the open alert

    client = APIClient()
    client.force_authenticate(teacher_b)
    alert = Alert.objects.get()
    assert client.post(f"/api/alerts/{alert.pk}/resolve/", {"comment": "x"}).status_code == 404
    client.force_authenticate(staff)
    assert client.post(f"/api/alerts/{alert.pk}/resolve/", {"comment": ""}).status_code == 400
    done = client.post(f"/api/alerts/{alert.pk}/resolve/", {"comment": "new register system"})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    decision = AuditRecord.objects.get(action="alert_decision")
    assert decision.reason == "new register system" and decision.after == {"status": "resolved"}


def test_grades_are_compared_within_grade(ml_stores, district, school_a, staff):
    """Older students attend a little less. A year on, the same cohort is one grade older: overall
    attendance moves, within each grade it does not."""
    import datetime as dt

    import numpy as np
    from django.utils import timezone

    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district", user=staff)
    rng = np.random.default_rng(0)

    def cohort(shift, seed):
        rows = students(600, model, seed=seed)
        for row in rows:
            row["grade"] = int(rng.integers(6, 12)) + shift
            row["attendance_rate"] = round(
                0.97 - 0.03 * (row["grade"] - 6) + rng.normal(0, 0.02), 3
            )
        return rows

    record(deployment, school_a, cohort(0, seed=7))  # the previous window
    Prediction.objects.update(created_at=timezone.now() - dt.timedelta(days=20))
    record(deployment, school_a, cohort(1, seed=8))  # now: one grade older

    def drifted(step):
        results = step.outputs["report"]["results"]
        return {f["name"] for r in results for f in r["features"] if f["drifted"]}

    naive = monitor(district, staff, baseline="previous", by_grade=False, min_count=30)
    assert {"attendance_rate", "grade"} <= drifted(naive)
    Alert.objects.all().delete()
    within = monitor(district, staff, baseline="previous", by_grade=True, min_count=30)
    assert "attendance_rate" not in drifted(within), within.logs


def test_edge_aggregates_are_monitored_like_rows(ml_stores, district, school_a, staff):
    """An edge school sends only daily histograms: drift is measured on them."""
    from django.utils import timezone

    from edumlops.ml import drift
    from edumlops.monitoring.models import DailyAggregate

    model = make_model(district, seed=0)
    services.roll_out(model, scope="district", user=staff)
    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    rows = students(300, model, seed=3)
    for row in rows:
        if row["attendance_rate"] is not None:
            row["attendance_rate"] = max(0.0, row["attendance_rate"] - 0.15)
    import pandas as pd

    frame = pd.DataFrame(rows).assign(__prediction__=0.3)
    DailyAggregate.objects.create(
        school=school_a, day=timezone.localdate(), model_version=model, source="edge:n1",
        device_profile="laptop", count=300, bands={"low": 300},
        histograms=drift.histograms(reference, frame),
    )  # fmt: skip
    step = monitor(district, staff, baseline="training", pool_small_schools=False)
    assert [(a.school, a.cause) for a in Alert.objects.all()] == [(school_a, "attendance_rate")]
    assert "300 predictions" in " ".join(line["message"] for line in step.logs)
