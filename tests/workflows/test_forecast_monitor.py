"""Forecast error monitor, run step by step in this process (a real database and a real MLflow
store, no broker): a forecast trained on the history up to 2024-25 is compared with the actual
2025-26 counts; the school whose counts were changed gets one alert naming its grades and terms,
the others none; bad actuals and a model that is not a forecast get a message saying what to do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edumlops.monitoring import checks
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from tests.workflows.conftest import edge, node
from tests.workflows.test_forecast_blocks import SCHOOLS, history, run_graph, store
from workflows.blocks.base import BlockError
from workflows.blocks.monitoring import ForecastErrorMonitorBlock

__all__ = ["run_graph"]  # the fixture, shared with the forecast blocks' tests

GROWN = "Hillview High"


@pytest.fixture
def schools(district):
    return {
        name: School.objects.create(district=district, name=name, code=f"S{i}")
        for i, name in enumerate(SCHOOLS)
    }


def monitor_graph(history_version, actuals_version, **params):
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=history_version.pk),
        node("forecast", "train_forecast", method="ets", horizon=3, level=0.9),
        node("actuals", "dataset", dataset_version=actuals_version.pk),
        node("monitor", "forecast_error_monitor", **params),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("start", "start", "actuals", "start"),
        edge("data", "dataset", "forecast", "history"),
        edge("forecast", "model", "monitor", "model"),
        edge("actuals", "dataset", "monitor", "actuals"),
    ]
    return {"nodes": nodes, "edges": edges}


def split(frame):
    """The history up to 2024-25, and the history a term later (2025-26's counts added): the
    dataset a district uploads each term, holding the actual counts."""
    return frame[frame["year"] < 2025], frame.copy()


def test_a_school_whose_counts_miss_the_forecast_gets_one_alert_naming_grades_and_terms(
    district, schools, run_graph
):
    past, actual = split(history())
    grown = (actual["school"] == GROWN) & (actual["year"] == 2025)
    actual.loc[grown, "enrollment"] = (actual.loc[grown, "enrollment"] * 1.6).round().astype(int)
    steps = run_graph(
        monitor_graph(store(district, past), store(district, actual, name="Actual 2025-26"))
    )
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    by_school = {r["school"]: r for r in report["results"]}
    assert set(by_school) == set(SCHOOLS)
    assert by_school[GROWN]["flagged"] == by_school[GROWN]["compared"] == 2 * 3
    assert by_school[GROWN]["total_error"] > 0.3
    assert any(r.startswith("grade 9 2025-26 fall: actual") for r in by_school[GROWN]["reasons"])
    alert = Alert.objects.get(monitor="forecast", school=schools[GROWN])
    assert alert.severity == "critical"
    assert "6 of 6 enrollment counts miss the forecast" in alert.message
    assert "Retrain the forecast" in alert.message
    assert by_school[GROWN]["alert"] == alert.pk
    # Riverside was forecast within 10% and inside its range (Pine Hill, open two years, has
    # a wide fallback forecast and may or may not be flagged)
    assert by_school["Riverside High School"]["alert"] is None
    assert not Alert.objects.filter(school=schools["Riverside High School"]).exists()
    summary = report["summary"]
    assert summary["compared"] == 3 * 2 * 3 and summary["pending"] == 0
    assert summary["unmatched"] == len(past)  # the earlier history, left out
    assert step.metrics["new_alerts"] == Alert.objects.filter(monitor="forecast").count() >= 1
    assert step.metrics["flagged"] >= 6
    logs = " ".join(entry["message"] for entry in step.logs)
    assert "18 actual counts compared with the forecast of" in logs
    assert f"{GROWN}: 6 of 6 flagged, alert #{alert.pk} (new)" in logs


def test_counts_of_part_of_the_year_leave_the_later_terms_pending(district, schools, run_graph):
    past, actual = split(history())
    fall = actual[(actual["year"] < 2025) | (actual["term"] == "fall")]
    steps = run_graph(monitor_graph(store(district, past), store(district, fall, name="Fall")))
    report = steps["monitor"].outputs["report"]
    assert steps["monitor"].status == "succeeded", steps["monitor"].reason
    assert report["summary"]["compared"] == 6 and report["summary"]["pending"] == 12
    logs = " ".join(entry["message"] for entry in steps["monitor"].logs)
    assert "12 forecast counts have no actual yet (later terms)." in logs


def test_actuals_without_an_enrollment_count_or_a_year_are_refused_with_the_format(
    district, schools, run_graph
):
    past, actual = split(history())
    steps = run_graph(monitor_graph(store(district, past), store(district, actual, name="Ok")))
    model = ModelVersion.objects.get(pk=steps["forecast"].outputs["model"]["model_version"])
    params = checks.ForecastErrorParams()
    alerts = Alert.objects.count()
    with pytest.raises(checks.CheckError) as missing:
        checks.check_forecast_error(
            district, model, actual.rename(columns={"enrollment": "students"}), params
        )
    assert "The actual enrollment has no column(s) enrollment" in str(missing.value)
    assert "school, grade, year, term, enrollment" in str(missing.value)
    with pytest.raises(checks.CheckError, match="year column must hold the school year"):
        checks.check_forecast_error(district, model, actual.assign(year="last year"), params)
    with pytest.raises(checks.CheckError, match="count of 0 or more"):
        checks.check_forecast_error(district, model, actual.assign(enrollment=-1), params)
    assert Alert.objects.count() == alerts


def test_actuals_of_a_term_that_was_not_forecast_say_which_terms_were(district, schools, run_graph):
    past, _ = split(history())
    old = past[past["year"] >= 2020]
    steps = run_graph(monitor_graph(store(district, past), store(district, old, name="Old")))
    step = steps["monitor"]
    assert step.status == "failed"
    assert "None of the actual counts is for a term" in step.reason
    assert "2025-26 fall" in step.reason


def test_a_risk_model_is_refused_with_the_monitor_to_use_instead(district):
    risk = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="x", algorithm="logreg"
    )
    # the block's Context is a protocol: the run's district is all the refusal reads
    context = SimpleNamespace(run=SimpleNamespace(workflow=SimpleNamespace(district=district)))
    block = ForecastErrorMonitorBlock()
    with pytest.raises(BlockError) as refused:
        block.execute(
            context,
            {"model": {"model_version": risk.pk}, "actuals": {"version": 0}},
            block.Params(),
        )
    assert "Forecast error monitor" in str(refused.value)
    assert "Performance monitor" in str(refused.value)
