"""In a real headless Chromium: district staff read the card of a short-answer scorer trained,
validated against the teachers and bias-checked on generated rated answers (the blocks run in
this process on a real database, MLflow store and ONNX Runtime). The card reads as a scorer:
agreement with the teachers in words (QWK beside the teacher–teacher ceiling), the answers sent
to a teacher, the bias gate's score differences per group, its ONNX file, and no risk wording.
Screenshot: var/test-artifacts/scorer/card.png."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.workflows.test_forecast_blocks import run_all
from tests.workflows.test_scorer_blocks import answers, bias_node, graph, store, validate_node
from workflows import engine
from workflows.models import Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "scorer"


@pytest.fixture
def scorer(transactional_db, ml_stores, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    version = store(district, answers())
    staff = get_user_model().objects.get(username="dana")
    workflow = Workflow.objects.create(district=district, name="Scorer", owner=staff)
    workflow.save_version(graph(version, {}, validate_node(), bias_node()), "first", staff)
    steps = run_all(workflow, staff, django_capture_on_commit_callbacks)
    assert steps["validate"].status == "succeeded", steps["validate"].reason
    assert steps["bias"].status == "succeeded", steps["bias"].reason
    return ModelVersion.objects.get(pk=steps["scorer"].outputs["model"]["model_version"])


def test_staff_read_a_scorers_card_with_its_agreement_with_the_teachers(page, live_server, scorer):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server.url, "dana")
    page.goto(f"{live_server.url}/models/{scorer.pk}/")
    page.screenshot(path=str(ARTIFACTS / "card.png"), full_page=True)

    assert page.get_by_test_id("task-type").inner_text() == "Score on a scale"
    body = page.locator("main").inner_text()
    assert "Suggest a score for a short written answer, for a teacher to confirm" in body
    assert "Flag students" not in body and "risk score" not in body
    assert "threshold" not in body

    section = page.get_by_test_id("scoring").inner_text()
    assert "Suggests a score from 0 to 3 points" in section
    assert page.get_by_test_id("scoring-outcome").inner_text() == "passed"
    m = scorer.validation["metrics"]
    table = page.get_by_test_id("agreement").inner_text()
    assert "Quadratic weighted kappa (QWK)" in table and "Two teachers (the ceiling)" in table
    assert f"{m['qwk']:.3f}" in table and f"{m['human_qwk']:.3f}" in table
    assert f"{m['exact_agreement'] * 100:.0f}%" in table
    assert "a scorer is not expected to do better than that" in section
    unsure = page.get_by_test_id("unsure").inner_text()
    assert f"{scorer.validation['unsure']['share'] * 100:.0f}%" in unsure
    assert "sent to a teacher" in unsure

    # the bias gate's score differences, per language group
    fairness = page.get_by_test_id("fairness")
    assert page.get_by_test_id("bias-outcome").inner_text().strip() != ""
    assert "held-out answers" in page.get_by_test_id("bias-how").inner_text()
    assert "at-risk" not in fairness.inner_text()
    groups = page.get_by_test_id("score-groups").inner_text()
    for g in scorer.bias_report["groups"]:
        assert f"{g['attribute']} = {g['group']}" in groups
        assert f"{g['metrics']['score_difference']:.3f}" in groups

    limits = body[body.index("Limitations") :]
    assert "answers to other questions" in limits and "go to a teacher" in limits
    onnx = page.get_by_test_id("scorer-onnx")
    assert scorer.training["scorer"]["onnx_sha256"][:10] in onnx.inner_html()
    assert "Not exported yet" not in body

    with page.expect_download() as download:
        page.get_by_test_id("download-md").click()
    markdown = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    assert "- Predicts: Score on a scale" in markdown and "## Scoring" in markdown
    assert "Teacher–teacher QWK (the ceiling)" in markdown and "## Fairness" in markdown
    assert scorer.training["scorer"]["onnx_sha256"] in markdown
