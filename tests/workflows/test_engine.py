"""Runs on real Redis with a real worker process: parallel branches, gates, approval across a
worker restart, a worker killed mid-step, cancel."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.workflows.conftest import edge, node, wait_for
from workflows import engine
from workflows.models import Notification, Run

pytestmark = pytest.mark.services


def _run(run_id: int) -> Run:
    return Run.objects.get(pk=run_id)


def _steps(run_id: int) -> dict:
    return {s.node_id: s for s in _run(run_id).steps.all()}


def _ended(run_id: int, *statuses: str):
    return lambda: _run(run_id).status in statuses


def test_a_diamond_runs_both_branches_in_parallel_and_the_join_waits(
    worker, make_workflow, platform_admin, staff
):
    workflow = make_workflow(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("left", "wait", seconds=2),
                node("right", "wait", seconds=2),
                node("join", "notify", title="Both branches done"),
            ],
            "edges": [
                edge("start", "start", "left"),
                edge("start", "start", "right"),
                edge("left", "done", "join"),
                edge("right", "done", "join"),
            ],
        }
    )
    run = engine.start_run(workflow, user=platform_admin)
    wait_for(_ended(run.pk, "succeeded", "failed"), what="the run to end")
    assert _run(run.pk).status == "succeeded", worker.output()
    steps = _steps(run.pk)
    left, right, join = steps["left"], steps["right"], steps["join"]
    assert left.started_at < right.finished_at and right.started_at < left.finished_at
    assert join.started_at >= max(left.finished_at, right.finished_at)
    assert all(s.status == "succeeded" and s.attempts == 1 for s in steps.values())
    assert join.metrics == {"notified": 1.0}
    assert list(Notification.objects.values_list("user__username", "title")) == [
        ("staff", "Both branches done")
    ]


GATED = {
    "nodes": [
        node("start", "manual_trigger"),
        node("pause", "wait", seconds=0),
        node("check", "condition_gate", metric="recall", operator=">=", threshold=0.7),
        node("tell", "notify", title="Model passed"),
        node("after", "wait", seconds=0),
    ],
    "edges": [
        edge("start", "start", "pause"),
        edge("pause", "done", "check"),
        edge("check", "passed", "tell"),
        edge("tell", "done", "after"),
    ],
}


def test_a_failing_condition_gate_blocks_everything_downstream(
    worker, make_workflow, platform_admin, staff
):
    run = engine.start_run(
        make_workflow(GATED), user=platform_admin, conf={"metrics": {"recall": 0.6}}
    )
    wait_for(_ended(run.pk, "succeeded", "failed"), what="the run to end")
    run = _run(run.pk)
    reason = 'Stopped at "Check a number" (check): recall = 0.6 >= 0.7 does not hold'
    assert (run.status, run.reason) == ("failed", reason)
    steps = _steps(run.pk)
    assert steps["check"].status == "failed"
    for downstream in ("tell", "after"):
        assert (steps[downstream].status, steps[downstream].reason) == ("blocked", reason)
        assert steps[downstream].started_at is None and steps[downstream].attempts == 0
    assert not Notification.objects.exists()


def test_a_passing_condition_gate_lets_the_run_go_on(worker, make_workflow, platform_admin, staff):
    run = engine.start_run(
        make_workflow(GATED), user=platform_admin, conf={"metrics": {"recall": 0.82}}
    )
    wait_for(_ended(run.pk, "succeeded", "failed"), what="the run to end")
    assert _run(run.pk).status == "succeeded", worker.output()
    assert _steps(run.pk)["check"].logs[-1]["message"] == "Passed: recall = 0.82 >= 0.7"


APPROVAL = {
    "nodes": [
        node("start", "manual_trigger"),
        node("ok", "approval_gate", quorum=1, instructions="Check the bias report"),
        node("tell", "notify", recipients="owner", title="Approved"),
    ],
    "edges": [edge("start", "start", "ok"), edge("ok", "approved", "tell")],
}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_approval_pauses_survives_a_worker_restart_and_resumes(
    worker, make_workflow, platform_admin, staff, teacher_a
):
    run = engine.start_run(make_workflow(APPROVAL), user=platform_admin)
    wait_for(_ended(run.pk, "waiting_approval"), what="the approval pause")
    steps = _steps(run.pk)
    assert steps["ok"].status == "waiting_approval"
    assert steps["tell"].status == "queued"

    worker.stop()  # nothing of the paused run lives in the worker or the broker
    response = _api(teacher_a).post(f"/api/runs/{run.pk}/approve/", {"comment": "fine"})
    assert response.status_code == 404  # a teacher does not even see the district's runs

    response = _api(staff).post(
        f"/api/runs/{run.pk}/approve/", {"comment": "Bias report checked"}, format="json"
    )
    assert response.status_code == 200, response.content
    worker.start()
    wait_for(_ended(run.pk, "succeeded", "failed"), what="the run to complete")
    run = _run(run.pk)
    assert run.status == "succeeded", worker.output()
    steps = _steps(run.pk)
    assert steps["ok"].outputs == {"approved": {"approvers": ["staff"]}}
    assert list(run.approvals.values_list("user__username", "decision", "comment")) == [
        ("staff", "approve", "Bias report checked")
    ]
    assert Notification.objects.filter(user=platform_admin, title="Approved").count() == 1


def test_a_rejection_ends_the_run_rejected(worker, make_workflow, platform_admin, staff):
    run = engine.start_run(make_workflow(APPROVAL), user=platform_admin)
    wait_for(_ended(run.pk, "waiting_approval"), what="the approval pause")
    response = _api(staff).post(
        f"/api/runs/{run.pk}/reject/", {"comment": "Recall too low for EL students"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "rejected"
    assert body["reason"] == 'Rejected by staff at "ok": Recall too low for EL students'
    steps = {s["node_id"]: s["status"] for s in body["steps"]}
    assert steps == {"start": "succeeded", "ok": "rejected", "tell": "skipped"}
    # staff heard that a decision was needed; the skipped "tell" step told no one anything
    assert Notification.objects.filter(user=staff, link="/approvals/").count() == 1
    assert not Notification.objects.exclude(link="/approvals/").exists()


def test_a_quorum_waits_for_enough_different_approvers(
    worker, make_workflow, platform_admin, staff, make_user, district
):
    second = make_user("second_staff", "district_staff", district=district)
    graph = {
        **APPROVAL,
        "nodes": [
            *APPROVAL["nodes"][:1],
            node("ok", "approval_gate", quorum=2),
            APPROVAL["nodes"][2],
        ],
    }
    run = engine.start_run(make_workflow(graph), user=platform_admin)
    wait_for(_ended(run.pk, "waiting_approval"), what="the approval pause")
    assert _api(staff).post(f"/api/runs/{run.pk}/approve/", {"comment": "ok"}).status_code == 200
    again = _api(staff).post(f"/api/runs/{run.pk}/approve/", {"comment": "ok again"})
    assert again.status_code == 400
    assert again.json()["detail"] == "You have already decided on this step."
    assert _run(run.pk).status == "waiting_approval"
    assert _api(second).post(f"/api/runs/{run.pk}/approve/", {"comment": "ok"}).status_code == 200
    wait_for(_ended(run.pk, "succeeded", "failed"), what="the run to complete")
    assert _run(run.pk).status == "succeeded"


KILLABLE = {
    "nodes": [
        node("start", "manual_trigger"),
        node("slow", "wait", seconds=4),
        node("tell", "notify", title="Done once"),
    ],
    "edges": [edge("start", "start", "slow"), edge("slow", "done", "tell")],
}


def test_a_worker_killed_mid_step_reruns_that_step_once_after_a_restart(
    worker, make_workflow, platform_admin, staff
):
    run = engine.start_run(make_workflow(KILLABLE), user=platform_admin)
    wait_for(lambda: _steps(run.pk)["slow"].status == "running", what="the slow step to start")
    worker.kill()
    assert _steps(run.pk)["slow"].status == "running"
    worker.start()
    wait_for(_ended(run.pk, "succeeded", "failed"), timeout=90, what="the run to complete")
    assert _run(run.pk).status == "succeeded", worker.output()
    steps = _steps(run.pk)
    assert steps["start"].attempts == 1
    assert steps["slow"].attempts == 2
    assert steps["tell"].attempts == 1
    assert Notification.objects.filter(title="Done once").count() == 1


def test_cancel_stops_queued_steps_and_ends_the_run_cancelled(
    worker, make_workflow, platform_admin, staff
):
    run = engine.start_run(make_workflow(KILLABLE), user=platform_admin)
    wait_for(lambda: _steps(run.pk)["slow"].status == "running", what="the slow step to start")
    response = _api(platform_admin).post(f"/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    wait_for(lambda: _steps(run.pk)["slow"].status == "succeeded", what="the running step to end")
    steps = _steps(run.pk)
    assert steps["tell"].status == "cancelled"
    assert _run(run.pk).status == "cancelled"
    assert not Notification.objects.exists()
