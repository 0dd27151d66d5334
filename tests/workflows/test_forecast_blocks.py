"""Train enrollment forecast and Backtest forecast, run step by step in this process on generated
enrollment (a real database and a real MLflow store, no broker): the registered forecast version
and its table, the gate passing and stopping with its numbers, bad history, and the forecast
model refused by the blocks that work on yes/no risk models only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.datasets.models import ingest
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.enrollment_synth import BoundaryChange, Opening, simulate_enrollment
from edumlops.ml.forecast import forecast
from edumlops.registry.forecasts import ForecastError, load_forecast
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import StepRun

SCHOOLS = ["Riverside High School", "Hillview High", "Pine Hill Elementary"]
ROLES = Roles(school="school", grade="grade", time="period")


def history(**kwargs) -> pd.DataFrame:
    """Three schools, two grades each, ten years of three terms: Pine Hill opens in the fall of
    2024, and from the fall of 2021 a fifth of Riverside's students go to Hillview."""
    return simulate_enrollment(
        SCHOOLS,
        grades=(3, 4, 9, 10),
        seed=3,
        growth=0.08,
        opening=Opening("Pine Hill Elementary", 2024, "fall"),
        boundary_change=BoundaryChange("Riverside High School", "Hillview High", 2021, "fall"),
        **kwargs,
    )


def store(district, frame: pd.DataFrame, name: str = "Enrollment"):
    data = frame.to_csv(index=False).encode()
    version, _ = ingest(district=district, name=name, data=data, roles=ROLES)
    return version


def graph(version, forecast_params=None, *tail):
    """manual start → dataset → train_forecast, then the (node, edge) pairs in `tail`."""
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=version.pk),
        node("forecast", "train_forecast", **(forecast_params or {})),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("data", "dataset", "forecast", "history"),
    ]
    for n, e in tail:
        nodes.append(n)
        edges.append(e)
    return {"nodes": nodes, "edges": edges}


def run_all(workflow, user, capture) -> dict[str, StepRun]:
    """Start a run and execute its steps in order in this process; each step's row after."""
    with capture(execute=False):
        run = engine.start_run(workflow, user=user)
    me = engine.worker_id()
    order = engine._plan_of(run.pk).order
    for node_id in order:
        engine.execute_step(run.pk, node_id, me=me)
    return {s.node_id: s for s in StepRun.objects.filter(run=run)}


@pytest.fixture
def run_graph(
    make_workflow, platform_admin, django_capture_on_commit_callbacks, ml_stores, monkeypatch
):
    # the steps run in this test's transaction: the heartbeat thread's own connection would
    # only hold the test database open past its teardown
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))

    def run(g):
        return run_all(make_workflow(g), platform_admin, django_capture_on_commit_callbacks)

    return run


def backtest_node(**params):
    return node("backtest", "backtest_gate", **params), edge(
        "forecast", "model", "backtest", "model"
    )


# --- train, register, read back -------------------------------------------------------------
def test_train_forecast_registers_a_forecast_version_whose_table_load_forecast_reads(
    district, run_graph
):
    frame = history()
    version = store(district, frame)
    steps = run_graph(graph(version, {"method": "ets", "level": 0.9}))
    trained = steps["forecast"]
    assert trained.status == "succeeded", trained.reason
    read = " ".join(entry["message"] for entry in steps["data"].logs)
    assert f"{version}: 180 rows of enrollment counts per school, grade and term" in read
    model = ModelVersion.objects.get(pk=trained.outputs["model"]["model_version"])
    assert (model.task_type, model.algorithm) == ("forecast", "ets")
    assert model.name == "maple-enrollment-forecast" and model.dataset_version == version
    assert model.training["series"] == 6 and model.training["terms"] == 30
    assert trained.outputs["model"]["history"]["version"] == version.pk
    assert trained.metrics["series"] == 6
    logs = " ".join(entry["message"] for entry in trained.logs)
    assert "exponential smoothing (ETS) on 6 series (school and grade), 30 terms" in logs
    assert "2026-27 fall to 2026-27 summer, 90% intervals" in logs
    assert "Fallback: " in logs  # Pine Hill opened two years ago: too short for ETS
    calibration = model.training["forecast"]["calibration"]
    assert model.training["forecast"]["calibrate"] == 6 and calibration["applied"]
    assert calibration["origins"] == 6 and len(calibration["factors"]) == 3
    assert "Ranges calibrated on" in logs and "so that 90% held the actual count" in logs

    rows = load_forecast(model)
    assert len(rows) == 6 * 3 and rows.attrs["config"]["method"] == "ets"
    assert list(rows.columns[:6]) == ["school", "grade", "year", "term", "period", "step"]
    assert (rows["lower"] <= rows["point"]).all() and (rows["point"] <= rows["upper"]).all()
    assert (rows["level"] == 0.9).all()
    expected = forecast(frame, method="ets", level=0.9, calibrate=6)
    assert np.allclose(rows["point"], expected["point"]) and rows["grade"].dtype.kind == "i"
    assert np.allclose(rows["upper"], expected["upper"])  # the calibrated ranges are served
    own = forecast(frame, method="ets", level=0.9)
    assert not np.allclose(rows["upper"], own["upper"])
    pine = rows[rows["school"] == "Pine Hill Elementary"]
    assert set(pine["method"]) == {"seasonal_naive"} and pine["reason"].str.len().gt(0).all()

    mlflow_ready()
    registered = tracking.client().get_model_version(model.name, model.version)
    assert registered.tags["task_type"] == "forecast"
    assert registered.source.endswith("/forecast")


def test_the_backtest_passes_a_forecast_that_beats_the_seasonal_naive_and_records_it(
    district, run_graph
):
    version = store(district, history())
    steps = run_graph(graph(version, {"method": "ets"}, backtest_node(origins=4)))
    gate = steps["backtest"]
    assert gate.status == "succeeded", gate.reason
    m = gate.metrics
    assert m["mase"] < m["baseline_mase"] and m["mase_ratio"] < 1
    assert 0 < m["mape"] < m["baseline_mape"] and 0 <= m["coverage"] <= 1
    model = ModelVersion.objects.get(pk=gate.outputs["model"]["model_version"])
    assert model.validation["passed"] is True and model.validation["kind"] == "backtest"
    # one origin per registration cycle, the last whose next school year is known
    assert model.validation["origins"] == [
        "2023-24 summer",
        "2024-25 fall",
        "2024-25 spring",
        "2024-25 summer",
    ]
    assert model.validation["gate"]["mase"] == pytest.approx(m["mase"])
    # each origin's ranges calibrated on the six terms before it, as the forecast's were
    assert model.validation["calibrate"] == 6 and 0 <= m["raw_coverage"] <= 1
    assert model.validation["gate"]["raw_coverage"] == pytest.approx(m["raw_coverage"])
    logs = " ".join(entry["message"] for entry in gate.logs)
    assert "(calibrated on the 6 terms before each origin; the model's own ranges: " in logs
    assert "Passed: exponential smoothing (ETS) has MASE" in logs
    assert "it beats the baseline" in logs
    mlflow_ready()
    stored = tracking.read_json(model.run_id, "backtest.json")
    assert stored["passed"] is True and stored["summary"][0]["method"] == "seasonal_naive"


def test_the_backtest_stops_the_run_when_the_forecast_does_not_beat_the_baseline_enough(
    district, run_graph
):
    version = store(district, history())
    tell = node("tell", "notify"), edge("backtest", "model", "tell", "input")
    steps = run_graph(
        graph(version, {"method": "gbm"}, backtest_node(origins=3, max_ratio=0.05), tell)
    )
    gate = steps["backtest"]
    assert gate.status == "failed"
    assert gate.reason.startswith(
        'Stopped at "Backtest forecast" (backtest): backtest failed: gradient boosting on lags '
        "has MASE"
    )
    assert "is not below the limit 0.05: it does not beat the baseline by enough." in gate.reason
    assert steps["tell"].status == "blocked"
    assert {"mase", "baseline_mase", "mase_ratio", "mape", "baseline_mape"} <= set(gate.metrics)
    model = ModelVersion.objects.get(task_type="forecast")
    assert model.validation["passed"] is False
    assert model.validation["failures"][0].endswith("does not beat the baseline by enough.")


def test_a_seasonal_naive_forecast_is_the_baseline_and_cannot_be_backtested(district, run_graph):
    version = store(district, history())
    steps = run_graph(graph(version, {"method": "seasonal_naive"}, backtest_node()))
    assert steps["forecast"].status == "succeeded"
    assert steps["backtest"].status == "failed"
    assert "is the seasonal naive itself, the baseline the backtest compares with: train" in (
        steps["backtest"].reason
    )


# --- bad input -------------------------------------------------------------------------------
def test_history_with_a_missing_term_is_refused_naming_the_series_and_the_fix(district, run_graph):
    frame = history()
    hole = (frame["school"] == "Hillview High") & (frame["grade"] == 9)
    hole &= frame["period"] == "2020-21 spring"
    version = store(district, frame[~hole])
    steps = run_graph(graph(version))
    assert steps["forecast"].status == "failed"
    assert steps["forecast"].reason == (
        f'"Train enrollment forecast" (forecast) failed: "{version}" cannot be forecast: '
        "history has no row for Hillview High grade 9 in 2020-21 spring: give every term from "
        "a series' first row to the last period (0 when there were no students)."
    )
    assert not ModelVersion.objects.exists()


def test_a_history_too_short_for_the_backtest_stops_it_saying_what_to_change(district, run_graph):
    two_years = simulate_enrollment(SCHOOLS[:2], years=2, opening=None, boundary_change=None)
    version = store(district, two_years)
    steps = run_graph(graph(version, {"method": "ets"}, backtest_node(origins=6)))
    assert steps["forecast"].status == "succeeded"  # a season and a term is enough to forecast
    assert steps["backtest"].status == "failed"
    reason = steps["backtest"].reason
    assert "the backtest cannot run: Too little history for 6 origin(s) of 3 term(s)" in reason
    assert reason.endswith("Use fewer origins or a shorter horizon.")


def test_a_dataset_that_is_neither_labelled_nor_enrollment_is_refused_by_the_dataset_block(
    district, run_graph
):
    frame = history().rename(columns={"enrollment": "students"})
    version = store(district, frame, name="Counts")
    steps = run_graph(graph(version))
    assert steps["data"].status == "failed"
    assert f'"{version}" has no label column and positive class marked' in steps["data"].reason


# --- the forecast model where a yes/no risk model is expected ---------------------------------
@pytest.mark.parametrize(
    ("kind", "step"),
    [
        ("validate_model", "Validate model"),
        ("export_onnx", "Export to ONNX"),
        ("bias_gate", "Bias gate"),
    ],
)
def test_blocks_for_yes_no_risk_models_refuse_the_forecast(district, run_graph, kind, step):
    version = store(district, history())
    other = node("other", kind), edge("forecast", "model", "other", "model")
    steps = run_graph(graph(version, {"method": "seasonal_naive"}, other))
    assert steps["forecast"].status == "succeeded"
    assert steps["other"].status == "failed"
    model = ModelVersion.objects.get()
    handles = "a yes/no risk model" + (
        " or a scoring model (whole-point scores)" if kind == "bias_gate" else ""
    )
    assert steps["other"].reason.endswith(
        f"failed: {model}: {step} works on {handles}; this is a forecast model. "
        "Connect a model of the kind it works on."
    )


def test_load_forecast_refuses_a_model_that_is_not_a_forecast(district):
    model = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="x", algorithm="lr"
    )
    with pytest.raises(ForecastError, match="is not a forecast .*binary_risk.*Train enrollment"):
        load_forecast(model)


def test_a_forecast_per_school_total_has_no_grade_and_the_horizon_asked_for(district, run_graph):
    version = store(district, history())
    steps = run_graph(graph(version, {"method": "gbm", "by": "school", "horizon": 2}))
    assert steps["forecast"].status == "succeeded", steps["forecast"].reason
    rows = load_forecast(ModelVersion.objects.get())
    assert "grade" not in rows.columns and len(rows) == 3 * 2
    assert (
        rows.attrs["config"] | {"by": "school", "horizon": 2, "method": "gbm"}
        == (rows.attrs["config"])
    )
    assert rows["period"].unique().tolist() == ["2026-27 fall", "2026-27 spring"]


def test_student_rows_are_not_an_enrollment_history_and_the_error_says_what_is_needed(
    district, run_graph
):
    from edumlops.ml.synth import generate_district

    students = generate_district(200, seed=0)
    roles = Roles(label="at_risk", positive=["yes"], school="school")
    version, _ = ingest(
        district=district, name="Students", data=students.to_csv(index=False).encode(), roles=roles
    )
    steps = run_graph(graph(version))
    assert steps["forecast"].status == "failed"
    reason = steps["forecast"].reason
    assert f'"{version}" cannot be forecast: history is missing the column(s)' in reason
    assert "it needs one row per school and grade and term, with columns school, grade, " in reason
