"""The approvals inbox: district staff see what waits for them with the model's metrics, bias
outcome and pilot, and decide with a comment; teachers cannot approve."""

from __future__ import annotations

import pytest
from django.test import Client

from edumlops.audit.models import AuditRecord
from tests.deployments.test_rollout_engine import rollout_graph, save
from tests.registry.conftest import run_here, steps_of
from workflows import engine

pytestmark = pytest.mark.django_db


def test_staff_decide_in_the_inbox_and_teachers_cannot(
    two_models, district, school_a, staff, teacher_a
):
    v1, v2 = two_models
    v2.validation = {"threshold": 0.5, "metrics": {"auc": 0.81, "recall": 0.7}, "test_rows": 900}
    v2.bias_outcome = "pass"
    v2.bias_report = {"summary": "All 4 check(s) pass."}
    v2.save()
    v2.set_alias("challenger")
    run = engine.start_run(save(district, staff, rollout_graph(school_a)), user=staff)
    assert run_here(run) == "waiting_approval"

    client = Client()
    client.force_login(staff)
    page = client.get("/approvals/").content.decode()
    assert "Pilot rollout" in page and f"run {run.pk}" in page
    assert "AUC 0.810" in page and "All 4 check(s) pass." in page
    assert "0 of 1 approval" in page

    empty = client.post(
        "/approvals/", {"run": run.pk, "node_id": "pilot", "decision": "approve", "comment": ""}
    )
    assert empty.status_code == 302 and steps_of(run)["pilot"].status == "waiting_approval"
    client.post(
        "/approvals/",
        {"run": run.pk, "node_id": "pilot", "decision": "approve", "comment": "go ahead"},
    )
    assert AuditRecord.objects.filter(action="approval", reason="go ahead").exists()
    assert run_here(run) == "waiting_approval"  # now at the promotion
    page = client.get("/approvals/").content.decode()
    assert "Promote to district" in page and "Pilot #" in page

    teacher = Client()
    teacher.force_login(teacher_a)
    assert teacher.get("/approvals/").status_code == 403
    response = teacher.post(
        "/approvals/", {"run": run.pk, "node_id": "promote", "decision": "approve", "comment": "x"}
    )
    assert response.status_code == 403
    assert steps_of(run)["promote"].status == "waiting_approval"
