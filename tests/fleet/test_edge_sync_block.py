"""The Sync to school servers block: it publishes the deployment's bundle to the target schools'
edge nodes and waits until enough of them report serving it — on a real Celery worker while the
nodes confirm through the API, and step by step in this process for the timeout (naming the
nodes that did not confirm and why), a share below all, no wait, and no nodes at all."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from edumlops.fleet.models import EdgeEvent
from tests.fleet.test_api import report_body
from tests.registry.conftest import steps_of
from tests.workflows.conftest import edge, node, wait_for
from workflows import engine, reconciler
from workflows.compiler import validate
from workflows.models import Run, StepRun, Workflow


def sync_graph(school, **sync):
    graph = {
        "nodes": [
            node("start", "manual_trigger"),
            node("model", "registered_model", model_name="at-risk", alias="champion"),
            node(
                "pilot", "pilot_rollout", selection="names", schools=[school.name],
                approval_required=False,
            ),
            node("sync", "edge_sync", **{"timeout_minutes": 2, "poll_seconds": 1, **sync}),
        ],
        "edges": [
            edge("start", "start", "model"),
            edge("model", "model", "pilot", "model"),
            edge("pilot", "deployment", "sync", "deployment"),
        ],
    }  # fmt: skip
    assert validate(graph) == []
    return graph


def save(district, owner, graph) -> Workflow:
    workflow = Workflow.objects.create(district=district, name="Pilot and sync", owner=owner)
    workflow.save_version(graph, "first", owner)
    return workflow


def confirm(client, model):
    """What an agent sends after it activated `model`."""
    body = report_body(model, events=[])
    answer = client.post("/api/edge/report/", body, format="json")
    assert answer.status_code == 200, answer.content


@pytest.fixture
def champion(ml_stores, district, staff):
    from tests.deployments.conftest import make_model

    model = make_model(district, seed=0)
    model.set_alias("champion", actor=staff)
    return model


def start_here(workflow, user, capture):
    with capture(execute=False):  # the test runs the steps itself, no broker
        return engine.start_run(workflow, user=user)


def step(run, node_id) -> str:
    return engine.execute_step(run.pk, node_id, me=engine.worker_id())


@pytest.mark.django_db(transaction=True)
def test_the_block_waits_on_a_worker_until_the_nodes_confirm(
    worker, champion, district, school_a, school_b, staff, register
):
    _, _, a1 = register(school_a, "a-1")
    _, _, a2 = register(school_a, "a-2")
    b1, _, _ = register(school_b, "b-1")  # not a pilot school: not waited for
    run = engine.start_run(save(district, staff, sync_graph(school_a)), user=staff)

    wait_for(
        lambda: EdgeEvent.objects.filter(kind="published").count() == 2,
        timeout=120,
        what="the bundle to be published to the pilot school's nodes",
    )
    assert not EdgeEvent.objects.filter(node=b1).exists()
    sync = StepRun.objects.get(run=run, node_id="sync")
    assert sync.status in ("running", "waiting")  # between two checks it holds no worker
    # the agents see the pilot in their manifest, download it and report serving it
    desired = a1.get("/api/edge/manifest/").json()["desired"]
    assert desired["model_version"] == champion.pk and desired["scope"] == "pilot"
    confirm(a1, champion)
    wait_for(
        lambda: "1 of 2" in (StepRun.objects.get(pk=sync.pk).progress or {}).get("stage", ""),
        timeout=30,
        what="the step to show one node confirmed",
    )
    sync = StepRun.objects.get(pk=sync.pk)
    assert sync.status in ("running", "waiting") and "1 of 2" in sync.reason + str(sync.progress)
    confirm(a2, champion)
    wait_for(
        lambda: Run.objects.get(pk=run.pk).status == "succeeded",
        timeout=60,
        what=f"the run to succeed\n{worker.output()[-3000:]}",
    )
    sync = StepRun.objects.get(pk=sync.pk)
    assert any("2 of 2 edge server(s) serve" in log["message"] for log in sync.logs)
    assert sync.metrics == {"edge_nodes": 2.0, "edge_nodes_confirmed": 2.0}
    assert sync.outputs["deployment"]["model_version"] == champion.pk


@pytest.mark.django_db
def test_at_the_timeout_the_step_names_the_nodes_that_did_not_confirm(
    champion, district, school_a, staff, register, django_capture_on_commit_callbacks
):
    _, _, fast = register(school_a, "a-fast")
    register(school_a, "a-silent")
    _, _, picky = register(school_a, "a-picky")
    graph = sync_graph(school_a, timeout_minutes=0.02, poll_seconds=1)
    run = start_here(save(district, staff, graph), staff, django_capture_on_commit_callbacks)
    assert [step(run, n) for n in ("start", "model", "pilot")] == ["succeeded"] * 3
    confirm(fast, champion)
    refused = report_body(champion, active_version=None, cached_versions=[])
    refused["events"] = [
        {"id": "r1", "kind": "rejected", "version": champion.pk, "detail": "bad signature"}
    ]
    assert picky.post("/api/edge/report/", refused, format="json").status_code == 200

    assert step(run, "sync") == "waiting"  # released its worker until the next check
    waiting = steps_of(run)["sync"]
    assert "waiting for edge servers: 2 of 3 edge servers serve" not in waiting.reason
    assert waiting.reason.startswith("waiting for edge servers: 1 of 3 edge servers serve")
    assert waiting.state["deadline"] > 0 and waiting.wake_at is not None
    time.sleep(1.3)  # past the 1.2 s timeout
    assert reconciler.sweep(now=timezone.now() + dt.timedelta(seconds=2))["woken"] == 1
    assert step(run, "sync") == "failed"
    reason = steps_of(run)["sync"].reason
    assert "Only 1 of 3 edge server(s) serve" in reason and "needed 3, min share 1" in reason
    assert "a-silent at Alder School (never contacted)" in reason
    assert f"a-picky at Alder School (last contact just now; rejected v{champion.version}: " \
        "bad signature)" in reason  # fmt: skip
    assert "a-fast" not in reason


@pytest.mark.django_db
def test_a_share_below_all_passes_when_enough_confirm(
    champion, district, school_a, staff, register, django_capture_on_commit_callbacks
):
    _, _, fast = register(school_a, "a-fast")
    register(school_a, "a-slow")
    graph = sync_graph(school_a, min_share=0.5, timeout_minutes=0.05, poll_seconds=1)
    run = start_here(save(district, staff, graph), staff, django_capture_on_commit_callbacks)
    assert [step(run, n) for n in ("start", "model", "pilot")] == ["succeeded"] * 3
    confirm(fast, champion)
    assert step(run, "sync") == "succeeded"
    assert steps_of(run)["sync"].metrics["edge_nodes_confirmed"] == 1


@pytest.mark.django_db
def test_timeout_zero_publishes_and_goes_on(
    champion, district, school_a, staff, register, django_capture_on_commit_callbacks
):
    node_a, _, _ = register(school_a, "a-1")
    graph = sync_graph(school_a, timeout_minutes=0)
    run = start_here(save(district, staff, graph), staff, django_capture_on_commit_callbacks)
    assert [step(run, n) for n in ("start", "model", "pilot", "sync")] == ["succeeded"] * 4
    published = EdgeEvent.objects.get(node=node_a)
    assert published.kind == "published" and published.model_version == champion
    assert any("Not waiting" in log["message"] for log in steps_of(run)["sync"].logs)


@pytest.mark.django_db
def test_no_nodes_at_the_target_schools_is_logged_and_passes(
    champion, district, school_a, school_b, staff, register, django_capture_on_commit_callbacks
):
    register(school_b, "b-1")  # another school's node does not count
    run = start_here(save(district, staff, sync_graph(school_a)), staff,
                     django_capture_on_commit_callbacks)  # fmt: skip
    assert [step(run, n) for n in ("start", "model", "pilot", "sync")] == ["succeeded"] * 4
    logs = [log["message"] for log in steps_of(run)["sync"].logs]
    assert any("No edge server is registered at the 1 target school(s)" in m for m in logs)
    assert not EdgeEvent.objects.exists()
