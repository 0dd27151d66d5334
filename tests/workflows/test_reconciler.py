"""The reconciler's rules, one sweep at a time in this process: re-send a lost message, take over
a step whose worker is gone, wake a waiting step, give up with a reason, repair a stalled run,
and let one process sweep at a time."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
from django.utils import timezone

from tests.workflows.conftest import edge, node
from workflows import engine, reconciler
from workflows.models import Run, StepRun

GRAPH = {
    "nodes": [node("start", "manual_trigger"), node("tell", "notify", title="Done")],
    "edges": [edge("start", "start", "tell")],
}


@pytest.fixture
def run(make_workflow, platform_admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return engine.start_run(make_workflow(GRAPH), user=platform_admin)


def _step(run, node_id="start") -> StepRun:
    return StepRun.objects.get(run=run, node_id=node_id)


def _later(seconds: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lost_message_is_sent_again_with_a_growing_grace(run, django_capture_on_commit_callbacks):
    assert _step(run).dispatches == 1
    assert reconciler.sweep()["resent"] == 0  # just sent: its message may still be on its way
    with django_capture_on_commit_callbacks() as sent:
        assert reconciler.sweep(now=_later(11))["resent"] == 1
    assert len(sent) == 1
    assert _step(run).dispatches == 2
    # the next re-send waits twice as long
    assert reconciler.sweep(now=_later(11 + 15))["resent"] == 0
    assert reconciler.sweep(now=_later(11 + 21))["resent"] == 1


def test_a_step_whose_worker_went_silent_is_taken_over_and_runs_once_more(run):
    stale = timezone.now() - dt.timedelta(seconds=engine.lease_seconds() + 5)
    StepRun.objects.filter(pk=_step(run).pk).update(
        status="running", claimed_by="elsewhere:1:t", heartbeat_at=stale, attempts=1
    )
    assert reconciler.sweep()["taken_over"] == 1
    step = _step(run)
    assert (step.status, step.claimed_by) == ("queued", "")
    assert "Taken over: elsewhere:1 stopped" in step.logs[-1]["message"]
    assert engine.execute_step(run.pk, "start", me=engine.worker_id()) == "succeeded"
    assert _step(run).attempts == 2
    assert reconciler.sweep()["taken_over"] == 0


def test_a_step_of_a_cancelled_run_whose_worker_died_is_not_run_again(run, platform_admin):
    stale = timezone.now() - dt.timedelta(seconds=engine.lease_seconds() + 5)
    StepRun.objects.filter(pk=_step(run).pk).update(
        status="running", claimed_by="elsewhere:1:t", heartbeat_at=stale, attempts=1
    )
    engine.cancel(run, platform_admin)
    assert reconciler.sweep()["ended"] == 1
    step = _step(run)
    assert step.status == "cancelled" and "the run was cancelled while this step ran" in step.reason


def test_on_the_same_host_a_dead_holder_is_gone_after_two_missed_beats(run):
    host = socket.gethostname()
    missed = timezone.now() - dt.timedelta(seconds=2 * engine.HEARTBEAT_SECONDS + 1)
    step = _step(run)
    StepRun.objects.filter(pk=step.pk).update(
        status="running", claimed_by=f"{host}:{os.getpid()}:t", heartbeat_at=missed, attempts=1
    )
    assert reconciler.sweep()["taken_over"] == 0  # alive (this process): within its lease
    StepRun.objects.filter(pk=step.pk).update(claimed_by=f"{host}:{_dead_pid()}:t")
    assert reconciler.sweep()["taken_over"] == 1


def test_a_step_that_kills_its_worker_again_and_again_fails_with_a_reason(run):
    stale = timezone.now() - dt.timedelta(seconds=engine.lease_seconds() + 5)
    StepRun.objects.filter(pk=_step(run).pk).update(
        status="running", claimed_by="w1:7:t", heartbeat_at=stale, attempts=reconciler.MAX_ATTEMPTS
    )
    assert reconciler.sweep()["failed"] == 1
    step, tell = _step(run), _step(run, "tell")
    assert step.status == "failed" and "stopped 5 times" in step.reason
    assert "may need more memory" in step.reason
    assert tell.status == "blocked"
    assert Run.objects.get(pk=run.pk).status == "failed"


def test_a_step_no_worker_takes_fails_after_its_sends(run):
    StepRun.objects.filter(pk=_step(run).pk).update(
        dispatches=reconciler.MAX_DISPATCHES,
        dispatched_at=timezone.now() - dt.timedelta(hours=2),
    )
    assert reconciler.sweep()["failed"] == 1
    assert "No worker took this step" in _step(run).reason
    assert Run.objects.get(pk=run.pk).reason.startswith('"start": No worker took')


def test_a_waiting_step_is_woken_when_due(run):
    StepRun.objects.filter(pk=_step(run).pk).update(status="waiting", wake_at=_later(30))
    assert reconciler.sweep()["woken"] == 0
    assert reconciler.sweep(now=_later(31))["woken"] == 1
    step = _step(run)
    assert (step.status, step.wake_at) == ("queued", None)
    assert engine.execute_step(run.pk, "start", me=engine.worker_id()) == "succeeded"


def test_a_run_with_nothing_on_its_way_is_repaired(run, django_capture_on_commit_callbacks):
    # as a run left by an older engine: steps queued, none sent
    StepRun.objects.filter(run=run).update(dispatched_at=None)
    assert reconciler.stalled_runs() == [run.pk]
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert reconciler.repair(run.pk) == "running"
    assert len(sent) == 1 and _step(run).dispatched_at is not None
    assert reconciler.stalled_runs() == []
    # a run whose last step ended but was never settled
    engine.execute_step(run.pk, "start", me=engine.worker_id())
    engine.execute_step(run.pk, "tell", me=engine.worker_id())
    Run.objects.filter(pk=run.pk).update(status="running", finished_at=None)
    assert reconciler.stalled_runs() == [run.pk]
    assert reconciler.repair(run.pk) == "succeeded"


def test_a_retry_takes_back_its_own_claim_from_any_process(run):
    step = _step(run)
    StepRun.objects.filter(pk=step.pk).update(status="running", claimed_by="h:1:task-a", attempts=1)
    assert engine.execute_step(run.pk, "start", me="h:2:task-b", task_id="task-b") == "running"
    assert engine.execute_step(run.pk, "start", me="h:2:task-a", task_id="task-a") == "succeeded"
    assert engine.release_claim(run.pk, "tell", "task-z") is False


def test_one_process_sweeps_at_a_time(db):
    assert reconciler.take_turn("a")
    assert not reconciler.take_turn("b")
    assert reconciler.take_turn("a")  # renewed
    assert reconciler.take_turn("b", now=_later(60))  # a's lease ran out


def test_a_killed_holder_on_this_host_lets_go_of_the_lease_at_once(db):
    gone = f"{socket.gethostname()}:{_dead_pid()}:reconciler"
    assert reconciler.take_turn(gone)
    assert reconciler.take_turn("b")  # before its lease ran out: its process is gone
    assert not reconciler.take_turn(f"{socket.gethostname()}:{os.getpid()}:reconciler")
