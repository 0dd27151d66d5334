"""Answers for a teacher to rate (edumlops/registry/reviews.py and its API), on a real database,
MLflow store and ONNX Runtime: the predict API queues a scorer's unsure answers when asked; a
teacher of a school in the district lists and scores them, a score outside the scale or none is
refused naming the scale, another district sees none; district staff add the rated answers to
the scorer's training answers as a new dataset version (text and the teacher's score in the
scorer's columns, the row's other columns kept); a stored score cannot change; a teacher cannot
add; nothing rated is refused; the queue stops at its cap."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.ml.datasets import Roles
from edumlops.ml.short_answer_synth import simulate_answers
from edumlops.registry import predictors, reviews
from edumlops.registry.models import AnswerReview, ModelVersion
from tests.registry.scorers import train_test_scorer

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def scorer(district, ml_stores):
    predictors._kept.clear()
    frame = simulate_answers(prompts=1, answers_per_prompt=400, seed=7).drop(columns=["true_score"])
    return train_test_scorer(district, frame, Roles(sensitive=["group"])).model, frame


def new_answers(count: int) -> list[str]:
    """Answers the scorer did not train on, to the same question."""
    return simulate_answers(prompts=1, answers_per_prompt=count, seed=11)["text"].tolist()


def queue(staff, model, texts, **extra):
    response = client_for(staff).post(
        f"/api/models/{model.pk}/predict/",
        {"answers": texts, "unsure_margin": 0.5, **extra},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return response.json()


def test_the_predict_api_queues_unsure_answers_only_when_asked(staff, scorer):
    model, frame = scorer
    texts = new_answers(60)
    body = queue(staff, model, texts)
    assert body["sent_to_teachers"] == 0 and not AnswerReview.objects.exists()

    body = queue(staff, model, texts, send_unsure_to_teachers=True)
    flagged = [a["index"] for a in body["answers"] if a["unsure"]]
    assert flagged and body["sent_to_teachers"] == len(flagged)
    queued = list(AnswerReview.objects.order_by("pk"))
    assert [r.text for r in queued] == [texts[i] for i in flagged]
    first = queued[0]
    answer = body["answers"][flagged[0]]
    assert first.status == "waiting" and first.source == "predict" and first.row is None
    assert first.score == answer["score"] and first.probabilities == answer["probabilities"]
    assert first.district == model.district and first.model_version == model


def test_a_teacher_of_the_district_scores_answers_and_bad_scores_are_named(
    staff, teacher_a, outsider, scorer
):
    model, frame = scorer
    queue(staff, model, new_answers(60), send_unsure_to_teachers=True)
    teacher = client_for(teacher_a)
    listed = teacher.get("/api/answer-reviews/").json()
    assert len(listed) == AnswerReview.objects.count() >= 2
    assert listed[0]["scale"] == [0, 3] and listed[0]["status"] == "waiting"
    first, second = listed[0]["id"], listed[1]["id"]

    for bad, words in ((7, "from 0 to 3 points"), ("two", "whole number")):
        refused = teacher.post(f"/api/answer-reviews/{first}/rate/", {"score": bad}, format="json")
        assert refused.status_code == 400
        assert words in str(refused.json()), refused.json()
    refused = teacher.post(f"/api/answer-reviews/{first}/rate/", {}, format="json")
    assert refused.status_code == 400 and "from 0 to 3" in str(refused.json())
    assert AnswerReview.objects.get(pk=first).status == "waiting"

    rated = teacher.post(f"/api/answer-reviews/{first}/rate/", {"score": 2}, format="json")
    assert rated.status_code == 200, rated.json()
    assert rated.json()["teacher_score"] == 2 and rated.json()["rated_by"] == teacher_a.username
    skipped = teacher.post(f"/api/answer-reviews/{second}/rate/", {"skip": True}, format="json")
    assert skipped.json()["status"] == "skipped" and skipped.json()["teacher_score"] is None
    assert [r["id"] for r in teacher.get("/api/answer-reviews/?status=rated").json()] == [first]
    assert first not in [r["id"] for r in teacher.get("/api/answer-reviews/").json()]

    stranger = client_for(outsider)
    assert stranger.get("/api/answer-reviews/").json() == []
    assert (
        stranger.post(f"/api/answer-reviews/{first}/rate/", {"score": 1}, format="json").status_code
        == 404
    )


def test_staff_add_the_rated_answers_to_the_training_answers(staff, teacher_a, scorer):
    model, frame = scorer
    queue(staff, model, new_answers(80), send_unsure_to_teachers=True)
    waiting = list(AnswerReview.objects.order_by("pk"))
    assert len(waiting) >= 3
    nothing = client_for(staff).post(f"/api/models/{model.pk}/ratings/add/")
    assert nothing.status_code == 409 and "rate some" in nothing.json()["detail"]

    for review, score in zip(waiting[:3], (0, 3, 1), strict=True):
        reviews.rate(review, score, teacher_a)
    teacher = client_for(teacher_a)
    assert teacher.post(f"/api/models/{model.pk}/ratings/add/").status_code == 404
    added = client_for(staff).post(f"/api/models/{model.pk}/ratings/add/")
    assert added.status_code == 201, added.json()
    body = added.json()
    assert body["added"] == 3 and body["version_number"] == 2 and body["rows"] == len(frame) + 3

    version = model.dataset_version.dataset.versions.get(number=2)
    stored = version.frame()
    assert list(stored.columns) == list(frame.columns)
    tail = stored.tail(3)
    assert tail["text"].tolist() == [r.text for r in waiting[:3]]
    assert tail["score_1"].astype(int).tolist() == [0, 3, 1]
    assert tail["group"].isna().all()  # sent by the API: no row to take the group from
    assert version.role_set.sensitive == ["group"]
    assert set(AnswerReview.objects.filter(stored_in=version).values_list("pk", flat=True)) == {
        r.pk for r in waiting[:3]
    }

    again = teacher.post(f"/api/answer-reviews/{waiting[0].pk}/rate/", {"score": 2}, format="json")
    assert again.status_code == 409 and "cannot be changed" in again.json()["detail"]
    nothing = client_for(staff).post(f"/api/models/{model.pk}/ratings/add/")
    assert nothing.status_code == 409


def test_the_queue_stops_at_its_cap(staff, scorer, monkeypatch):
    model, frame = scorer
    monkeypatch.setattr(reviews, "MAX_WAITING", 2)
    body = queue(staff, model, new_answers(80), send_unsure_to_teachers=True)
    assert body["unsure"]["count"] > 2 and body["sent_to_teachers"] == 2
    assert (
        queue(staff, model, new_answers(80), send_unsure_to_teachers=True)["sent_to_teachers"] == 0
    )
    assert AnswerReview.objects.count() == 2


def test_a_model_that_is_not_a_scorer_has_no_ratings(staff, district, ml_stores):
    model = ModelVersion.objects.create(
        district=district, name="risk", version="1", run_id="r", algorithm="logreg"
    )
    refused = client_for(staff).post(f"/api/models/{model.pk}/ratings/add/")
    assert refused.status_code == 409 and "not a short-answer scorer" in refused.json()["detail"]


def test_the_page_works_without_javascript_and_only_for_the_district(
    client, staff, teacher_a, outsider, scorer
):
    model, _ = scorer
    queue(staff, model, new_answers(60), send_unsure_to_teachers=True)
    review = AnswerReview.objects.order_by("pk").first()
    client.force_login(teacher_a)
    page = client.get("/ratings/")
    assert page.status_code == 200 and f'id="rating-{review.pk}"' in page.content.decode()
    assert b'data-testid="add-ratings"' not in page.content  # teachers rate, staff add
    assert b"Answers to rate" in client.get("/", follow=True).content  # in the menu

    back = "/ratings/?status=waiting&page=1"
    saved = client.post(f"/ratings/{review.pk}/", {"score": "3", "next": back})
    assert saved.status_code == 302 and saved["Location"] == back
    review.refresh_from_db()
    assert (review.status, review.teacher_score) == ("rated", 3)
    elsewhere = client.post(f"/ratings/{review.pk}/", {"score": "1", "next": "https://x.test/"})
    assert elsewhere["Location"] == "/ratings/"
    none = client.post(f"/ratings/{review.pk}/", {"next": back}, follow=True)
    assert "Choose a score from 0 to 3" in none.content.decode()
    assert client.post(f"/ratings/models/{model.pk}/add/").status_code == 403

    client.force_login(staff)
    added = client.post(f"/ratings/models/{model.pk}/add/", follow=True)
    assert "1 rated answer added to Answers: version 2" in added.content.decode()

    client.force_login(outsider)
    assert f'id="rating-{review.pk}"' not in client.get("/ratings/").content.decode()
    assert client.post(f"/ratings/{review.pk}/", {"score": "2"}).status_code == 404
    assert b"Answers to rate" not in client.get("/", follow=True).content
