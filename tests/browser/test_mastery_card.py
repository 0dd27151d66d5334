"""In a real headless Chromium: district staff read the card of a mastery model (BKT) trained
and validated on answer logs drawn from a planted BKT truth (the blocks run in this process on a
real database and MLflow store). The card reads as a mastery model: each skill's parameters in
words, a skill with degenerate parameters marked, the validation on held-out students against
the pass-rate baseline, no bias gate (and why), served from its parameters, no risk wording.
Screenshot: var/test-artifacts/mastery/card.png."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from edumlops.ml import knowledge_tracing as kt
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.workflows.test_forecast_blocks import run_all
from tests.workflows.test_mastery_blocks import TRUTH, graph, store, validate_node
from workflows import engine
from workflows.models import Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "mastery"


@pytest.fixture
def mastery(transactional_db, ml_stores, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    log = kt.simulate_answers(TRUTH, students=250, answers_per_skill=8, seed=11)
    version = store(district, log.drop(columns="mastered"))
    staff = get_user_model().objects.get(username="dana")
    workflow = Workflow.objects.create(district=district, name="Mastery", owner=staff)
    workflow.save_version(graph(version, {}, validate_node()), "first", staff)
    steps = run_all(workflow, staff, django_capture_on_commit_callbacks)
    assert steps["validate"].status == "succeeded", steps["validate"].reason
    return ModelVersion.objects.get(pk=steps["train"].outputs["model"]["model_version"])


def test_staff_read_a_mastery_card_with_its_skills_in_words(page, live_server, mastery):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server.url, "dana")
    page.goto(f"{live_server.url}/models/{mastery.pk}/")
    page.screenshot(path=str(ARTIFACTS / "card.png"), full_page=True)

    assert page.get_by_test_id("task-type").inner_text() == "Skill mastery (knowledge tracing)"
    body = page.locator("main").inner_text()
    assert "Suggest which skill a student practises next" in body
    assert "Flag students" not in body and "risk score" not in body
    assert "kept at the schools" not in body and "threshold" not in body

    section = page.get_by_test_id("mastery").inner_text()
    assert f"learned from {mastery.training['answers']} answers" in section
    table = page.get_by_test_id("skills").inner_text()
    assert "Chance of knowing it before practice" in table
    assert "Chance of learning it at each answer" in table
    assert "Guess: right without knowing it" in table and "Slip: wrong while knowing it" in table
    assert page.get_by_test_id("degenerate").count() == 0  # the planted truth is not degenerate
    for name, p in mastery.training["parameters"].items():
        row = page.locator(f'[data-testid="skill"][data-skill="{name}"]').inner_text()
        assert f"{p['learn'] * 100:.0f}%" in row and f"{p['slip'] * 100:.0f}%" in row
    v = mastery.validation
    assert page.get_by_test_id("mastery-outcome").inner_text() == "passed"
    checks = page.get_by_test_id("mastery-validation").inner_text()
    assert f"{v['auc']:.3f}" in checks and f"{v['base_rate_auc']:.3f}" in checks
    assert f"{v['ece']:.3f}" in checks

    fairness = page.get_by_test_id("fairness").inner_text()
    assert "No bias gate: a mastery model only chooses which skill a student practises" in fairness
    assert "served from its parameters" in body and "Not exported yet" not in body

    # a refit whose guess and slip went too high (guess >= 1 - slip): the skill is marked
    mastery.training["parameters"]["decimals"].update(guess=0.6, slip=0.45)
    mastery.save(update_fields=["training"])
    page.reload()
    row = page.locator('[data-testid="skill"][data-skill="decimals"]')
    assert "a right answer does not show it is known" in row.inner_text()
    assert page.get_by_test_id("degenerate").count() == 1
    assert "decimals: guess and slip are so high" in page.locator("main").inner_text()

    with page.expect_download() as download:
        page.get_by_test_id("download-md").click()
    markdown = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    assert "- Predicts: Skill mastery (knowledge tracing)" in markdown
    assert "## Mastery" in markdown and "## Fairness" not in markdown
    assert "| decimals (degenerate: a right answer does not show it is known) |" in markdown
