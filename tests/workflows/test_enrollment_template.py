"""The "Enrollment forecast, retrained at each term start" template made through the API on the
demo's enrollment history and run end to end on a real Celery worker (PostgreSQL and Redis):
the forecast is registered, beats the seasonal naive in the backtest, becomes the challenger,
waits for district staff and tells them once approved."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.datasets.demo import seed_enrollment
from edumlops.registry.forecasts import load_forecast
from edumlops.registry.models import ModelVersion
from tests.workflows.conftest import wait_for
from workflows import engine
from workflows.gallery import TEMPLATES
from workflows.models import Notification, Run, StepRun, Workflow

KEY = "enrollment-forecast"


def test_the_template_is_runnable_and_reads_like_its_steps():
    template = TEMPLATES[KEY]
    assert template.available and template.missing == []
    assert template.title == "Enrollment forecast, retrained at each term start"
    kinds = [n["kind"] for n in template.build()["nodes"]]
    assert kinds == [
        "term_start_trigger",
        "dataset",
        "train_forecast",
        "backtest_gate",
        "set_alias",
        "approval_gate",
        "notify",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_enrollment_template_runs_end_to_end_on_a_worker_with_the_demo_history(
    ml_stores, worker, district, district_admin, staff
):
    version, created = seed_enrollment(district)
    assert created and version.rows == 1080
    client = APIClient()
    client.force_authenticate(district_admin)
    response = client.post(
        f"/api/templates/{KEY}/use/",
        {"name": "Enrollment forecast", "choices": {"dataset_version": version.pk}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["draft"] is False
    workflow = Workflow.objects.get(pk=response.json()["id"])
    run = engine.start_run(workflow, user=district_admin)

    def settled():
        run.refresh_from_db()
        return run.finished or run.status == Run.Status.WAITING_APPROVAL

    try:
        wait_for(settled, timeout=600, what=f"run {run.pk} to reach the approval")
        assert run.status == Run.Status.WAITING_APPROVAL, run.reason
        waiting = StepRun.objects.get(run=run, status=StepRun.Status.WAITING_APPROVAL)
        assert waiting.node_id == "approve"
        engine.approve(run, staff, "Matches the principals' estimates.", "approve")
        wait_for(settled, timeout=120, what=f"run {run.pk} to end")
    finally:
        steps = {s.node_id: s for s in run.steps.all()}
        print({n: (s.status, s.reason) for n, s in steps.items()}, worker.output()[-3000:])
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    assert all(s.status == StepRun.Status.SUCCEEDED for s in steps.values())

    model = ModelVersion.objects.get(task_type="forecast")
    assert model.name == "maple-enrollment-forecast" and model.aliases == ["challenger"]
    assert model.dataset_version == version and model.algorithm == "ets"
    rows = load_forecast(model)
    assert len(rows) == 36 * 3  # 36 school-grade series, one school year of three terms
    assert rows["period"].iloc[:3].tolist() == ["2026-27 fall", "2026-27 spring", "2026-27 summer"]
    # Mill Road Elementary opened in the fall of 2024: too short for ETS, and it says so
    mill = rows[rows["school"] == "Mill Road Elementary"]
    assert set(mill["method"]) == {"seasonal_naive"} and (mill["point"] > 0).all()

    gate = steps["backtest"].metrics
    assert gate["mase"] < gate["baseline_mase"] and gate["mase_ratio"] < 1
    assert gate["mape"] < gate["baseline_mape"]
    assert model.validation["passed"] is True and len(model.validation["origins"]) == 6
    print(
        f"GATE on the demo history: ETS MASE {gate['mase']:.3f} vs seasonal naive "
        f"{gate['baseline_mase']:.3f} (ratio {gate['mase_ratio']:.2f}); MAPE "
        f"{gate['mape']:.2%} vs {gate['baseline_mape']:.2%}; coverage {gate['coverage']:.0%}"
    )
    assert Notification.objects.filter(step__run=run, step__node_id="tell", user=staff).exists()
