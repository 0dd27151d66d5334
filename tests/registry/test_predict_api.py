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


# --- ordinal score: a short-answer scorer ----------------------------------------------------
@pytest.fixture
def scorer_model(district, ml_stores) -> tuple[ModelVersion, object]:
    from edumlops.ml.short_answer_synth import simulate_answers
    from tests.registry.scorers import train_test_scorer

    predictors._kept.clear()
    frame = simulate_answers(prompts=1, answers_per_prompt=600, seed=7)
    trained = train_test_scorer(district, frame)
    return trained.model, trained.scorer, frame


def test_a_scorer_scores_each_answer_and_marks_the_unsure_ones_for_a_teacher(staff, scorer_model):
    model, scorer, frame = scorer_model
    texts = frame["text"].tolist()[:40]
    response = client_for(staff).post(
        f"/api/models/{model.pk}/predict/", {"answers": texts}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["task_type"] == "ordinal_score" and body["model"]["id"] == model.pk
    assert body["scale"] == [0, 3] and body["points"] == [0, 1, 2, 3]
    assert body["unsure_margin"] == 0.2
    library = scorer.score(texts)  # scikit-learn on the same answers: ONNX gives the same
    assert [a["score"] for a in body["answers"]] == [int(s) for s in library.scores]
    for answer, expected in zip(body["answers"], library.expected, strict=True):
        assert answer["expected"] == pytest.approx(expected, abs=1e-3)
        assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    flagged = [a["index"] for a in body["answers"] if a["unsure"]]
    assert body["unsure"]["indexes"] == flagged and body["unsure"]["count"] == len(flagged)
    assert "route them to a human rater" in body["unsure"]["message"]
    # a wider margin marks at least as many answers unsure
    wider = (
        client_for(staff)
        .post(
            f"/api/models/{model.pk}/predict/",
            {"answers": texts, "unsure_margin": 0.9},
            format="json",
        )
        .json()
    )
    assert wider["unsure"]["count"] >= len(flagged) and wider["unsure_margin"] == 0.9


def test_a_scorer_request_without_answers_or_with_a_forecasts_fields_is_refused(
    staff, scorer_model
):
    model, _, _ = scorer_model
    client = client_for(staff)
    empty = client.post(f"/api/models/{model.pk}/predict/", {"answers": []}, format="json")
    assert empty.status_code == 400 and empty.json()["errors"][0]["field"] == "answers"
    wrong = client.post(f"/api/models/{model.pk}/predict/", {"school": "Alder"}, format="json")
    assert wrong.status_code == 400
    takes = "its request takes answers, send_unsure_to_teachers, unsure_margin, not 'school'"
    assert takes in wrong.json()["detail"]


def test_a_scorer_whose_onnx_file_changed_is_refused_with_409(staff, scorer_model):
    model, _, _ = scorer_model
    model.training = {
        **model.training,
        "scorer": {**model.training["scorer"], "onnx_sha256": "0" * 64},
    }
    model.save(update_fields=["training"])
    response = client_for(staff).post(
        f"/api/models/{model.pk}/predict/", {"answers": ["a"]}, format="json"
    )
    assert response.status_code == 409
    assert "changed after training" in response.json()["detail"]


# --- mastery: a BKT model ------------------------------------------------------------------------
@pytest.fixture
def mastery_model(district, ml_stores) -> ModelVersion:
    from edumlops.ml import knowledge_tracing as kt
    from edumlops.registry.mastery import MasteryJob
    from edumlops.registry.mastery import train_and_register as train_mastery

    predictors._kept.clear()
    truth = {
        "fractions": kt.BKTParams(prior=0.2, learn=0.3, guess=0.15, slip=0.1),
        "decimals": kt.BKTParams(prior=0.3, learn=0.2, guess=0.2, slip=0.1),
    }
    answers = kt.simulate_answers(truth, students=200, answers_per_skill=8, seed=3)
    answers = answers.drop(columns="mastered")
    version, _ = ingest(
        district=district, name="Answers", data=answers.to_csv(index=False).encode(), roles=Roles()
    )
    job = MasteryJob(
        district=district,
        dataset_version=version,
        model_name="mastery",
        columns={"student": "student", "skill": "skill", "correct": "correct", "order": "order"},
        forgets=False,
        num_fits=2,
        min_answers=30,
        seed=0,
        run_label="test",
    )
    return train_mastery(job, answers, Roles()).model


def test_a_mastery_model_answers_p_mastered_per_skill_and_the_skill_to_practise_next(
    staff, mastery_model
):
    client = client_for(staff)
    url = f"/api/models/{mastery_model.pk}/predict/"
    new = client.post(url, {"answers": []}, format="json")
    assert new.status_code == 200, new.json()
    start = {s["skill"]: s for s in new.json()["skills"]}
    assert set(start) == {"fractions", "decimals"}
    assert all(s["answers"] == 0 and not s["mastered"] for s in start.values())
    assert new.json()["next_skill"] in start and new.json()["threshold"] == 0.95

    right = [{"skill": "fractions", "correct": True}] * 6
    body = client.post(url, {"answers": right}, format="json").json()
    assert body["task_type"] == "mastery" and body["model"]["id"] == mastery_model.pk
    after = {s["skill"]: s for s in body["skills"]}
    assert after["fractions"]["answers"] == 6 and after["fractions"]["mastered"]
    assert after["fractions"]["p_mastered"] > start["fractions"]["p_mastered"]
    assert after["decimals"] == start["decimals"]  # nothing answered there: still its prior
    assert body["next_skill"] == "decimals" and "'decimals' is not mastered yet" in body["reason"]
    wrong = [{"skill": "fractions", "correct": 0}] * 6
    low = client.post(url, {"answers": wrong}, format="json").json()
    fractions = next(s for s in low["skills"] if s["skill"] == "fractions")
    # (learning between answers can still raise it: BKT's learn rate; less than six right)
    assert fractions["p_mastered"] < after["fractions"]["p_mastered"]
    assert not fractions["mastered"] and low["next_skill"] is not None


def test_a_mastery_request_with_an_unknown_skill_names_the_skills_the_model_knows(
    staff, mastery_model
):
    response = client_for(staff).post(
        f"/api/models/{mastery_model.pk}/predict/",
        {"answers": [{"skill": "geometry", "correct": True}]},
        format="json",
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "Unknown skill 'geometry'" in detail and "fractions" in detail and "decimals" in detail
    missing = client_for(staff).post(
        f"/api/models/{mastery_model.pk}/predict/",
        {"answers": [{"skill": "fractions"}]},
        format="json",
    )
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "answers.0.correct"
