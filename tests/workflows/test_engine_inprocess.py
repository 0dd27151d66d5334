"""Engine rules checked step by step in this process (no broker): email notifications, approval
timeouts, redelivered messages."""

from __future__ import annotations

import datetime as dt

from django.core import mail
from django.utils import timezone

from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import Notification, Run, StepRun


def _start(workflow, user, conf=None):
    # the first segment would go to Celery on commit; here the test runs the steps itself
    return engine.start_run(workflow, user=user, conf=conf)


def _steps(run):
    return {s.node_id: s for s in StepRun.objects.filter(run=run)}


def test_notify_emails_each_recipient_once_even_when_the_step_is_redelivered(
    make_workflow, platform_admin, staff, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    staff.email = "staff@district.example"
    staff.save()
    workflow = make_workflow(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node(
                    "tell", "notify", title="Model ready", message="{workflow}: {run}", email=True
                ),
            ],
            "edges": [edge("start", "start", "tell")],
        }
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(workflow, platform_admin)
    me = engine.worker_id()
    assert engine.execute_step(run.pk, "start", me=me) == "succeeded"
    assert engine.execute_step(run.pk, "tell", me=me) == "succeeded"
    assert engine.execute_step(run.pk, "tell", me=me) == "succeeded"  # redelivered: no-op
    assert [m.to for m in mail.outbox] == [["staff@district.example"]]
    assert mail.outbox[0].body == f"Test workflow: #{run.pk}"
    assert Notification.objects.get().emailed_at is not None
    assert _steps(run)["tell"].attempts == 1
    assert engine.settle(run.pk) == "succeeded"


def test_an_approval_that_times_out_rejects_the_run(
    make_workflow, platform_admin, django_capture_on_commit_callbacks
):
    workflow = make_workflow(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("ok", "approval_gate", timeout_hours=48),
                node("tell", "notify"),
            ],
            "edges": [edge("start", "start", "ok"), edge("ok", "approved", "tell")],
        }
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(workflow, platform_admin)
    me = engine.worker_id()
    engine.execute_step(run.pk, "start", me=me)
    assert engine.execute_step(run.pk, "ok", me=me) == "waiting_approval"
    assert engine.settle(run.pk) == "waiting_approval"
    assert engine.expire_approvals() == 0
    StepRun.objects.filter(run=run, node_id="ok").update(
        started_at=timezone.now() - dt.timedelta(hours=49)
    )
    assert engine.expire_approvals() == 1
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.reason) == ("rejected", "No decision within 48 hours")
    assert {k: s.status for k, s in _steps(run).items()} == {
        "start": "succeeded",
        "ok": "rejected",
        "tell": "skipped",
    }


def test_a_step_whose_input_is_not_done_waits_instead_of_running(
    make_workflow, platform_admin, django_capture_on_commit_callbacks
):
    workflow = make_workflow(
        {
            "nodes": [node("start", "manual_trigger"), node("tell", "notify")],
            "edges": [edge("start", "start", "tell")],
        }
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(workflow, platform_admin)
    # a message for a step that was not sent yet (its input is not done) does nothing
    assert engine.execute_step(run.pk, "tell", me=engine.worker_id()) == "queued"
    tell = _steps(run)["tell"]
    assert (tell.status, tell.attempts, tell.dispatched_at) == ("queued", 0, None)
    # the trigger's end sends it, in the same transaction
    assert engine.execute_step(run.pk, "start", me=engine.worker_id()) == "succeeded"
    assert _steps(run)["tell"].dispatched_at is not None


CHAIN = {
    "nodes": [
        node("start", "manual_trigger"),
        node("a", "wait", seconds=0),
        node("b", "wait", seconds=0),
        node("left", "notify", title="L"),
        node("right", "notify", title="R"),
    ],
    "edges": [
        edge("start", "start", "a"),
        edge("a", "done", "b"),
        edge("b", "done", "left"),
        edge("b", "done", "right"),
    ],
}


def test_a_task_goes_on_along_its_chain_and_sends_the_other_branches(
    make_workflow, platform_admin, staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(make_workflow(CHAIN), platform_admin)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        status = engine.execute_step(run.pk, "start", me="h:1:task", task_id="task", follow=True)
    assert status == "succeeded"
    steps = _steps(run)
    # one branch was taken by this task, the other sent as its own message
    assert [steps[n].status for n in ("start", "a", "b", "left")] == ["succeeded"] * 4
    assert steps["right"].status == "queued" and steps["right"].dispatched_at is not None
    assert len(sent) == 1
    assert {steps[n].claimed_by for n in ("a", "b", "left")} == {"h:1:task"}


def test_a_task_stops_following_after_its_time_and_sends_the_next_step(
    make_workflow, platform_admin, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(engine, "FOLLOW_SECONDS", 0)
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(make_workflow(CHAIN), platform_admin)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        engine.execute_step(run.pk, "start", me="h:1:task", task_id="task", follow=True)
    steps = _steps(run)
    assert steps["start"].status == "succeeded"
    assert steps["a"].status == "queued" and steps["a"].dispatched_at is not None
    assert len(sent) == 1
