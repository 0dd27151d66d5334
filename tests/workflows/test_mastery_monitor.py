"""Mastery monitor, run step by step in this process (a real database and a real MLflow store, no
broker): a knowledge-tracing model retrained on answers whose truth changed is compared with its
previous version and the moved skill gets one alert naming the parameter, old → new and what to
do; a retraining on the same truth flags nothing; a first version runs the item check only; a
model that is not a mastery model is refused naming the monitor to use."""

from __future__ import annotations

import re

import pytest

from edumlops.ml import knowledge_tracing as kt
from edumlops.monitoring import checks
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion
from tests.workflows.conftest import edge, node
from tests.workflows.test_forecast_blocks import run_all
from tests.workflows.test_mastery_blocks import FAST, TRUTH, graph, logs_of, store
from workflows import engine


@pytest.fixture
def run_graph(
    make_workflow, platform_admin, django_capture_on_commit_callbacks, ml_stores, monkeypatch
):
    """Runs each graph as a workflow of its own (a retraining is a second workflow run)."""
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))
    made = []

    def run(g):
        made.append(g)
        workflow = make_workflow(g, name=f"Test workflow {len(made)}")
        return run_all(workflow, platform_admin, django_capture_on_commit_callbacks)

    return run


def answers(truth, seed):
    log = kt.simulate_answers(truth, students=250, answers_per_skill=8, seed=seed)
    return log.drop(columns="mastered")


def monitor_node(**params):
    return node("monitor", "mastery_monitor", **params), edge("train", "model", "monitor", "model")


def retrain(district, run_graph, truth, seed, **params):
    """A first version on the planted truth, then a retraining on `truth` with the monitor."""
    first = run_graph(graph(store(district, answers(TRUTH, 11), name="Week 1"), FAST))
    assert first["train"].status == "succeeded", first["train"].reason
    steps = run_graph(
        graph(store(district, answers(truth, seed), name="Week 2"), FAST, monitor_node(**params))
    )
    assert steps["train"].status == "succeeded", steps["train"].reason
    return steps


def test_a_skill_whose_slip_moved_gets_one_alert_naming_old_and_new(district, run_graph):
    changed = {**TRUTH, "fractions": kt.BKTParams(prior=0.2, learn=0.15, guess=0.15, slip=0.4)}
    steps = retrain(district, run_graph, changed, seed=12)
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    assert report["previous"].endswith("v1") and report["model"].endswith("v2")
    flagged = {r["skill"]: r for r in report["results"]}
    assert set(flagged) == {"fractions"}
    assert [c["parameter"] for c in flagged["fractions"]["changes"]] == ["slip"]
    assert {f["verdict"] for f in flagged["fractions"]["difficulty"]} == {"too_hard"}
    alert = Alert.objects.get(monitor="mastery")
    assert alert.school is None and alert.pk == flagged["fractions"]["alert"]
    assert "Skill 'fractions'" in alert.message
    assert re.search(
        r"moved since maple-mastery v1: slip 0\.(0[89]|1[01])\d → 0\.3[4-9]", alert.message
    )
    assert "before the retrained model is used" in alert.message
    assert "Review the skill's items" in alert.message
    assert step.metrics["new_alerts"] == 1 and step.metrics["skills_flagged"] == 1
    assert report["summary"]["parameters_compared"] == 2 * len(kt.PARAMETERS)
    assert "fractions: 'fractions' slip moved from" in logs_of(step)


def test_a_retraining_on_the_same_truth_flags_nothing(district, run_graph):
    steps = retrain(district, run_graph, TRUTH, seed=13)
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    assert report["results"] == [] and report["summary"]["parameters_drifted"] == 0
    assert report["summary"]["parameters_compared"] == 2 * len(kt.PARAMETERS)
    assert not Alert.objects.filter(monitor="mastery").exists()
    assert "No skill flagged." in logs_of(step)


def test_a_first_version_runs_the_item_check_only_and_says_so(district, run_graph):
    easy = {**TRUTH, "decimals": kt.BKTParams(prior=0.35, learn=0.25, guess=0.55, slip=0.08)}
    steps = run_graph(graph(store(district, answers(easy, 14)), FAST, monitor_node()))
    step = steps["monitor"]
    assert step.status == "succeeded", step.reason
    report = step.outputs["report"]
    assert report["previous"] is None and report["parameters"] == []
    assert [r["skill"] for r in report["results"]] == ["decimals"]
    assert report["results"][0]["difficulty"][0]["verdict"] == "too_easy"
    assert "has no previous version" in logs_of(step)
    alert = Alert.objects.get(monitor="mastery")
    assert "too easy" in alert.message and "replace guessable" in alert.message


def test_a_risk_model_is_refused_naming_the_monitor_to_use(district):
    risk = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="x", algorithm="logreg"
    )
    refused = checks.MasteryParams()
    assert refused.tolerances["learn"] == 0.1
    with pytest.raises(checks.CheckError, match="not a knowledge-tracing model"):
        checks.check_mastery(district, risk, refused)
    from types import SimpleNamespace

    from workflows.blocks.base import BlockError
    from workflows.blocks.monitoring import MasteryMonitorBlock

    context = SimpleNamespace(run=SimpleNamespace(workflow=SimpleNamespace(district=district)))
    block = MasteryMonitorBlock()
    with pytest.raises(BlockError) as error:
        block.execute(context, {"model": {"model_version": risk.pk}}, block.Params())
    assert "Mastery monitor" in str(error.value)
    assert "Drift monitor or Performance monitor" in str(error.value)


def test_tolerances_out_of_range_are_refused():
    with pytest.raises(ValueError, match="less than 1"):
        checks.MasteryParams(slip_tolerance=1.5)


def test_a_previous_version_whose_parameters_cannot_be_read_stops_the_check(district, run_graph):
    steps = run_graph(graph(store(district, answers(TRUTH, 11)), FAST))
    model = ModelVersion.objects.get(pk=steps["train"].outputs["model"]["model_version"])
    lost = ModelVersion.objects.create(
        district=district,
        name=model.name,
        version="0",
        run_id="gone",
        algorithm="bkt",
        task_type="mastery",
    )
    assert checks.mastery.previous_version(model) == lost
    with pytest.raises(checks.CheckError, match="cannot be read from MLflow"):
        checks.check_mastery(district, model, checks.MasteryParams())
    assert not Alert.objects.exists()
