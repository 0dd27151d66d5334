"""An automated intervention: a drift alert starts the workflow with 'Start on an alert', which
rolls back the version answering for the alerted school; the rollback names the alert in the
audit trail, and the same alert never starts the workflow twice."""

from __future__ import annotations

import pytest

from edumlops.audit.models import AuditRecord
from edumlops.deployments import services
from edumlops.monitoring.models import Alert
from edumlops.monitoring.services import raise_alert
from tests.deployments.conftest import make_model
from tests.monitoring.test_drift_monitor import monitor, record, students
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node
from workflows.compiler import validate
from workflows.models import Run, Workflow

pytestmark = pytest.mark.django_db


def intervention(district, owner):
    graph = {
        "nodes": [
            node("alert", "on_alert_trigger", monitor="drift", min_severity="warning"),
            node("which", "alerted_deployment"),
            node("back", "rollback", reason="automated: drift at a school"),
        ],
        "edges": [
            edge("alert", "start", "which", "start"),
            edge("which", "deployment", "back", "deployment"),
        ],
    }
    assert validate(graph) == []
    workflow = Workflow.objects.create(district=district, name="Roll back on drift", owner=owner)
    workflow.save_version(graph, "intervention", owner)
    return workflow


def test_a_drift_alert_rolls_back_and_the_audit_names_it(
    ml_stores, district, school_a, staff, django_capture_on_commit_callbacks
):
    v1, v2 = make_model(district, seed=0), make_model(district, seed=1)
    services.roll_out(v1, scope="district", user=staff)
    current = services.roll_out(v2, scope="district", user=staff)
    workflow = intervention(district, staff)
    rows = students(300, v2, seed=3)
    for row in rows:
        if row["attendance_rate"] is not None:
            row["attendance_rate"] = max(0.0, row["attendance_rate"] - 0.15)
    record(current, school_a, rows)

    with django_capture_on_commit_callbacks(execute=True):
        monitor(district, staff, baseline="training", pool_small_schools=False)
    alert = Alert.objects.get(school=school_a)
    run = Run.objects.get(workflow=workflow)
    assert run.conf["alert"] == alert.pk
    assert run_here(run) == "succeeded", {n: s.reason for n, s in steps_of(run).items()}
    assert services.resolve(school_a).model_version == v1
    rollback = AuditRecord.objects.get(action="rollback")
    assert f"alert {alert.pk}" in rollback.reason and rollback.after["version"] == v1.version

    with django_capture_on_commit_callbacks(execute=True):  # the same cause again: no new run
        raise_alert(
            district=district, school=school_a, monitor="drift", cause=alert.cause,
            severity="critical", message="again",
        )  # fmt: skip
    assert Run.objects.filter(workflow=workflow).count() == 1

    from django.test import Client

    client = Client()
    client.force_login(staff)
    page = client.get("/alerts/").content.decode()
    assert "Started “Roll back on drift”" in page and f"run {run.pk}" in page
