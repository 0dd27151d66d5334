"""A step that waits on the world holds no worker: on a Celery worker with ONE process, a run
whose edge sync waits for its nodes, or whose promotion waits for the pilot's minimum days,
leaves that process free for other runs; the worker's reconciler wakes the waiting step to
check again, and it ends when the world has changed (or the run is cancelled)."""

from __future__ import annotations

import pytest

from tests.deployments.conftest import make_model
from tests.deployments.test_rollout_engine import save  # a new workflow name each time
from tests.fleet.test_edge_sync_block import confirm, sync_graph
from tests.workflows.conftest import Worker, edge, node, wait_for, worker_env
from workflows import engine
from workflows.compiler import validate
from workflows.models import Run, StepRun

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ENDED = {"succeeded", "failed", "blocked", "rejected", "cancelled", "skipped"}


@pytest.fixture
def one_process(transactional_db, test_database_url, broker_url, tmp_path):
    """A real worker with a single prefork child: one step at a time, ever."""
    env = worker_env(test_database_url, broker_url, tmp_path)
    w = Worker(env, tmp_path / "worker.log", pool="prefork", concurrency=1)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def champion(ml_stores, district, staff):
    model = make_model(district, seed=0)
    model.set_alias("champion", actor=staff)
    return model


def notify_graph():
    graph = {
        "nodes": [node("start", "manual_trigger"), node("tell", "notify", title="Hello")],
        "edges": [edge("start", "start", "tell")],
    }
    assert validate(graph) == []
    return graph


def status_of(run, node_id) -> str:
    return StepRun.objects.get(run=run, node_id=node_id).status


def run_status(run) -> str:
    return Run.objects.get(pk=run.pk).status


def test_an_edge_sync_waiting_for_its_nodes_leaves_the_only_process_free(
    one_process, champion, district, school_a, staff, register
):
    _, _, agent = register(school_a, "a-1")  # never confirms until the end of the test
    a = engine.start_run(save(district, staff, sync_graph(school_a)), user=staff)
    wait_for(
        lambda: status_of(a, "sync") == "waiting",
        timeout=90,
        what=f"A's sync step to wait\n{one_process.output()[-3000:]}",
    )
    assert "concurrency: 1 (prefork)" in one_process.output()
    sync = StepRun.objects.get(run=a, node_id="sync")
    assert "waiting for edge servers: 0 of 1" in sync.reason

    b = engine.start_run(save(district, staff, notify_graph()), user=staff)
    wait_for(
        lambda: run_status(b) == "succeeded",
        timeout=30,
        what=f"run B on the single process\n{one_process.output()[-3000:]}",
    )
    assert status_of(a, "sync") not in ENDED  # still waiting (or between two checks)
    assert not Run.objects.get(pk=a.pk).finished
    checks = StepRun.objects.get(run=a, node_id="sync").attempts
    assert checks >= 1

    confirm(agent, champion)
    wait_for(
        lambda: run_status(a) == "succeeded",
        timeout=30,
        what=f"the reconciler to wake A's sync step\n{one_process.output()[-3000:]}",
    )
    sync = StepRun.objects.get(run=a, node_id="sync")
    assert any("1 of 1 edge server(s) serve" in line["message"] for line in sync.logs)


def test_a_promotion_waiting_for_its_minimum_days_leaves_the_only_process_free(
    one_process, champion, district, school_a, staff
):
    graph = sync_graph(school_a)
    graph["nodes"][-1] = node(
        "promote", "promote_to_district", min_days_in_pilot=1, approval_required=False,
        require_pilot_outcomes=False,
    )  # fmt: skip
    graph["edges"][-1] = edge("pilot", "deployment", "promote", "deployment")
    assert validate(graph) == []
    c = engine.start_run(save(district, staff, graph), user=staff)
    wait_for(
        lambda: status_of(c, "promote") == "waiting",
        timeout=90,
        what=f"C's promotion to wait\n{one_process.output()[-3000:]}",
    )
    assert "concurrency: 1 (prefork)" in one_process.output()
    promote = StepRun.objects.get(run=c, node_id="promote")
    assert "waiting for the pilot's minimum days" in promote.reason
    assert "of its 1 days" in promote.reason
    assert promote.wake_at is not None and promote.claimed_by == ""

    d = engine.start_run(save(district, staff, notify_graph()), user=staff)
    wait_for(
        lambda: run_status(d) == "succeeded",
        timeout=30,
        what=f"run D on the single process\n{one_process.output()[-3000:]}",
    )
    assert status_of(c, "promote") == "waiting"  # due in an hour: not woken meanwhile

    engine.cancel(c, staff)
    promote = StepRun.objects.get(run=c, node_id="promote")
    assert promote.status == "cancelled" and promote.reason == f"Cancelled by {staff}"
    assert run_status(c) == "cancelled"
