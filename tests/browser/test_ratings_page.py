"""In a real headless Chromium: a scorer trained on generated answers (real database, MLflow
store and ONNX Runtime) was unsure about new answers, queued by the Answer drift monitor's check
with their rows. A teacher finds "Answers to rate" in the menu, sees an answer with its question
but not the student's group, the scorer's hesitation, scores one (swapped in place by htmx),
skips one, and is told the range when saving no score; district staff then add the rated answer
to the scorer's training answers and see the new dataset version. Screenshot:
var/test-artifacts/ratings/ratings.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.ml.short_answer_synth import simulate_answers
from edumlops.monitoring import checks
from edumlops.registry.models import AnswerReview
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.registry.scorers import train_test_scorer

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "ratings"
ROLES = Roles(sensitive=["group"])


@pytest.fixture
def queued(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    frame = simulate_answers(prompts=1, answers_per_prompt=400, seed=7).drop(columns=["true_score"])
    model = train_test_scorer(district, frame, ROLES).model
    new = simulate_answers(prompts=1, answers_per_prompt=60, seed=11).drop(
        columns=["true_score", "score_1", "score_2"]
    )
    version, _ = ingest(
        district=district, name="New answers", data=new.to_csv(index=False).encode(), roles=ROLES
    )
    params = checks.AnswerDriftParams(margin=0.5)
    result = checks.check_answer_drift(district, model, new, params, dataset_version=version)
    assert result.sent_to_teachers >= 3
    return model, result


def test_a_teacher_scores_unsure_answers_and_staff_add_them_to_training(page, live_server, queued):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    model, result = queued
    log_in(page, live_server.url, "tom")  # a teacher
    page.get_by_role("link", name="Answers to rate").click()
    page.get_by_test_id("ratings").wait_for()
    items = page.get_by_test_id("rating")
    assert items.count() == min(result.sent_to_teachers, 20)
    page.screenshot(path=str(ARTIFACTS / "ratings.png"), full_page=True)
    scorers = page.get_by_test_id("rating-scorer")
    assert scorers.get_by_test_id("waiting-count").inner_text() == str(result.sent_to_teachers)
    assert page.get_by_test_id("add-ratings").count() == 0  # teachers rate, staff add

    first = items.first
    review = AnswerReview.objects.get(pk=int(first.get_attribute("data-review")))
    assert first.get_by_test_id("rating-text").inner_text() == review.text
    context = first.get_by_test_id("rating-context").inner_text()
    assert "prompt_id: photosynthesis" in context and "group" not in context
    assert "The scorer hesitated between" in first.get_by_test_id("rating-suggestion").inner_text()

    first.get_by_test_id("save-score").click()  # no score chosen
    first = page.locator(f"#rating-{review.pk}")
    assert "Choose a score from 0 to 3" in first.get_by_test_id("rating-error").inner_text()
    first.get_by_test_id("score-2").check()
    first.get_by_test_id("save-score").click()
    done = page.locator(f"#rating-{review.pk}").get_by_test_id("rating-done")
    done.wait_for()
    assert "Scored 2 by tom" in done.inner_text()
    review.refresh_from_db()
    assert (review.status, review.teacher_score, review.rated_by.username) == ("rated", 2, "tom")

    second = page.get_by_test_id("rating").nth(1)
    second_pk = int(second.get_attribute("data-review"))
    second.get_by_test_id("skip").click()
    page.locator(f"#rating-{second_pk}").get_by_test_id("rating-done").wait_for()
    assert AnswerReview.objects.get(pk=second_pk).status == "skipped"

    page.context.clear_cookies()
    log_in(page, live_server.url, "dana")  # district staff
    page.goto(f"{live_server.url}/ratings/?status=rated")
    assert page.get_by_test_id("rating").count() == 1
    add = page.get_by_test_id("add-ratings")
    assert "Add 1 rated answer to Answers" in add.inner_text()
    add.click()
    message = page.locator(".message.success")
    message.wait_for()
    assert "1 rated answer added to Answers: version 2 (401 rows)" in message.inner_text()
    stored = page.get_by_test_id("rating").first.get_by_test_id("rating-done").inner_text()
    assert "in the training answers" in stored
    review.refresh_from_db()
    assert review.stored_in.number == 2 and review.stored_in.frame()["group"].notna().all()
