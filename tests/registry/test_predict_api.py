"""POST /api/models/{id}/predict/ answers in the shape of the version's task type (issue 20): a
forecast version's rows read back from a real MLflow store and narrowed by school, grade and
steps; bad bodies named; a risk model sent to the school's door; another district's version
answered like a missing one; the shapes documented in the OpenAPI."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.ml.enrollment_synth import Opening, simulate_enrollment
from edumlops.registry import predictors
from edumlops.registry.forecasts import ForecastJob, train_and_register
from edumlops.registry.models import ModelVersion

pytestmark = pytest.mark.django_db
SCHOOLS = ["Alder Elementary", "Birch Elementary", "Cedar Elementary"]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def forecast_model(district, ml_stores) -> ModelVersion:
    predictors._kept.clear()
    frame = simulate_enrollment(
        SCHOOLS,
        grades=(3, 4),
        seed=5,
        opening=Opening("Cedar Elementary", 2024, "fall"),
        boundary_change=None,
    )
    version, _ = ingest(
        district=district,
        name="Enrollment",
        data=frame.to_csv(index=False).encode(),
        roles=Roles(school="school", grade="grade", time="period"),
    )
    job = ForecastJob(
        district=district,
        dataset_version=version,
        model_name="enrollment-forecast",
        method="ets",
        horizon=None,
        level=0.8,
        by="grade",
        run_label="test",
    )
    return train_and_register(job, frame, Roles(school="school", grade="grade")).model


def test_a_forecast_answers_its_rows_with_intervals(staff, forecast_model):
    response = client_for(staff).post(
        f"/api/models/{forecast_model.pk}/predict/", {}, format="json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["task_type"] == "forecast" and data["level"] == 0.8 and data["by"] == "grade"
    assert data["model"] == {
        "id": forecast_model.pk,
        "name": forecast_model.name,
        "version": forecast_model.version,
    }
    rows = data["forecasts"]
    assert len(rows) == 3 * 2 * 3  # schools x grades x one school year of terms
    assert {r["school"] for r in rows} == set(SCHOOLS)
    assert all(r["lower"] <= r["point"] <= r["upper"] for r in rows)
    cedar = [r for r in rows if r["school"] == "Cedar Elementary"]
    assert {r["method"] for r in cedar} == {"seasonal_naive"}  # opened two years ago
    assert all(r["fallback_reason"] for r in cedar)


def test_a_forecast_is_narrowed_by_school_grade_and_steps(staff, forecast_model):
    body = {"school": "Birch Elementary", "grade": "4", "steps": 2}
    response = client_for(staff).post(
        f"/api/models/{forecast_model.pk}/predict/", body, format="json"
    )
    assert response.status_code == 200, response.content
    rows = response.json()["forecasts"]
    assert [(r["school"], r["grade"], r["step"]) for r in rows] == [
        ("Birch Elementary", "4", 1),
        ("Birch Elementary", "4", 2),
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"school": "Nowhere High"}, "School 'Nowhere High' is not in this forecast: use one of"),
        ({"grade": "12"}, "Grade '12' is not in this forecast"),
        ({"steps": 9}, "This forecast reaches 3 terms ahead; ask for steps 1 to 3"),
        ({"steps": 0}, "steps"),
        ({"answers": ["a text"]}, "its request takes grade, school, steps, not 'answers'"),
        ([1, 2], "The body must be a JSON object."),
    ],
)
def test_a_bad_forecast_request_is_a_400_that_names_the_fix(staff, forecast_model, body, words):
    response = client_for(staff).post(
        f"/api/models/{forecast_model.pk}/predict/", body, format="json"
    )
    assert response.status_code == 400, response.content
    data = response.json()
    assert set(data) == {"detail", "code", "errors"}
    assert words in str(data)


def test_a_risk_model_is_sent_to_the_schools_door(staff, district):
    model = ModelVersion.objects.create(
        district=district,
        name="maple-at-risk",
        version="1",
        run_id="r" * 32,
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )
    response = client_for(staff).post(f"/api/models/{model.pk}/predict/", {}, format="json")
    assert response.status_code == 409
    assert "/api/schools/{id}/predict/" in response.json()["detail"]


def test_another_districts_forecast_is_a_404(make_user, other_district, forecast_model):
    stranger = make_user("stranger", "district_staff", district=other_district)
    response = client_for(stranger).post(
        f"/api/models/{forecast_model.pk}/predict/", {}, format="json"
    )
    assert response.status_code == 404


def test_the_door_is_as_open_as_the_versions_own_page(teacher_a, staff, forecast_model):
    for user in (teacher_a, staff):
        client = client_for(user)
        seen = client.get(f"/api/models/{forecast_model.pk}/").status_code
        answered = client.post(
            f"/api/models/{forecast_model.pk}/predict/", {"steps": 1}, format="json"
        ).status_code
        assert (seen, answered) in {(200, 200), (404, 404), (403, 403)}


def test_the_openapi_documents_each_answer_shape(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/models/{id}/predict/"]["post"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/ModelPredictAnswer")
    shapes = schema["components"]["schemas"]["ModelPredictAnswer"]
    assert shapes["discriminator"]["propertyName"] == "task_type"
    assert "forecast" in shapes["discriminator"]["mapping"]
    assert "409" in operation["responses"]
