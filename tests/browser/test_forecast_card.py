"""In a real headless Chromium: district staff read the card of an enrollment forecast trained and
backtested on the demo's enrollment history (the blocks run in this process on a real database
and MLflow store). The card reads as a forecast: what it is for, the series, the backtest
against last year's count with MAPE and MASE in words, no risk label and no bias gate.
Screenshot: var/test-artifacts/forecast/card.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.datasets.demo import seed_enrollment
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.workflows.conftest import edge, node
from tests.workflows.test_forecast_blocks import run_all
from workflows import engine
from workflows.models import Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "forecast"


@pytest.fixture
def forecast(transactional_db, ml_stores, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    version, _ = seed_enrollment(district)
    graph = {
        "nodes": [
            node("start", "manual_trigger"),
            node("data", "dataset", dataset_version=version.pk),
            node("forecast", "train_forecast"),
            node("backtest", "backtest_gate", origins=3),
        ],
        "edges": [
            edge("start", "start", "data", "start"),
            edge("data", "dataset", "forecast", "history"),
            edge("forecast", "model", "backtest", "model"),
        ],
    }
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.get(username="dana")
    workflow = Workflow.objects.create(district=district, name="Forecast", owner=staff)
    workflow.save_version(graph, "first", staff)
    steps = run_all(workflow, staff, django_capture_on_commit_callbacks)
    assert steps["backtest"].status == "succeeded", steps["backtest"].reason
    return ModelVersion.objects.get(pk=steps["forecast"].outputs["model"]["model_version"])


def test_staff_read_a_forecast_card_with_its_backtest_and_no_risk_wording(
    page, live_server, forecast
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server.url, "dana")
    page.goto(f"{live_server.url}/models/{forecast.pk}/")

    assert page.get_by_test_id("task-type").inner_text() == "Enrollment forecast"
    body = page.locator("main").inner_text()
    assert "Plan staff, rooms and budgets per school and grade" in body
    assert "Flag students" not in body and "risk score" not in body
    assert "Label" not in page.locator("dl.facts").inner_text()

    section = page.get_by_test_id("forecast")
    text = section.inner_text()
    assert "Exponential smoothing (ETS) forecasts 3 terms (2026-27 fall to 2026-27 summer)" in text
    assert "80% of the time" in text
    calibration = page.get_by_test_id("calibration").inner_text()
    assert "Ranges calibrated on" in calibration
    assert "so that 80% held the actual count" in calibration
    next_term = float(page.get_by_test_id("next-term").inner_text().replace(",", ""))
    assert next_term == pytest.approx(forecast.training["forecast"]["total_next_term"], abs=1)
    gate = forecast.validation["gate"]
    assert page.get_by_test_id("backtest-outcome").inner_text() == "passed"
    assert "On 3 past registration cycles" in text
    table = page.get_by_test_id("backtest").inner_text()
    assert "Average error, share of the count (MAPE)" in table
    assert f"{gate['mape'] * 100:.1f}%" in table and f"{gate['baseline_mape'] * 100:.1f}%" in table
    assert f"{gate['mase']:.3f}" in table and f"{gate['baseline_mase']:.3f}" in table
    raw = page.get_by_test_id("raw-coverage").inner_text()
    assert raw == f"{gate['raw_coverage'] * 100:.0f}%"
    # Mill Road Elementary opened in 2024: its grades got a simpler forecast, said in words
    assert "Mill Road Elementary" in page.get_by_test_id("fallbacks").inner_text()

    fairness = page.get_by_test_id("fairness").inner_text()
    assert "No bias gate: a forecast counts students per school and grade" in fairness
    assert "answered from its stored table" in body
    page.screenshot(path=str(ARTIFACTS / "card.png"), full_page=True)

    # the Markdown download says the same
    with page.expect_download() as download:
        page.get_by_test_id("download-md").click()
    markdown = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    assert "- Predicts: Enrollment forecast" in markdown and "## Forecast" in markdown
    assert "- Ranges calibrated on" in markdown and "before calibration" in markdown
