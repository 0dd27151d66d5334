"""The predict endpoint through ONNX Runtime (no mock): answers match scikit-learn on the served
version, a rollback is used by the very next request, concurrent predictions during rollbacks
get only valid versions, bad requests get a 400 naming each field and record nothing, and
permissions hold."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from django.db import connections
from rest_framework.test import APIClient

from edumlops.deployments import services
from edumlops.deployments.models import Deployment, Prediction
from edumlops.ml.training import prepare_frame
from tests.deployments.conftest import rows_for

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def predict(client, school, rows):
    return client.post(f"/api/schools/{school.pk}/predict/", {"rows": rows}, format="json")


def test_answers_match_scikit_learn_and_name_the_version(two_models, school_a, staff):
    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    rows = rows_for(20)
    response = predict(client_for(staff), school_a, rows)
    assert response.status_code == 200, response.json()
    answers = response.json()["predictions"]
    expected = v1.predict_proba(pd.DataFrame(rows))
    for answer, p in zip(answers, expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)
        assert answer["model"] == {"name": v1.name, "version": v1.version}
        assert answer["risk_band"] in ("low", "medium", "high")
        assert (answer["risk_band"] == "high") == (p >= 0.5)
        top = answer["top_features"]  # logistic regression explains itself
        assert len(top) == 3 and {t["direction"] for t in top} <= {"raises risk", "lowers risk"}
    recorded = Prediction.objects.filter(school=school_a)
    assert recorded.count() == 20
    assert set(recorded.first().features) == set(v1.feature_spec().columns)  # minimised


def test_a_random_forest_is_logged_served_and_reloaded_from_mlflow(
    ml_stores, district, school_a, staff
):
    """MLflow 3 saves with skops, which refuses a forest's tree type unless it is trusted."""
    from tests.deployments.conftest import make_model

    forest = make_model(district, algorithm="random_forest")
    services.roll_out(forest, scope="district", user=staff)
    rows = rows_for(5)
    response = predict(client_for(staff), school_a, rows)
    assert response.status_code == 200, response.json()
    expected = forest.predict_proba(pd.DataFrame(rows))  # the pipeline, loaded back from MLflow
    for answer, p in zip(response.json()["predictions"], expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)
        assert "top_features" not in answer


def test_a_rollback_is_used_by_the_very_next_request(two_models, school_a, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    current = services.roll_out(v2, scope="district", user=staff)
    client = client_for(staff)
    row = rows_for(1)
    assert predict(client, school_a, row).json()["predictions"][0]["model"]["version"] == "2"
    response = client.post(
        f"/api/deployments/{current.pk}/rollback/", {"reason": "bad week"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["model"]["version"] == v1.version
    assert predict(client, school_a, row).json()["predictions"][0]["model"]["version"] == "1"


@pytest.mark.django_db(transaction=True)
def test_eight_threads_predicting_during_twenty_rollbacks(two_models, school_a, staff, settings):
    settings.EDUMLOPS_THROTTLE_RATES = {}  # this test hammers on purpose
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    row = rows_for(1)
    valid = {v1.version, v2.version}
    seen, errors = [], []
    stop = threading.Event()

    def hammer():
        client = client_for(staff)
        try:
            while not stop.is_set():
                response = predict(client, school_a, row)
                if response.status_code != 200:
                    errors.append(response.status_code)
                else:
                    seen.append(response.json()["predictions"][0]["model"]["version"])
        except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            active = services.district_deployment(school_a.district)
            target = v2 if active.model_version == v1 else v1
            services.rollback(active, user=staff, reason=f"flip {i}", target=target)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen and set(seen) <= valid
    assert Deployment.objects.filter(status="active").count() == 1


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda r: r.pop("attendance_rate"), "attendance_rate", "missing"),
        (lambda r: r.update(student_name="Ada"), "student_name", "unknown feature"),
        (lambda r: r.update(quiz_average="high"), "quiz_average", "must be a number"),
        (lambda r: r.update(quiz_average=True), "quiz_average", "must be a number"),
        (lambda r: r.update(school=3), "school", "must be text"),
    ],
)
def test_each_bad_row_is_named_and_nothing_is_recorded(
    two_models, school_a, staff, change, field, problem
):
    services.roll_out(two_models[0], scope="district", user=staff)
    rows = rows_for(3)
    change(rows[1])
    response = predict(client_for(staff), school_a, rows)
    assert response.status_code == 400
    body = response.json()
    assert field in body["detail"]
    assert body["code"] == "invalid"
    assert any(
        e["row"] == 1
        and e["field"] == f"rows.1.{field}"
        and e["feature"] == field
        and e["problem"].startswith(problem)
        and e["message"].startswith(problem)
        for e in body["errors"]
    ), body
    assert not Prediction.objects.exists()


def test_malformed_bodies_are_refused(two_models, school_a, staff):
    services.roll_out(two_models[0], scope="district", user=staff)
    client = client_for(staff)
    for body in ({}, {"rows": []}, {"rows": [1]}, {"rows": [{}] * 1001}):
        response = client.post(f"/api/schools/{school_a.pk}/predict/", body, format="json")
        assert response.status_code == 400, body
    assert not Prediction.objects.exists()


def test_a_tampered_bundle_is_not_served(two_models, school_a, staff):
    from edumlops.ml import tracking

    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    folder = tracking.download(v1.run_id, "bundle")
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 1
    model.write_bytes(bytes(data))
    tracking.log_directory(v1.run_id, folder, "bundle")  # the store now holds the altered file
    response = predict(client_for(staff), school_a, rows_for(1))
    assert response.status_code == 503
    assert "model.onnx does not match its SHA-256" in response.json()["detail"]
    assert not Prediction.objects.exists()


def test_permissions(two_models, district, school_a, school_b, teacher_a, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    current = services.roll_out(v2, scope="district", user=staff)
    predict(client_for(staff), school_b, rows_for(1))
    teacher = client_for(teacher_a)
    assert predict(teacher, school_a, rows_for(1)).status_code == 200
    # another school's predictions: not even visible
    assert teacher.get(f"/api/schools/{school_b.pk}/predictions/").status_code == 404
    assert predict(teacher, school_b, rows_for(1)).status_code == 404
    # a district-wide rollback and a rollout are for district staff
    response = teacher.post(f"/api/deployments/{current.pk}/rollback/", {"reason": "x"})
    assert response.status_code == 404
    response = teacher.post(
        "/api/deployments/", {"model_version": v1.pk, "scope": "district"}, format="json"
    )  # a model of a district they do not see, as if it did not exist
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "model_version"
    # their own school, only when the district allows it
    district.teachers_may_roll_back = False
    district.save()
    response = teacher.post(f"/api/schools/{school_a.pk}/rollback/", {"reason": "odd"})
    assert response.status_code == 403
    district.teachers_may_roll_back = True
    district.save()
    response = teacher.post(f"/api/schools/{school_a.pk}/rollback/", {"reason": "odd"})
    assert response.status_code == 200, response.json()
    assert teacher.post(f"/api/schools/{school_b.pk}/rollback/", {"reason": "x"}).status_code == 404
    assert services.resolve(school_a).model_version == v1
    assert services.resolve(school_b).model_version == v2


def test_linear_explanations_add_up_to_the_models_log_odds(two_models):
    from edumlops.deployments import serving

    v1, _ = two_models
    loaded = serving.load(v1)
    rows = rows_for(30)
    rows[0]["school"] = "A school opened this year"  # unseen category: no contribution
    rows[1]["quiz_average"] = None  # imputed with the training median
    pipeline = v1.pipeline()
    log_odds = pipeline.decision_function(prepare_frame(pd.DataFrame(rows), v1.feature_spec()))
    intercept = pipeline[-1].intercept_[0]
    for parts, expected in zip(serving.explain(loaded, rows, top=99), log_odds, strict=True):
        assert intercept + sum(p["contribution"] for p in parts) == pytest.approx(
            expected, abs=1e-3
        )


def test_an_unseen_category_is_scored_flagged_and_counted(two_models, school_a, staff):
    """Categories the model never saw in training (its one-hot encoder's, read off the linear
    terms) are scored, named in `warnings`, recorded with the prediction and counted by the
    daily aggregate the monitors read."""
    from edumlops.monitoring import telemetry
    from edumlops.monitoring.models import DailyAggregate

    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    rows = rows_for(3)
    rows[1]["locality"] = "lunar"
    rows[2]["locality"] = "Urban"  # categories are compared exactly
    rows[2]["school_size"] = "astronaut-sized"
    response = predict(client_for(staff), school_a, rows)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert len(body["predictions"]) == 3
    warnings = sorted((w["row"], w["field"], w["code"]) for w in body["warnings"])
    assert warnings == [
        (1, "locality", "unseen_category"),
        (2, "locality", "unseen_category"),
        (2, "school_size", "unseen_category"),
    ]
    message = next(w["message"] for w in body["warnings"] if w["row"] == 1)
    assert "'lunar'" in message and "rural, suburban, urban" in message
    expected = v1.predict_proba(pd.DataFrame(rows))  # scikit-learn ignores the unknown too
    for answer, p in zip(body["predictions"], expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)

    recorded = list(Prediction.objects.filter(school=school_a).order_by("id"))
    assert [sorted(p.unseen_categories) for p in recorded] == [
        [],
        ["locality"],
        ["locality", "school_size"],
    ]
    since = recorded[0].created_at.date()
    assert telemetry.unseen_categories(school_a, since) == {"locality": 2, "school_size": 1}
    (aggregate,) = telemetry.aggregate_day(school_a, since)
    assert aggregate.unseen_categories == {"locality": 2, "school_size": 1}
    Prediction.objects.all().delete()  # raw rows pruned: the aggregate still counts them
    assert DailyAggregate.objects.get(pk=aggregate.pk).unseen_categories["locality"] == 2
    assert telemetry.unseen_categories(school_a, since) == {"locality": 2, "school_size": 1}


def test_known_categories_get_no_warning(two_models, school_a, staff):
    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    rows = rows_for(10)
    rows[0]["locality"] = None  # unknown is not unseen
    response = predict(client_for(staff), school_a, rows)
    assert response.status_code == 200, response.json()
    assert response.json()["warnings"] == []
    assert not Prediction.objects.exclude(unseen_categories=[]).exists()
