"""The server side of the canvas: draft versions, running a chosen version, the workflow list,
the canvas page's embedded data, the version list, diffs and a step's side-panel detail."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import Run, Workflow

SIMPLE = {
    "nodes": [node("start", "manual_trigger"), node("tell", "notify", title="Hello")],
    "edges": [edge("start", "start", "tell")],
    "notes": [],
}
BROKEN = {"nodes": [node("tell", "notify")], "edges": [], "notes": []}


@pytest.fixture
def workflow(district, platform_admin):
    return Workflow.objects.create(district=district, name="Canvas", owner=platform_admin)


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_graph_with_errors_is_refused_unless_saved_as_a_draft(workflow, platform_admin):
    api = _api(platform_admin)
    url = f"/api/workflows/{workflow.pk}/versions/"
    refused = api.post(url, {"graph": BROKEN, "message": "wip"}, format="json")
    assert refused.status_code == 400 and not workflow.versions.exists()
    saved = api.post(url, {"graph": BROKEN, "message": "wip", "draft": True}, format="json")
    assert saved.status_code == 201
    body = saved.json()
    assert body["draft"] is True and body["number"] == 1
    assert {e["code"] for e in body["errors"]} == {"missing_input", "no_trigger"}
    version = workflow.versions.get()
    assert version.draft and version.graph == BROKEN


def test_a_malformed_graph_is_not_kept_even_as_a_draft(workflow, platform_admin):
    response = _api(platform_admin).post(
        f"/api/workflows/{workflow.pk}/versions/",
        {"graph": {"nodes": [{"kind": "notify"}]}, "draft": True},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "malformed"
    assert not workflow.versions.exists()


def test_a_draft_never_runs_and_triggers_use_the_newest_runnable_version(workflow, platform_admin):
    with pytest.raises(engine.EngineError, match="no saved version"):
        engine.start_run(workflow)
    workflow.save_version(BROKEN, "draft", platform_admin, errors=[{"message": "x"}])
    with pytest.raises(engine.EngineError, match="no runnable version"):
        engine.start_run(workflow)
    good = workflow.save_version(SIMPLE, "good", platform_admin)
    draft = workflow.save_version(BROKEN, "draft 2", platform_admin, errors=[{"message": "x"}])
    assert workflow.latest_version() == draft
    assert workflow.runnable_version() == good
    assert engine.start_run(workflow).version == good
    with pytest.raises(engine.EngineError, match="draft"):
        engine.start_run(workflow, version=draft)
    # the API runs a chosen version, and refuses a draft with the reason
    api = _api(platform_admin)
    url = f"/api/workflows/{workflow.pk}/runs/"
    assert api.post(url, {"version": good.number}, format="json").json()["version"] == 2
    refused = api.post(url, {"version": draft.number}, format="json")
    assert refused.status_code == 400 and "draft" in refused.json()["detail"]
    unknown = api.post(url, {"version": 99}, format="json")  # a number in the body: 400 names it
    assert unknown.status_code == 400
    assert [e["field"] for e in unknown.json()["errors"]] == ["version"]


def test_the_canvas_page_embeds_catalog_graph_and_config(client, workflow, platform_admin):
    workflow.save_version(SIMPLE, "first", platform_admin)
    client.force_login(platform_admin)
    html = client.get(f"/workflows/{workflow.pk}/").content.decode()
    assert 'id="block-catalog"' in html and 'id="canvas-graph"' in html
    config = json.loads(html.split('id="canvas-config" type="application/json">')[1].split("<")[0])
    assert config["version"] == 1 and config["readOnly"] is False
    assert config["runsUrl"] == f"/api/workflows/{workflow.pk}/runs/"
    assert config["stepUrl"] == "/runs/RUN/steps/NODE/"
    assert config["runUrl"] == "/api/runs/RUN/"


def test_old_versions_and_non_builders_get_a_read_only_canvas(
    client, workflow, platform_admin, staff, teacher_a
):
    workflow.save_version(SIMPLE, "first", platform_admin)
    workflow.save_version(SIMPLE, "second", platform_admin)
    client.force_login(platform_admin)
    old = client.get(f"/workflows/{workflow.pk}/?version=1")
    assert old.context["read_only"] and old.context["version"].number == 1
    assert not client.get(f"/workflows/{workflow.pk}/").context["read_only"]
    client.force_login(staff)
    assert client.get(f"/workflows/{workflow.pk}/").context["read_only"]
    client.force_login(teacher_a)  # a teacher sees one school, not the district's workflows
    assert client.get(f"/workflows/{workflow.pk}/").status_code == 404


def test_new_workflow_needs_manage_and_a_free_name(client, district, platform_admin, staff):
    client.force_login(staff)
    assert client.post("/workflows/new/", {"name": "x", "district": district.pk}).status_code == 403
    client.force_login(platform_admin)
    response = client.post("/workflows/new/", {"name": "Mine", "district": district.pk})
    created = Workflow.objects.get(name="Mine")
    assert response["Location"] == f"/workflows/{created.pk}/"
    again = client.post("/workflows/new/", {"name": "Mine", "district": district.pk}, follow=True)
    assert "exists" in again.content.decode()
    assert Workflow.objects.filter(name="Mine").count() == 1


def test_version_list_diff_and_run_this_version(client, workflow, platform_admin):
    workflow.save_version(SIMPLE, "first", platform_admin)
    changed = json.loads(json.dumps(SIMPLE))
    changed["nodes"][1]["params"]["title"] = "Bye"
    workflow.save_version(changed, "retitled", platform_admin)
    workflow.save_version(BROKEN, "draft", platform_admin, errors=[{"message": "x"}])
    client.force_login(platform_admin)
    listing = client.get(f"/workflows/{workflow.pk}/versions/").content.decode()
    assert "retitled" in listing and "draft (1 problem)" in listing
    assert listing.count('data-testid="run-version"') == 2  # not on the draft
    diff = client.get(f"/workflows/{workflow.pk}/versions/2/diff/").content.decode()
    assert "title Hello → Bye" in diff
    response = client.post(f"/workflows/{workflow.pk}/versions/1/run/", HTTP_HX_REQUEST="true")
    run = Run.objects.get()
    assert run.version.number == 1
    assert response["HX-Redirect"] == f"/workflows/{workflow.pk}/?run={run.pk}"
    refused = client.post(f"/workflows/{workflow.pk}/versions/3/run/", follow=True)
    assert "draft" in refused.content.decode() and Run.objects.count() == 1


def test_step_detail_shows_logs_metrics_and_reason(client, workflow, platform_admin, staff):
    workflow.save_version(SIMPLE, "first", platform_admin)
    run = engine.start_run(workflow)
    step = run.steps.get(node_id="tell")
    step.logs = [{"at": "now", "message": "Told 3 people"}]
    step.metrics = {"recipients": 3, "new_alerts": 2}
    step.status = "succeeded"
    step.save()
    client.force_login(staff)
    html = client.get(f"/runs/{run.pk}/steps/tell/").content.decode()
    assert "Told 3 people" in html and "recipients" in html and 'data-status="succeeded"' in html
    assert "new alerts" in html and "new_alerts" not in html  # a metric's name in words
    assert client.get(f"/runs/{run.pk}/steps/nope/").status_code == 404


def test_the_workflow_list_shows_each_workflows_newest_version_and_run(
    client, workflow, platform_admin
):
    workflow.save_version(SIMPLE, "first", platform_admin)
    workflow.save_version(BROKEN, "wip", platform_admin, errors=[{"message": "x"}])
    engine.start_run(workflow)
    last = engine.start_run(workflow)
    client.force_login(platform_admin)
    (row,) = client.get("/workflows/").context["rows"]
    assert row[0] == workflow and row[1].number == 2 and row[1].draft and row[2] == last
    assert "draft" in client.get("/workflows/").content.decode()


def _config(client, url: str) -> dict:
    html = client.get(url).content.decode()
    return json.loads(html.split('id="canvas-config" type="application/json">')[1].split("<")[0])


def test_the_canvas_names_the_latest_run_so_a_reload_shows_its_states(
    client, workflow, platform_admin, school_a
):
    workflow.save_version(SIMPLE, "first", platform_admin)
    client.force_login(platform_admin)
    url = f"/workflows/{workflow.pk}/"
    assert _config(client, url)["lastRun"] is None
    first = engine.start_run(workflow, user=platform_admin)
    assert _config(client, url)["lastRun"] == {"id": first.pk, "version": 1, "overlay": True}
    moved = {**SIMPLE, "nodes": [{**SIMPLE["nodes"][0], "position": {"x": 50, "y": 0}}]}
    moved["nodes"].append(SIMPLE["nodes"][1])
    workflow.save_version(moved, "second", platform_admin)
    # the newest run is of version 1: named (the run bar links to it), not drawn on version 2
    assert _config(client, url)["lastRun"] == {"id": first.pk, "version": 1, "overlay": False}
    second = engine.start_run(workflow, user=platform_admin)
    assert _config(client, url)["lastRun"] == {"id": second.pk, "version": 2, "overlay": True}
    asked = _config(client, f"{url}?run={first.pk}")
    assert asked["runId"] == first.pk and asked["lastRun"]["id"] == first.pk
    assert asked["schools"] == [{"id": school_a.pk, "name": school_a.name}]


def test_the_workflow_list_runs_any_workflow_now_or_sends_to_the_canvas_to_choose(
    client, district, platform_admin, staff
):
    weekly = Workflow.objects.create(district=district, name="Weekly", owner=platform_admin)
    weekly.save_version(
        {
            "nodes": [node("tick", "schedule_trigger"), node("tell", "notify")],
            "edges": [edge("tick", "start", "tell")],
        },
        "v1",
        platform_admin,
    )
    two = Workflow.objects.create(district=district, name="Two", owner=platform_admin)
    two.save_version(
        {
            "nodes": [node("tick", "schedule_trigger"), node("term", "term_start_trigger")]
            + [node("tell", "notify")],
            "edges": [edge("tick", "start", "tell"), edge("term", "start", "tell")],
        },
        "v1",
        platform_admin,
    )
    client.force_login(platform_admin)
    listing = client.get("/workflows/").content.decode()
    assert listing.count('data-testid="run-now"') == 2
    response = client.post(f"/workflows/{weekly.pk}/versions/1/run/")
    run = Run.objects.get(workflow=weekly)
    assert response["Location"] == f"/workflows/{weekly.pk}/?run={run.pk}"
    assert run.trigger_node == "tick" and run.started_by == platform_admin
    asked = client.post(f"/workflows/{two.pk}/versions/1/run/", follow=True)
    assert asked.redirect_chain[-1][0] == f"/workflows/{two.pk}/"
    assert (
        "The workflow has 2 triggers: choose the one to fire now beside the Run button."
        in asked.content.decode()
    )
    assert not Run.objects.filter(workflow=two).exists()
    client.force_login(staff)  # staff see the list, not the button
    assert 'data-testid="run-now"' not in client.get("/workflows/").content.decode()
