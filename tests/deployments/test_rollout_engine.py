"""Pilot → promote → rollback through the engine: real Redis, a real Celery worker process, the
registry's challenger alias, approvals by district staff between the steps — and at each pause
every school resolves the version it should. Freeze windows and the minimum pilot days are
checked with the platform clock moved."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.schools.models import CalendarPeriod
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node, wait_for
from workflows import engine, reconciler
from workflows.compiler import validate
from workflows.models import Notification, Run, StepRun, Workflow


def rollout_graph(school, **promote):
    return {
        "nodes": [
            node("start", "manual_trigger"),
            node("freeze", "freeze_window"),
            node("model", "registered_model", model_name="at-risk", alias="challenger"),
            node("pilot", "pilot_rollout", selection="names", schools=[school.name]),
            node(
                "promote",
                "promote_to_district",
                **{"min_days_in_pilot": 0, "require_pilot_outcomes": False, **promote},
            ),
            node("review", "approval_gate"),
            node("back", "rollback", reason="review found a problem"),
        ],
        "edges": [
            edge("start", "start", "freeze"),
            edge("freeze", "clear", "model"),
            edge("model", "model", "pilot", "model"),
            edge("pilot", "deployment", "promote", "deployment"),
            edge("promote", "deployment", "review"),
            edge("promote", "deployment", "back", "deployment"),
            edge("review", "approved", "back", "after"),
        ],
    }


def save(district, owner, graph):
    assert validate(graph) == []
    name = f"Roll out {Workflow.objects.filter(district=district).count() + 1}"
    workflow = Workflow.objects.create(district=district, name=name, owner=owner)
    workflow.save_version(graph, "rollout", owner)
    return workflow


def resolved(*schools):
    return [services.resolve(s).model_version.version for s in schools]


@pytest.mark.django_db(transaction=True)
def test_pilot_promote_rollback_through_the_engine(
    worker, two_models, district, school_a, school_b, staff
):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff, reason="last year's model")
    v2.set_alias("challenger", actor=staff)
    run = engine.start_run(save(district, staff, rollout_graph(school_a)), user=staff)

    def step_is(node_id, status):
        return lambda: StepRun.objects.get(run=run, node_id=node_id).status == status

    wait_for(step_is("pilot", "waiting_approval"), timeout=120, what="the pilot to ask")
    assert resolved(school_a, school_b) == [v1.version, v1.version]
    # the step says it waits first, then staff are told (the next statement of the engine)
    wait_for(
        lambda: Notification.objects.filter(user=staff, link="/approvals/").exists(),
        timeout=30,
        what="staff to be told",
    )

    engine.approve(run, staff, "pilot at A", "pilot")
    wait_for(step_is("promote", "waiting_approval"), timeout=120, what="promotion to ask")
    assert resolved(school_a, school_b) == [v2.version, v1.version]

    engine.approve(run, staff, "pilot went well", "promote")
    wait_for(step_is("review", "waiting_approval"), timeout=120, what="the review gate")
    assert resolved(school_a, school_b) == [v2.version, v2.version]

    engine.approve(run, staff, "roll it back", "review")
    wait_for(lambda: Run.objects.get(pk=run.pk).finished, timeout=120, what="the run to end")
    assert Run.objects.get(pk=run.pk).status == "succeeded"
    assert resolved(school_a, school_b) == [v1.version, v1.version]
    statuses = list(Deployment.objects.order_by("id").values_list("status", flat=True))
    assert statuses == ["superseded", "promoted", "rolled_back", "active"]


@pytest.mark.django_db
def test_freeze_window_and_minimum_pilot_days_follow_the_clock(
    two_models, district, school_a, staff, monkeypatch
):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    v2.set_alias("challenger")
    today = dt.date.today()
    CalendarPeriod.objects.create(
        district=district,
        kind="testing",
        name="State tests",
        start=today + dt.timedelta(days=30),
        end=today + dt.timedelta(days=34),
    )
    graph = rollout_graph(school_a, min_days_in_pilot=7, approval_required=False)
    graph["nodes"][3]["params"]["approval_required"] = False
    workflow = save(district, staff, graph)

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", "31")  # inside the testing week
    run = engine.start_run(workflow, user=staff)
    assert run_here(run) == "failed"
    assert "frozen: State tests" in steps_of(run)["freeze"].reason
    assert not Deployment.objects.filter(scope="pilot").exists()

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", "0")
    run = engine.start_run(workflow, user=staff)
    assert run_here(run) == "running"  # the promotion waits for its days, holding no worker
    steps = steps_of(run)
    assert any("No approval was required" in line["message"] for line in steps["pilot"].logs)
    assert steps["promote"].status == "waiting"
    assert "has run 0.0 of its 7 days" in steps["promote"].reason
    assert steps["promote"].wake_at is not None
    assert services.resolve(school_a).model_version == v2  # the pilot stands
    assert reconciler.sweep()["woken"] == 0  # not due yet

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", "8")  # a week later the check is due
    assert reconciler.sweep(now=timezone.now() + dt.timedelta(hours=1))["woken"] == 1
    assert run_here(Run.objects.get(pk=run.pk)) == "waiting_approval"  # at the review gate
    assert steps_of(run)["promote"].status == "succeeded"
    assert services.resolve(school_a).model_version == v2
    assert services.district_deployment(district).model_version == v2
