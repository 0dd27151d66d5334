"""Durable runs under faults, with real processes only: a Redis of the test's own (so it can be
shut down), the web server (gunicorn), a prefork worker group and celery beat on the test
database. The worker is SIGKILLed, Redis is shut down without saving, the broker is down when a
run starts, and every database connection is terminated; every run still ends (docs/durability.md).
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from edumlops.core.models import UserKey
from tests.faults import Beat, WebServer, WorkerGroup, terminate_app_connections, wait_for
from tests.workflows.conftest import edge, node
from workflows.models import Notification, Run, StepRun

pytestmark = [pytest.mark.services, pytest.mark.slow]


def chain(*steps: tuple[str, str, dict]) -> dict:
    """start → steps in a row; each step is (id, kind, params)."""
    nodes = [node("start", "manual_trigger")] + [node(i, k, **p) for i, k, p in steps]
    edges, previous, port = [], "start", "start"
    for node_id, _kind, _ in steps:
        edges.append(edge(previous, port, node_id))
        previous, port = node_id, "done"
    return {"nodes": nodes, "edges": edges}


class Stack:
    """The web server, a worker group and beat on one environment."""

    def __init__(self, env: dict[str, str], tmp: Path, concurrency: int = 2) -> None:
        self.web = WebServer(env, tmp / "web.log")
        self.worker = WorkerGroup(env, tmp / "worker.log", concurrency=concurrency)
        self.beat = Beat(env, tmp / "beat.log")

    def start(self) -> None:
        self.web.start()
        self.worker.start()
        self.worker.wait_ready()
        self.beat.start()

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.web):
            process.stop()

    def logs(self) -> str:
        return f"worker:\n{self.worker.output()[-4000:]}\nweb:\n{self.web.output()[-2000:]}"


@pytest.fixture
def stack(fault_env, own_redis, tmp_path):
    s = Stack({**fault_env, "REDIS_URL": own_redis.url()}, tmp_path)
    s.start()
    yield s
    s.stop()


def post(web: WebServer, path: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        web.url(path),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text or "{}")
        except ValueError:
            return exc.code, {"not json": text[:3000]}


@pytest.fixture
def token(platform_admin) -> str:
    return UserKey.issue(platform_admin, "durability")[1]


def start(stack: Stack, token: str, workflow) -> int:  # noqa: ANN001
    status, body = post(stack.web, f"/api/workflows/{workflow.pk}/runs/", token, {})
    assert status == 201, (status, body, stack.logs())
    return body["id"]


def statuses(run_ids: list[int]) -> dict[int, str]:
    return dict(Run.objects.filter(pk__in=run_ids).values_list("pk", "status"))


def all_ended(run_ids: list[int]):  # noqa: ANN201
    return lambda: all(
        s in ("succeeded", "failed", "rejected", "cancelled") for s in statuses(run_ids).values()
    )


def test_twenty_runs_succeed_through_twenty_sigkills_with_one_notification_and_email_each(
    stack, token, make_workflow, staff, tmp_path
):
    staff.email = "staff@district.example"
    staff.save()
    workflow = make_workflow(
        chain(
            ("w1", "wait", {"seconds": 3}),
            ("w2", "wait", {"seconds": 3}),
            ("tell", "notify", {"title": "Done", "message": "done: {run}", "email": True}),
            ("w3", "wait", {"seconds": 2}),
        )
    )
    rng = random.Random(20)
    runs = [start(stack, token, workflow) for _ in range(20)]
    for _ in range(20):
        time.sleep(rng.uniform(1.5, 5.0))
        stack.worker.kill()  # the whole process group: the main process and its pool
        stack.worker.start()
    wait_for(all_ended(runs), timeout=600, what=f"every run to end\n{stack.logs()}")
    assert set(statuses(runs).values()) == {"succeeded"}, (statuses(runs), stack.logs())
    mail = "".join(p.read_text() for p in (tmp_path / "mail").glob("*"))
    for run_id in runs:
        assert Notification.objects.filter(step__run_id=run_id).count() == 1
        assert mail.count(f"done: #{run_id}\n") == 1, run_id
    # the kills did land on running steps, which were taken over
    taken = StepRun.objects.filter(run_id__in=runs, attempts__gt=1)
    assert taken.exists(), "no step was ever killed mid-run: the test proved nothing"


def test_every_run_ends_after_redis_is_shut_down_without_saving_mid_run(
    stack, own_redis, token, make_workflow
):
    workflow = make_workflow(
        chain(
            ("w1", "wait", {"seconds": 2}),
            ("tell", "notify", {"title": "Half way"}),
            ("w2", "wait", {"seconds": 2}),
            ("w3", "wait", {"seconds": 1}),
        )
    )
    runs = [start(stack, token, workflow) for _ in range(7)]
    wait_for(
        lambda: StepRun.objects.filter(run_id__in=runs, status="running").exists(),
        timeout=60,
        what="a step to run",
    )
    own_redis.shutdown_nosave()  # queued messages, unacked ones and results: all gone
    time.sleep(5)
    own_redis.start()
    own_redis.wait_ready()
    wait_for(all_ended(runs), timeout=300, what=f"every run to end\n{stack.logs()}")
    for run in Run.objects.filter(pk__in=runs):
        assert run.status == "succeeded" or run.reason, (run.pk, run.status)
    assert not StepRun.objects.filter(run_id__in=runs, status__in=["queued", "running"]).exists()


def test_a_run_started_while_the_broker_is_down_answers_503_and_runs_once_it_is_back(
    stack, own_redis, token, make_workflow
):
    workflow = make_workflow(chain(("tell", "notify", {"title": "Hello"})))
    own_redis.shutdown_nosave()
    status, body = post(stack.web, f"/api/workflows/{workflow.pk}/runs/", token, {})
    assert status == 503, (status, body)
    assert set(body) == {"detail", "code", "errors"}
    assert "broker" in body["detail"] and "Redis" in body["detail"]
    run = Run.objects.get(workflow=workflow)  # saved, not an orphan: the reconciler sends it
    assert run.status == "queued" and f"run {run.pk}" in body["detail"]
    own_redis.start()
    own_redis.wait_ready()
    wait_for(all_ended([run.pk]), timeout=120, what=f"the run to end\n{stack.logs()}")
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def test_runs_end_and_healthz_answers_when_every_database_connection_is_terminated(
    stack, token, make_workflow
):
    workflow = make_workflow(
        chain(
            ("w1", "wait", {"seconds": 1}),
            ("tell", "notify", {"title": "Hello"}),
            ("w2", "wait", {"seconds": 1}),
            ("w3", "wait", {"seconds": 1}),
        )
    )
    runs = [start(stack, token, workflow) for _ in range(6)]
    name = connection.settings_dict["NAME"]
    for _ in range(4):
        time.sleep(1.5)
        assert terminate_app_connections(name) > 0
        status, _ = stack.web.get("/healthz", timeout=15)
        assert status == 200  # the very next request
    wait_for(all_ended(runs), timeout=300, what=f"every run to end\n{stack.logs()}")
    assert set(statuses(runs).values()) == {"succeeded"}, (statuses(runs), stack.logs())


def test_an_approval_given_while_the_broker_is_down_answers_503_and_the_run_goes_on_after(
    stack, own_redis, token, make_workflow, staff
):
    workflow = make_workflow(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("ok", "approval_gate"),
                node("tell", "notify", title="Approved"),
            ],
            "edges": [edge("start", "start", "ok"), edge("ok", "approved", "tell")],
        }
    )
    staff_token = UserKey.issue(staff, "durability")[1]
    run_id = start(stack, token, workflow)
    wait_for(
        lambda: Run.objects.get(pk=run_id).status == "waiting_approval",
        timeout=60,
        what=f"the run to wait for approval\n{stack.logs()}",
    )
    own_redis.shutdown_nosave()
    status, body = post(
        stack.web, f"/api/runs/{run_id}/approve/", staff_token, {"comment": "fine", "node_id": "ok"}
    )
    assert status == 503, (status, body)
    assert set(body) == {"detail", "code", "errors"} and "approval" in body["detail"]
    assert StepRun.objects.get(run_id=run_id, node_id="ok").status == "queued"  # recorded
    own_redis.start()
    own_redis.wait_ready()
    wait_for(all_ended([run_id]), timeout=120, what=f"the run to end\n{stack.logs()}")
    assert Run.objects.get(pk=run_id).status == "succeeded"
