"""Any workflow can be run now: POST /api/workflows/{id}/runs/ fires a schedule, a term start or
an alert trigger by hand (the run says so), and a "Start by hand" as before — on real Redis with
a real worker. A trigger connected to nothing is refused when saved; a run in which nothing ran
says so; saving an unchanged graph makes no version."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.workflows.conftest import edge, node, wait_for
from workflows.models import Run, Workflow

RUNS = "/api/workflows/{}/runs/"


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _labelled(node_dict: dict, label: str) -> dict:
    return {**node_dict, "label": label}


def _ended(run_id: int) -> Run:
    wait_for(lambda: Run.objects.get(pk=run_id).finished, timeout=60, what=f"run {run_id} to end")
    return Run.objects.get(pk=run_id)


def _logs(run: Run, node_id: str) -> list[str]:
    return [line["message"] for line in run.steps.get(node_id=node_id).logs]


@pytest.mark.services
def test_a_schedule_trigger_fired_by_hand_runs_now_and_says_so(
    worker, make_workflow, platform_admin, staff
):
    workflow = make_workflow(
        {
            "nodes": [
                _labelled(node("weekly", "schedule_trigger", cron="0 6 * * 1"), "Every Monday"),
                node("tell", "notify", title="Weekly check done"),
            ],
            "edges": [edge("weekly", "start", "tell")],
        }
    )
    response = _api(platform_admin).post(RUNS.format(workflow.pk), {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["trigger_node"] == "weekly"
    assert body["started"] == (
        "Started by hand by platform_admin: fired the 'Every Monday' trigger now"
    )
    run = _ended(body["id"])
    assert run.status == "succeeded", worker.output()
    assert _logs(run, "weekly") == [
        "Fired by hand by platform_admin: started now, not by start on a schedule."
    ]
    assert run.steps.get(node_id="tell").status == "succeeded"
    detail = _api(platform_admin).get(f"/api/runs/{run.pk}/").json()
    assert detail["summary"] == "passed"
    page = _client_page(platform_admin, f"/runs/{run.pk}/")
    assert (
        "Started by hand by platform_admin: fired the &#x27;Every Monday&#x27; trigger now." in page
    )


def _client_page(user, url: str) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.services
def test_a_term_start_trigger_fired_by_hand_runs_now(worker, make_workflow, platform_admin, staff):
    workflow = make_workflow(
        {
            "nodes": [
                node("term", "term_start_trigger", days_after_start=3),
                node("tell", "notify", title="New term"),
            ],
            "edges": [edge("term", "start", "tell")],
        }
    )
    body = _api(platform_admin).post(RUNS.format(workflow.pk), {}, format="json").json()
    assert body["started"] == (
        "Started by hand by platform_admin: fired the 'Start at each new term' trigger now"
    )
    run = _ended(body["id"])
    assert run.status == "succeeded", worker.output()
    assert _logs(run, "term") == [
        "Fired by hand by platform_admin: started now, not by start at each new term."
    ]


@pytest.mark.services
def test_an_alert_trigger_fired_by_hand_runs_with_no_alert(
    worker, make_workflow, platform_admin, staff
):
    workflow = make_workflow(
        {
            "nodes": [
                node("alarm", "on_alert_trigger", monitor="any", min_severity="warning"),
                node("tell", "notify", title="Drift: have a look"),
            ],
            "edges": [edge("alarm", "start", "tell")],
        }
    )
    body = _api(platform_admin).post(RUNS.format(workflow.pk), {}, format="json").json()
    run = _ended(body["id"])
    assert run.status == "succeeded", worker.output()
    assert body["started"].endswith("fired the 'Start on an alert' trigger now")
    assert _logs(run, "alarm")[-1] == "No alert: the next blocks run without an alert's school."
    assert run.steps.get(node_id="tell").status == "succeeded"


@pytest.mark.services
def test_an_alert_trigger_whose_blocks_need_a_school_asks_for_one(
    worker, make_workflow, platform_admin, school_a, other_school
):
    workflow = make_workflow(
        {
            "nodes": [
                node("alarm", "on_alert_trigger"),
                node("which", "alerted_deployment"),
                node("back", "rollback"),
            ],
            "edges": [
                edge("alarm", "start", "which", "start"),
                edge("which", "deployment", "back", "deployment"),
            ],
        }
    )
    client = _api(platform_admin)
    refused = client.post(RUNS.format(workflow.pk), {}, format="json")
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "Fired by hand, the 'Start on an alert' trigger has no alert, and "
        '"Deployment of the alerted school" (which) needs the school an alert is about: '
        "choose a school to run it for (school)."
    )
    outside = client.post(RUNS.format(workflow.pk), {"school": other_school.pk}, format="json")
    assert outside.status_code == 400
    assert outside.json()["detail"].startswith(f"There is no school {other_school.pk} in ")
    assert not Run.objects.exists()
    # with a school: the block works on that school (which has no model deployed yet)
    body = client.post(RUNS.format(workflow.pk), {"school": school_a.pk}, format="json").json()
    assert body["conf"] == {"school": school_a.pk}
    run = _ended(body["id"])
    assert run.status == "failed", worker.output()
    assert run.steps.get(node_id="which").reason.endswith(f"{school_a} has no model deployed.")
    assert run.steps.get(node_id="back").status == "blocked"


@pytest.mark.services
def test_a_manual_trigger_still_runs_and_several_triggers_are_chosen_by_id(
    worker, make_workflow, platform_admin, staff
):
    workflow = make_workflow(
        {
            "nodes": [
                node("go", "manual_trigger"),
                node("weekly", "schedule_trigger"),
                node("tell", "notify", title="Hello"),
            ],
            "edges": [edge("go", "start", "tell"), edge("weekly", "start", "tell")],
        }
    )
    client = _api(platform_admin)
    by_hand = client.post(RUNS.format(workflow.pk), {}, format="json").json()
    assert (by_hand["trigger_node"], by_hand["started"]) == (
        "go",
        "Started by hand by platform_admin",
    )
    # "tell" is fed by both triggers: it waits for the one that fired, not for the other
    run = _ended(by_hand["id"])
    assert (run.status, run.reason) == ("succeeded", ""), worker.output()
    assert run.steps.get(node_id="weekly").status == "skipped"
    assert run.steps.get(node_id="tell").status == "succeeded"
    fired = client.post(RUNS.format(workflow.pk), {"trigger_node": "weekly"}, format="json")
    assert fired.status_code == 201
    run = _ended(fired.json()["id"])
    assert run.trigger_node == "weekly" and (run.status, run.reason) == ("succeeded", "")
    assert run.steps.get(node_id="go").status == "skipped"
    assert run.steps.get(node_id="tell").status == "succeeded"
    unknown = client.post(RUNS.format(workflow.pk), {"trigger_node": "tell"}, format="json")
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == (
        'Node "tell" is not a trigger of this workflow: name one of "go" (Start by hand), '
        '"weekly" (Start on a schedule).'
    )


def test_several_triggers_without_a_manual_one_ask_which(api_client, platform_admin, district):
    graph = {
        "nodes": [
            node("weekly", "schedule_trigger"),
            node("term", "term_start_trigger"),
            node("tell", "notify"),
        ],
        "edges": [edge("weekly", "start", "tell"), edge("term", "start", "tell")],
    }
    workflow = Workflow.objects.create(district=district, name="Two", owner=platform_admin)
    workflow.save_version(graph, "v1", platform_admin)
    response = api_client(platform_admin).post(RUNS.format(workflow.pk), {}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {
            "detail": 'The workflow has 2 triggers ("weekly" (Start on a schedule), "term" '
            "(Start at each new term)): choose the one to fire now (trigger_node).",
            "code": "invalid",
            "errors": [],
        },
    )


@pytest.fixture
def api_client():
    return _api


def test_a_trigger_connected_to_nothing_is_refused_naming_it(api_client, platform_admin, district):
    graph = {
        "nodes": [
            node("watch", "schedule_trigger"),
            node("start", "manual_trigger"),
            node("tell", "notify"),
        ],
        "edges": [edge("watch", "start", "tell")],
    }
    workflow = Workflow.objects.create(district=district, name="Watch", owner=platform_admin)
    client = api_client(platform_admin)
    response = client.post(f"/api/workflows/{workflow.pk}/versions/", {"graph": graph}, "json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "graph",
            "message": 'Node "start": the trigger "Start by hand" is connected to nothing, so '
            "a run it starts would do nothing. Connect its output to the first block to run, "
            "or remove it.",
            "code": "unconnected_trigger",
            "node": "start",
            "port": "start",
            "param": None,
        }
    ]
    assert not workflow.versions.exists()
    valid = client.post("/api/workflows/validate/", {"graph": graph}, format="json").json()
    assert [e["code"] for e in valid["errors"]] == ["unconnected_trigger"]


@pytest.mark.services
def test_a_run_in_which_nothing_ran_says_so(worker, platform_admin, district):
    """A version saved before unconnected triggers were refused still runs; started from its
    lone trigger, every other step is skipped, and the run says nothing ran."""
    graph = {
        "nodes": [node("watch", "schedule_trigger"), node("start", "manual_trigger")]
        + [node("tell", "notify")],
        "edges": [edge("watch", "start", "tell")],
    }
    workflow = Workflow.objects.create(district=district, name="Old", owner=platform_admin)
    workflow.save_version(graph, "saved before the rule", platform_admin)
    body = _api(platform_admin).post(RUNS.format(workflow.pk), {}, format="json").json()
    assert body["trigger_node"] == "start"
    run = _ended(body["id"])
    expected = (
        'Nothing ran: every step after the trigger was skipped (not started by trigger "start").'
    )
    assert run.reason == expected, worker.output()
    detail = _api(platform_admin).get(f"/api/runs/{run.pk}/").json()
    assert detail["summary"] == expected
    page = _client_page(platform_admin, f"/runs/{run.pk}/")
    assert '<span class="status status-skipped" data-testid="run-status">nothing ran</span>' in page


def test_saving_an_unchanged_graph_makes_no_version(api_client, platform_admin, district):
    graph = {
        "nodes": [node("go", "manual_trigger"), node("tell", "notify", title="Hi")],
        "edges": [edge("go", "start", "tell")],
    }
    workflow = Workflow.objects.create(district=district, name="Same", owner=platform_admin)
    client = api_client(platform_admin)
    url = f"/api/workflows/{workflow.pk}/versions/"
    first = client.post(url, {"graph": graph, "message": "first"}, format="json")
    assert first.status_code == 201
    assert (first.json()["number"], first.json()["unchanged"]) == (1, False)
    # the same graph with its defaults written out, as the canvas sends it
    spelled_out = {
        "nodes": [{**n, "position": {"x": 0.0, "y": 0}, "label": ""} for n in graph["nodes"]],
        "edges": graph["edges"],
        "notes": [],
    }
    again = client.post(url, {"graph": spelled_out, "message": "again"}, format="json")
    assert again.status_code == 200
    assert again.json()["unchanged"] is True
    assert again.json()["number"] == 1
    assert again.json()["detail"] == "No changes since version 1: nothing saved."
    assert workflow.versions.count() == 1
    moved = {**spelled_out, "nodes": [{**spelled_out["nodes"][0], "position": {"x": 40, "y": 0}}]}
    moved["nodes"].append(spelled_out["nodes"][1])
    changed = client.post(url, {"graph": moved, "message": "moved"}, format="json")
    assert changed.status_code == 201
    assert (changed.json()["number"], changed.json()["unchanged"]) == (2, False)
