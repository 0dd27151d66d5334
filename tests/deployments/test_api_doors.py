"""The deployments API's doors (issue 16): every body read through its serializer, so the inputs
that used to answer 500 get a 400 naming the field; ids in bodies looked up only among what the
caller sees; predict refuses bad rows and hostile JSON with a 400 before any database work; the
rates on predict and token creation; and "not yours" answered exactly like "not there"."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.deployments import services, tokens
from edumlops.deployments.models import Deployment, IntegrationToken, Prediction
from edumlops.registry.models import ModelVersion
from tests.deployments.conftest import make_model, rows_for

pytestmark = pytest.mark.django_db

SHAPE = {"detail", "code", "errors"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def registered(district, version: str = "1") -> ModelVersion:
    """A registry row only (no MLflow, no bundle): enough for the doors that refuse early."""
    return ModelVersion.objects.create(
        district=district,
        name=f"{district.slug}-at-risk",
        version=version,
        run_id="r" * 32,
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )


def active(district, model: ModelVersion, scope: str = "district", schools=()) -> Deployment:
    deployment = Deployment.objects.create(district=district, model_version=model, scope=scope)
    deployment.schools.set(schools)
    return deployment


def fields(response) -> set[str]:
    body = response.json()
    assert set(body) == SHAPE, body
    return {e["field"] for e in body["errors"]}


# --- the listed 500s, each now a 400 naming the field -------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_version": {}, "scope": "pilot"}, "model_version"),
        ([], ""),
        ([None, None], ""),
        ({"model_version": 1, "scope": "pilot", "schools": ["x"]}, "schools.0"),
        ({"model_version": 2**63, "scope": "district"}, "model_version"),
        ({"model_version": 1, "scope": "everywhere"}, "scope"),
        ({"model_version": 1, "scope": "pilot"}, "schools"),
    ],
)
def test_a_bad_rollout_body_is_a_400_naming_the_field(staff, body, field):
    response = client_for(staff).post("/api/deployments/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in fields(response)
    assert not Deployment.objects.exists()


def test_a_rollout_names_an_unknown_or_invisible_model_and_foreign_schools(
    district, other_district, school_a, other_school, staff
):
    mine, theirs = registered(district), registered(other_district)
    client = client_for(staff)
    for pk in (theirs.pk, theirs.pk + 1000):  # another district's model looks like no model
        response = client.post(
            "/api/deployments/", {"model_version": pk, "scope": "district"}, format="json"
        )
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {
                "field": "model_version",
                "message": f"No model version {pk} that you may see: check the id.",
            }
        ]
    response = client.post(
        "/api/deployments/",
        {"model_version": mine.pk, "scope": "pilot", "schools": [school_a.pk, other_school.pk]},
        format="json",
    )
    assert response.status_code == 400 and fields(response) == {"schools"}
    assert str(other_school.pk) in response.json()["detail"]
    response = client.post(  # the service's own refusal: no bundle to serve
        "/api/deployments/", {"model_version": mine.pk, "scope": "district"}, format="json"
    )
    assert response.status_code == 400 and "Export ONNX" in response.json()["detail"]
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "bad week", "target_version": "abc"}, "target_version"),
        ({"reason": "bad week", "target_version": {}}, "target_version"),
        ([], ""),
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
    ],
)
def test_a_bad_rollback_body_is_a_400_naming_the_field(district, staff, body, field):
    deployment = active(district, registered(district))
    response = client_for(staff).post(
        f"/api/deployments/{deployment.pk}/rollback/", body, format="json"
    )
    assert response.status_code == 400
    assert field in fields(response)
    assert Deployment.objects.get(pk=deployment.pk).active


def test_a_rollback_target_of_another_district_is_named_not_found(district, other_district, staff):
    deployment = active(district, registered(district))
    foreign = registered(other_district)
    response = client_for(staff).post(
        f"/api/deployments/{deployment.pk}/rollback/",
        {"reason": "bad week", "target_version": foreign.pk},
        format="json",
    )
    assert response.status_code == 400 and fields(response) == {"target_version"}
    assert Deployment.objects.get(pk=deployment.pk).active


@pytest.mark.parametrize("body", [[], [None], "pilot", 7])
def test_a_promote_body_that_is_not_an_object_is_a_400(district, school_a, staff, body):
    pilot = active(district, registered(district), scope="pilot", schools=[school_a])
    response = client_for(staff).post(f"/api/deployments/{pilot.pk}/promote/", body, format="json")
    assert response.status_code == 400
    assert fields(response) == {""}
    assert "Expected a dictionary" in response.json()["detail"]
    assert Deployment.objects.get(pk=pilot.pk).active


@pytest.mark.parametrize("body", [[], [None, None], {"reason": {}}, {}])
def test_a_bad_school_rollback_body_is_a_400(district, school_a, staff, body):
    active(district, registered(district))
    response = client_for(staff).post(f"/api/schools/{school_a.pk}/rollback/", body, format="json")
    assert response.status_code == 400
    assert fields(response) <= {"", "reason"}
    assert Deployment.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "SIS", "district": "abc"}, "district"),
        ({"name": "SIS", "district": {}}, "district"),
        ({}, "name"),
        ([], ""),
        ({"name": "SIS", "district": -1}, "district"),
        ({"name": "   ", "district": 1}, "name"),
        ({"name": "SIS", "district": 1, "school": "x"}, "school"),
    ],
)
def test_a_bad_token_body_is_a_400_naming_the_field(staff, body, field):
    response = client_for(staff).post("/api/tokens/", body, format="json")
    assert response.status_code == 400
    assert field in fields(response)
    assert not IntegrationToken.objects.exists()


def test_a_token_names_a_school_outside_its_district(district, other_school, staff):
    response = client_for(staff).post(
        "/api/tokens/",
        {"name": "SIS", "district": district.pk, "school": other_school.pk},
        format="json",
    )
    assert response.status_code == 400 and fields(response) == {"school"}
    assert not IntegrationToken.objects.exists()


def test_tokens_are_listed_and_created_in_the_documented_shapes(district, school_a, staff):
    client = client_for(staff)
    made = client.post(
        "/api/tokens/",
        {"name": "SIS", "district": district.pk, "school": school_a.pk},
        format="json",
    )
    assert made.status_code == 201
    assert set(made.json()) == {"id", "name", "key", "prefix"}
    listed = client.get("/api/tokens/").json()
    assert [(t["name"], t["school"], t["revoked"]) for t in listed] == [("SIS", school_a.pk, False)]
    revoked = client.post(f"/api/tokens/{listed[0]['id']}/revoke/")
    assert revoked.json() == {"id": listed[0]["id"], "revoked": True}


# --- the rates ------------------------------------------------------------------------------------


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert body["code"] == "throttled" and body["errors"] == []
    assert "available in" in body["detail"]


def test_predict_is_throttled_per_caller(settings, school_a, staff, teacher_a):
    settings.EDUMLOPS_THROTTLE_RATES = {"predict": "2/min"}
    cache.clear()
    url = f"/api/schools/{school_a.pk}/predict/"
    client = client_for(staff)
    for _ in range(2):  # no model is deployed: 409, but the calls count
        assert client.post(url, {"rows": rows_for(1)}, format="json").status_code == 409
    assert_throttled(client.post(url, {"rows": rows_for(1)}, format="json"))
    # another caller has a count of their own
    assert client_for(teacher_a).post(url, {"rows": rows_for(1)}, format="json").status_code == 409


def test_token_creation_is_throttled_but_listing_is_not(settings, district, staff):
    settings.EDUMLOPS_THROTTLE_RATES = {"tokens": "2/min"}
    cache.clear()
    client = client_for(staff)
    for i in range(2):
        body = {"name": f"SIS {i}", "district": district.pk}
        assert client.post("/api/tokens/", body, format="json").status_code == 201
        assert client.get("/api/tokens/").status_code == 200
    for _ in range(3):
        assert client.get("/api/tokens/").status_code == 200
    third = client.post("/api/tokens/", {"name": "SIS 3", "district": district.pk}, format="json")
    assert_throttled(third)
    assert IntegrationToken.objects.count() == 2


# --- not yours looks like not there ---------------------------------------------------------------


def test_another_districts_objects_answer_exactly_like_missing_ones(
    district, other_district, school_a, other_school, teacher_a, staff
):
    theirs = active(other_district, registered(other_district))
    teacher, staff_client = client_for(teacher_a), client_for(staff)
    missing = theirs.pk + 1000
    for client in (teacher, staff_client):
        for path in (
            "/api/deployments/{}/",
            "/api/deployments/{}/rollback/",
            "/api/deployments/{}/promote/",
        ):
            method = client.get if path.endswith("/{}/") else client.post
            body = {"reason": "x"}
            seen = method(path.format(theirs.pk), body, format="json")
            unknown = method(path.format(missing), body, format="json")
            assert seen.status_code == unknown.status_code == 404
            assert seen.json() == unknown.json()
    for path in ("/api/schools/{}/predictions/",):
        seen, unknown = teacher.get(path.format(other_school.pk)), teacher.get(path.format(99999))
        assert seen.status_code == unknown.status_code == 404 and seen.json() == unknown.json()
    for path in ("/api/schools/{}/rollback/", "/api/schools/{}/predict/"):
        body = {"reason": "x", "rows": rows_for(1)}
        seen = teacher.post(path.format(other_school.pk), body, format="json")
        unknown = teacher.post(path.format(99999), body, format="json")
        assert seen.status_code == unknown.status_code == 404 and seen.json() == unknown.json()
    token = IntegrationToken.objects.create(
        district=other_district, name="theirs", prefix="x", key_hash="h" * 64
    )
    seen, unknown = (
        staff_client.post(f"/api/tokens/{pk}/revoke/") for pk in (token.pk, token.pk + 1000)
    )
    assert seen.status_code == unknown.status_code == 404 and seen.json() == unknown.json()
    assert IntegrationToken.objects.get(pk=token.pk).revoked_at is None


def test_a_visible_deployment_the_role_may_not_change_is_a_403_saying_why(
    district, school_a, platform_admin
):
    pilot = active(district, registered(district), scope="pilot", schools=[school_a])
    response = client_for(platform_admin).post(
        f"/api/deployments/{pilot.pk}/promote/", {"reason": "go"}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {
        "detail": "You may not promote here: rollouts and promotions are decided by district "
        "staff.",
        "code": "permission_denied",
        "errors": [],
    }


def test_a_token_sees_no_school_of_another_district(district, other_school, school_a, staff):
    _, key = tokens.create(district, "SIS", staff)
    sis = APIClient()
    sis.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    seen = sis.post(f"/api/schools/{other_school.pk}/predict/", {"rows": []}, format="json")
    unknown = sis.post("/api/schools/999999/predict/", {"rows": []}, format="json")
    assert seen.status_code == unknown.status_code == 404 and seen.json() == unknown.json()


# --- predict: rows checked against the model, hostile JSON refused -------------------------------


@pytest.fixture
def served(ml_stores, district, school_a, staff):
    model = make_model(district)
    services.roll_out(model, scope="district", user=staff)
    return model


def raw(client, school, text: str):
    return client.post(
        f"/api/schools/{school.pk}/predict/",
        data=text.encode("utf-8", "surrogatepass"),
        content_type="application/json",
    )


def test_predict_refuses_hostile_json_with_a_400_and_records_nothing(served, school_a, staff):
    client = client_for(staff)
    row = rows_for(1)[0]
    assert isinstance(row["school"], str)  # a text feature
    import json

    good = json.dumps({"rows": [row]})
    assert raw(client, school_a, good).status_code == 200
    Prediction.objects.all().delete()
    hostile = {
        "400 digits": good.replace(json.dumps(row["grade"]), "9" * 400, 1),
        "NUL in text": good.replace(json.dumps(row["school"]), '"Alder\\u0000School"', 1),
        "raw NUL": good.replace(json.dumps(row["school"]), '"Alder\x00School"', 1),
        "surrogate": good.replace(json.dumps(row["school"]), '"\\ud800"', 1),
        "deep": "[" * 100_000 + "]" * 100_000,
        "deep object": '{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "NaN": good.replace(json.dumps(row["grade"]), "NaN", 1),
        "1e999": good.replace(json.dumps(row["grade"]), "1e999", 1),
        "not UTF-8": None,
    }
    for name, text in hostile.items():
        if text is None:
            response = client.post(
                f"/api/schools/{school_a.pk}/predict/",
                data=b"\xff\xfe{",
                content_type="application/json",
            )
        else:
            assert text != good, name
            response = raw(client, school_a, text)
        assert response.status_code == 400, (name, response.content[:300])
        assert set(response.json()) == SHAPE
        assert response.json()["code"] == "parse_error", name
    assert not Prediction.objects.exists()


def test_predict_names_each_bad_row_and_feature_with_the_fix(served, school_a, staff):
    client = client_for(staff)
    rows = rows_for(5)
    rows[0]["school"] = "x" * 257  # text too long
    rows[1].pop("grade")  # missing
    rows[2]["nickname"] = "Ada"  # unknown feature
    rows[3]["grade"] = "ten"  # wrong type
    rows[4]["school"] = 12  # wrong type
    response = client.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == SHAPE and body["code"] == "invalid"
    named = {(e["field"], e["row"], e["feature"]) for e in body["errors"]}
    assert named == {
        ("rows.0.school", 0, "school"),
        ("rows.1.grade", 1, "grade"),
        ("rows.2.nickname", 2, "nickname"),
        ("rows.3.grade", 3, "grade"),
        ("rows.4.school", 4, "school"),
    }
    fixes = {e["field"]: e["message"] for e in body["errors"]}
    assert "at most 256 characters" in fixes["rows.0.school"]
    assert "send a value for grade" in fixes["rows.1.grade"]
    assert "remove it" in fixes["rows.2.nickname"]
    assert "send a finite number" in fixes["rows.3.grade"]
    assert "as text" in fixes["rows.4.school"]
    one = rows_for(1)[0]
    one["grade"] = [1]
    response = client.post(f"/api/schools/{school_a.pk}/predict/", {"row": one}, format="json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["row.grade"]
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], ""),
        ("rows", ""),
        ({}, ""),
        ({"rows": [{}], "row": {}}, ""),
        ({"rows": "x"}, "rows"),
        ({"rows": []}, "rows"),
        ({"rows": [1]}, "rows.0"),
        ({"rows": [{}] * 1001}, "rows"),
        ({"row": [1]}, "row"),
    ],
)
def test_predict_refuses_bodies_of_the_wrong_shape(served, school_a, staff, body, field):
    response = client_for(staff).post(f"/api/schools/{school_a.pk}/predict/", body, format="json")
    assert response.status_code == 400
    assert field in fields(response)
    assert not Prediction.objects.exists()


def test_one_row_is_still_answered(served, school_a, staff):
    response = client_for(staff).post(
        f"/api/schools/{school_a.pk}/predict/", {"row": rows_for(1)[0]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["deployment"] == services.resolve(school_a).pk
    assert Prediction.objects.count() == 1
    listed = client_for(staff).get(f"/api/schools/{school_a.pk}/predictions/").json()
    assert response.json()["warnings"] == []
    assert set(listed[0]) == {
        "id",
        "at",
        "model_version",
        "probability",
        "risk_band",
        "features",
        "unseen_categories",
    }
    assert listed[0]["unseen_categories"] == []
    assert not AuditRecord.objects.filter(action="rollback").exists()


def test_predict_is_json_only(school_a, staff):
    form = {f"rows.{i}.grade": "9" for i in range(1100)}
    response = client_for(staff).post(f"/api/schools/{school_a.pk}/predict/", form)  # multipart
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not Prediction.objects.exists()
