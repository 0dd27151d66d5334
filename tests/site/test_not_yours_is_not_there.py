"""The HTML pages give one answer for "not yours" and "not there": for every role and every kind
of page, an object outside the caller's visible set answers exactly what a nonexistent id answers
(404, the same page); anonymous callers are sent to log in either way; a visible object opens."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from edumlops.datasets.models import ingest
from edumlops.deployments.models import Deployment
from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from workflows.models import Run, Workflow

pytestmark = pytest.mark.django_db

GRAPH = {"nodes": [{"id": "start", "kind": "manual_trigger"}], "edges": []}
MISSING = 2**31 - 7  # an id no row has

# the only per-response difference of two renderings of one page: Django masks the CSRF token
# anew for every response
_CSRF = re.compile(r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]+')


def _normalised(body: bytes) -> str:
    return _CSRF.sub(r"\1<csrf>", body.decode())


def _objects(district, school, staff, tmp_path, tag):
    """One object of each kind in `district`; their page URLs by kind."""
    data = generate_district(120, seed=len(tag)).to_csv(index=False).encode()
    version, _ = ingest(district=district, name=f"Data {tag}", data=data, user=staff)
    model = ModelVersion.objects.create(
        district=district,
        name=f"model-{tag}",
        version="1",
        run_id=f"run-{tag}",
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )
    Deployment.objects.create(district=district, model_version=model, scope="district")
    workflow = Workflow.objects.create(district=district, name=f"W {tag}", owner=staff)
    wv = workflow.save_version(GRAPH, "first", staff)
    run = Run.objects.create(workflow=workflow, version=wv, trigger_node="start")
    return {
        "school": f"/schools/{school.pk}/",
        "school model": f"/schools/{school.pk}/model/",
        "district": f"/districts/{district.pk}/",
        "dataset version": f"/datasets/versions/{version.pk}/",
        "model card": f"/models/{model.pk}/",
        "run": f"/runs/{run.pk}/",
        "workflow edit": f"/workflows/{workflow.pk}/",
    }


MISSING_URLS = {
    "school": f"/schools/{MISSING}/",
    "school model": f"/schools/{MISSING}/model/",
    "district": f"/districts/{MISSING}/",
    "dataset version": f"/datasets/versions/{MISSING}/",
    "model card": f"/models/{MISSING}/",
    "run": f"/runs/{MISSING}/",
    "workflow edit": f"/workflows/{MISSING}/",
}


@pytest.fixture
def world(
    settings, tmp_path, district, other_district, school_a, school_b, other_school, make_user
):
    settings.DATASET_DIR = tmp_path / "datasets"
    users = {
        "teacher of school A": make_user("ta", "teacher", school=school_a),
        "teacher of school B": make_user("tb", "teacher", school=school_b),
        "staff of district 1": make_user("s1", "district_staff", district=district),
        "staff of district 2": make_user("s2", "district_staff", district=other_district),
    }
    pages = {
        1: _objects(district, school_a, users["staff of district 1"], tmp_path, "one"),
        2: _objects(other_district, other_school, users["staff of district 2"], tmp_path, "two"),
    }
    pages[1]["school B"] = f"/schools/{school_b.pk}/"
    pages[1]["school B model"] = f"/schools/{school_b.pk}/model/"
    return users, pages


# what each role may see: (district of the objects, kind) pairs; the rest must look missing
VISIBLE = {
    "teacher of school A": {(1, "school"), (1, "school model")},
    "teacher of school B": {(1, "school B"), (1, "school B model")},
    "staff of district 1": {(1, kind) for kind in MISSING_URLS}
    | {(1, "school B"), (1, "school B model")},
    "staff of district 2": {(2, kind) for kind in MISSING_URLS},
}


@pytest.mark.parametrize("role", sorted(VISIBLE))
def test_an_invisible_object_answers_exactly_as_a_missing_one(world, role):
    users, pages = world
    client = Client()
    client.force_login(users[role])
    checked = 0
    for number, urls in pages.items():
        for kind, url in urls.items():
            answer = client.get(url)
            if (number, kind) in VISIBLE[role]:
                assert answer.status_code == 200, (role, kind, url)
                continue
            missing = client.get(MISSING_URLS.get(kind, MISSING_URLS["school"]))
            assert answer.status_code == missing.status_code == 404, (role, kind, url)
            assert _normalised(answer.content) == _normalised(missing.content), (role, kind)
            assert "Nothing here" in answer.content.decode()
            checked += 1
    assert checked >= 5


def test_anonymous_callers_are_sent_to_log_in_whether_or_not_the_object_exists(world):
    _, pages = world
    client = Client()
    for urls in pages.values():
        for kind, url in urls.items():
            answer = client.get(url)
            missing = client.get(MISSING_URLS.get(kind, MISSING_URLS["school"]))
            assert answer.status_code == missing.status_code == 302, kind
            assert answer["Location"].startswith("/login/?next=")
            assert missing["Location"].startswith("/login/?next=")


def test_a_visible_object_the_role_may_not_act_on_is_a_403_that_says_why(world):
    users, pages = world
    client = Client()
    # a teacher sees their school, but this district does not let teachers roll back
    client.force_login(users["teacher of school A"])
    school = School.objects.get(pk=int(pages[1]["school"].strip("/").split("/")[-1]))
    school.district.teachers_may_roll_back = False
    school.district.save(update_fields=["teachers_may_roll_back"])
    answer = client.post(f"/schools/{school.pk}/rollback/", {"reason": "x"})
    assert answer.status_code == 403
    page = answer.content.decode()
    assert "You may not roll back here: rollbacks here are for district staff" in page
    assert "Back to your dashboard" in answer.content.decode()
    # the same button for a school the teacher cannot see: 404, as for no school at all
    other = pages[2]["school"]
    hidden = client.post(other + "rollback/", {"reason": "x"})
    nothing = client.post(f"/schools/{MISSING}/rollback/", {"reason": "x"})
    assert hidden.status_code == nothing.status_code == 404
    assert _normalised(hidden.content) == _normalised(nothing.content)


def test_pages_under_api_answer_json_in_the_one_error_shape(db, make_user):
    client = Client()
    answer = client.get("/api/nope/")
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/json"
    assert answer.json() == {"detail": "Not found.", "code": "not_found", "errors": []}
    client.force_login(make_user("someone"))
    assert client.get("/api/nope/deeper/").json()["code"] == "not_found"
    page = client.get("/nope/")
    assert page.status_code == 404 and "Nothing here" in page.content.decode()


def test_a_deployment_of_another_district_is_a_404_on_the_deployments_page(world):
    users, pages = world
    model = ModelVersion.objects.get(name="model-two")
    theirs = Deployment.objects.create(district=model.district, model_version=model, scope="pilot")
    client = Client()
    client.force_login(users["staff of district 1"])
    for do in ("rollback", "promote"):
        hidden = client.post("/deployments/", {"do": do, "deployment": theirs.pk})
        nothing = client.post("/deployments/", {"do": do, "deployment": MISSING})
        assert hidden.status_code == nothing.status_code == 404, do
        assert _normalised(hidden.content) == _normalised(nothing.content)
    theirs.refresh_from_db()
    assert theirs.status == Deployment.Status.ACTIVE


# Posted ids that are not numbers answered 500 on these pages; now the 404 of an unknown id.
NOT_AN_ID = ["abc", "1.5", "-3", "²", "9" * 30, ""]


@pytest.mark.parametrize("value", NOT_AN_ID)
@pytest.mark.parametrize(
    ("url", "field", "extra", "who"),
    [
        ("/alerts/", "alert", {"status": "acknowledged", "comment": "x"}, "staff"),
        ("/edge/", "node", {"do": "revoke"}, "district_admin"),
        ("/approvals/", "run", {"comment": "x", "decision": "approve"}, "staff"),
        ("/workflows/new/", "district", {"name": "W"}, "district_admin"),
        ("/thresholds/", "workflow", {}, "staff"),
    ],
)
def test_a_posted_id_that_is_not_a_number_is_a_404(
    request, url, field, extra, who, value, district, school_a
):
    client = Client(raise_request_exception=False)
    client.force_login(request.getfixturevalue(who))
    answer = client.post(url, {field: value, **extra})
    assert answer.status_code == 404, answer.content[:300]
    assert "Nothing here" in answer.content.decode()
