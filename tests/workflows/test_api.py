"""The workflow API: the contract paths, validation errors, versions, permissions, docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from edumlops.core.models import UserKey
from tests.workflows.conftest import edge, node
from workflows.models import Run, Workflow, WorkflowVersion

GOLDEN = Path(__file__).parent / "golden"

SIMPLE = {
    "nodes": [node("start", "manual_trigger"), node("tell", "notify", title="Hello")],
    "edges": [edge("start", "start", "tell")],
}


@pytest.fixture
def api():
    def as_user(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return as_user


def test_blocks_lists_every_block_with_ports_and_schema(api, teacher_a):
    data = api(teacher_a).get("/api/blocks/").json()
    notify = next(b for b in data if b["kind"] == "notify")
    assert notify["label"] == "Notify people"
    assert notify["inputs"][0]["name"] == "input" and notify["inputs"][0]["many"] is True
    assert notify["outputs"] == [
        {"name": "done", "types": ["signal"], "label": "Done", "required": True, "many": False}
    ]
    assert notify["params_schema"]["properties"]["recipients"]["enum"] == [
        "district_staff",
        "admins",
        "teachers",
        "owner",
    ]


def test_validate_answers_valid_true(api, platform_admin):
    response = api(platform_admin).post(
        "/api/workflows/validate/", {"graph": SIMPLE}, format="json"
    )
    assert (response.status_code, response.json()) == (200, {"valid": True})


@pytest.mark.parametrize("path", sorted((GOLDEN / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_validate_answers_400_with_the_golden_errors(api, platform_admin, path):
    fixture = json.loads(path.read_text())
    response = api(platform_admin).post(
        "/api/workflows/validate/", {"graph": fixture["graph"]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["valid"] is False and body["code"] == "invalid"
    assert body["detail"].startswith("The workflow graph is not valid: ")
    assert body["errors"] == [{"field": "graph", **e} for e in fixture["errors"]]


def test_an_admin_creates_a_workflow_and_saves_versions(api, platform_admin, district):
    client = api(platform_admin)
    response = client.post(
        "/api/workflows/",
        {"name": "Early warning", "district": district.pk, "graph": SIMPLE, "message": "v1"},
        format="json",
    )
    assert response.status_code == 201, response.content
    wf = response.json()
    assert [v["number"] for v in wf["versions"]] == [1]
    changed = json.loads(json.dumps(SIMPLE))
    changed["nodes"][1]["params"]["title"] = "Hello again"
    response = client.post(
        f"/api/workflows/{wf['id']}/versions/",
        {"graph": changed, "message": "louder"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["number"] == 2
    diff = client.get(f"/api/workflows/{wf['id']}/versions/2/diff/").json()
    assert diff["nodes_changed"] == [
        {"id": "tell", "params": {"title": {"old": "Hello", "new": "Hello again"}}}
    ]
    old = client.get(f"/api/workflows/{wf['id']}/versions/1/").json()
    assert old["graph"] == SIMPLE and old["message"] == "v1"


def test_an_invalid_version_is_refused_and_nothing_is_saved(api, platform_admin, district):
    client = api(platform_admin)
    wf = client.post(
        "/api/workflows/", {"name": "W", "district": district.pk, "graph": SIMPLE}, format="json"
    ).json()
    cycle = json.loads((GOLDEN / "invalid" / "cycle.json").read_text())
    response = client.post(
        f"/api/workflows/{wf['id']}/versions/",
        {"graph": cycle["graph"], "message": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "graph", **e} for e in cycle["errors"]]
    assert WorkflowVersion.objects.filter(workflow_id=wf["id"]).count() == 1


def test_an_invalid_first_graph_creates_no_workflow(api, platform_admin, district):
    response = api(platform_admin).post(
        "/api/workflows/",
        {"name": "Broken", "district": district.pk, "graph": {"nodes": [], "edges": []}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == (
        "The workflow is empty. Add a trigger block to start."
    )
    assert not Workflow.objects.exists()


def test_versions_are_immutable(platform_admin, district):
    wf = Workflow.objects.create(district=district, name="W", owner=platform_admin)
    version = wf.save_version(SIMPLE, "v1", platform_admin)
    version.message = "rewritten"
    with pytest.raises(Exception, match="immutable"):
        version.save()


def test_teachers_and_staff_cannot_build_or_run_workflows(api, teacher_a, staff, district):
    for user in (teacher_a, staff):
        response = api(user).post(
            "/api/workflows/",
            {"name": "Mine", "district": district.pk, "graph": SIMPLE},
            format="json",
        )
        assert response.status_code == 403


def test_staff_see_runs_but_a_teacher_cannot_approve(
    api, platform_admin, staff, teacher_a, district, django_capture_on_commit_callbacks
):
    wf = Workflow.objects.create(district=district, name="W", owner=platform_admin)
    wf.save_version(SIMPLE, "v1", platform_admin)
    response = api(platform_admin).post(f"/api/workflows/{wf.pk}/runs/", {}, format="json")
    assert response.status_code == 201
    run_id = response.json()["id"]
    assert {s["node_id"]: s["status"] for s in response.json()["steps"]} == {
        "start": "queued",
        "tell": "queued",
    }
    assert api(staff).get(f"/api/runs/{run_id}/").status_code == 200
    # a teacher of the district's school sees no run of the district
    assert api(teacher_a).post(f"/api/runs/{run_id}/approve/", {"comment": "x"}).status_code == 404
    # ...and where they could see it, approving is still refused
    from edumlops.schools.permissions import Action, can

    assert not can(teacher_a, Action.APPROVE, Run.objects.get(pk=run_id))
    nothing_waits = api(staff).post(f"/api/runs/{run_id}/approve/", {"comment": "ok"})
    assert nothing_waits.status_code == 400
    assert nothing_waits.json() == {
        "detail": "Nothing in this run is waiting for approval.",
        "code": "invalid",
        "errors": [],
    }


def test_a_workflow_without_a_manual_trigger_runs_now_by_firing_its_trigger_by_hand(
    api, platform_admin, district
):
    graph = {
        "nodes": [node("tick", "schedule_trigger", cron="0 6 * * 1"), node("tell", "notify")],
        "edges": [edge("tick", "start", "tell")],
    }
    wf = Workflow.objects.create(district=district, name="Weekly", owner=platform_admin)
    wf.save_version(graph, "v1", platform_admin)
    response = api(platform_admin).post(f"/api/workflows/{wf.pk}/runs/", {}, format="json")
    assert response.status_code == 201
    assert response.json()["trigger_node"] == "tick"
    assert response.json()["started"] == (
        "Started by hand by platform_admin: fired the 'Start on a schedule' trigger now"
    )


def test_token_authentication_works(platform_admin, district):
    _, key = UserKey.issue(platform_admin, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/workflows/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer usr_wrong")
    assert client.get("/api/workflows/").status_code == 401


def test_the_openapi_schema_and_docs_are_served_locally(api, teacher_a):
    client = api(teacher_a)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["openapi"].startswith("3.")
    for path in ("/api/workflows/validate/", "/api/runs/{id}/approve/", "/api/blocks/"):
        assert path in schema["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"https://" not in docs.content.split(b"<body")[0]


def errors_of(response, status: int = 400) -> list[str]:
    assert response.status_code == status, response.content
    body = response.json()
    assert {"detail", "code", "errors"} <= set(body)
    return [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([None, None], ""),
        ({"dataset_version": "abc"}, "dataset_version"),
        ({"dataset_version": 2**70}, "dataset_version"),
        ({"dataset_version": 999_999}, "dataset_version"),
        ({"dataset_version": 1, "algorithm": "magic"}, "algorithm"),
        ({"dataset_version": 1, "test_share": 0.9}, "test_share"),
        ({"dataset_version": 1, "model_name": "Not OK"}, "model_name"),
    ],
)
def test_a_bad_training_request_is_a_400_naming_the_field(api, platform_admin, body, field):
    """`[null, null]` was a 500 (dict() of a list)."""
    response = api(platform_admin).post("/api/models/train/", body, format="json")
    assert field in errors_of(response)
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "W", "district": "abc"}, "district"),
        ({"name": "W", "district": 2**70}, "district"),
        ({"name": "W", "district": 999_999}, "district"),
        ([], ""),
    ],
)
def test_a_bad_workflow_body_is_a_400_naming_the_field(api, platform_admin, district, body, field):
    response = api(platform_admin).post("/api/workflows/", body, format="json")
    assert field in errors_of(response)
    assert not Workflow.objects.exists()


def test_another_districts_workflow_and_run_are_404_like_unknown_ids(
    api, platform_admin, district, make_user, other_school, outsider, teacher_a
):
    wf = Workflow.objects.create(district=district, name="W", owner=platform_admin)
    wf.save_version(SIMPLE, "v1", platform_admin)
    run = api(platform_admin).post(f"/api/workflows/{wf.pk}/runs/", {}, format="json").json()
    far_teacher = make_user("far_teacher", "teacher", school=other_school)
    paths = [
        ("get", f"/api/workflows/{wf.pk}/"),
        ("get", f"/api/workflows/{wf.pk}/versions/1/"),
        ("get", f"/api/runs/{run['id']}/"),
        ("post", f"/api/runs/{run['id']}/approve/"),
        ("post", f"/api/workflows/{wf.pk}/runs/"),
    ]
    for user in (far_teacher, outsider, teacher_a):
        client = api(user)
        for method, path in paths:
            unknown_path = path.replace(f"/{wf.pk}/", "/999999/").replace(
                f"/{run['id']}/", "/999999/"
            )
            hidden = getattr(client, method)(path, {"comment": "x"}, format="json")
            unknown = getattr(client, method)(unknown_path, {"comment": "x"}, format="json")
            assert hidden.status_code == unknown.status_code == 404, (user, path)
            assert hidden.json() == unknown.json()


def test_staff_who_see_a_workflow_get_a_403_saying_why(api, platform_admin, staff, district):
    wf = Workflow.objects.create(district=district, name="W", owner=platform_admin)
    wf.save_version(SIMPLE, "v1", platform_admin)
    refused = api(staff).post(f"/api/workflows/{wf.pk}/runs/", {}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Workflows are built and run by admins (ML leads)."


def test_the_schema_documents_graph_errors_with_node_port_and_param(api, platform_admin):
    schema = api(platform_admin).get("/api/schema/?format=json").json()
    answer = schema["paths"]["/api/workflows/validate/"]["post"]["responses"]["400"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    entry = schema["components"]["schemas"][ref]["properties"]["errors"]["items"]["$ref"]
    props = schema["components"]["schemas"][entry.rsplit("/", 1)[1]]["properties"]
    assert {"field", "message", "node", "port", "param"} <= set(props)


def test_a_graph_sent_as_form_text_is_read_and_a_non_object_is_a_400(api, platform_admin, district):
    """A multipart body's graph arrives as text: it was saved as a string, then a 500."""
    wf = Workflow.objects.create(district=district, name="W", owner=platform_admin)
    wf.save_version(SIMPLE, "v1", platform_admin)
    client = api(platform_admin)
    changed = json.loads(json.dumps(SIMPLE))
    changed["nodes"][1]["params"]["title"] = "Form"
    body = {"graph": json.dumps(changed), "message": "", "draft": "0"}
    saved = client.post(f"/api/workflows/{wf.pk}/versions/", body, format="multipart")
    assert saved.status_code == 201, saved.content
    assert wf.latest_version().graph == changed
    for graph in ("not json", "[1, 2]"):
        body = {"graph": graph, "message": ""}
        refused = client.post(f"/api/workflows/{wf.pk}/versions/", body, format="multipart")
        assert errors_of(refused) == ["graph"]
    assert wf.versions.count() == 2
