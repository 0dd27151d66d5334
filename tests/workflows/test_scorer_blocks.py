"""Train short-answer scorer and Validate short-answer scorer, run step by step in this process on
generated rated answers (a real database, a real MLflow store and ONNX Runtime, no broker): the
registered scoring version and its ONNX file, agreement with the teachers (QWK, exact and
adjacent, the human–human ceiling), the gate stopping the run, bad answers, a tampered ONNX
file, and the blocks that work on other kinds of model refusing the scorer (and the reverse)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from edumlops.datasets.models import ingest, load_reference
from edumlops.ml import short_answer, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.short_answer_synth import RaterBias, simulate_answers
from edumlops.registry import scoring
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.deployments.conftest import make_model
from tests.workflows.conftest import edge, node
from tests.workflows.test_forecast_blocks import run_all
from workflows import engine
from workflows.blocks.data import pseudonym_key

ROLES = Roles(sensitive=["group"])


def answers(**kwargs) -> pd.DataFrame:
    options = {"prompts": 2, "answers_per_prompt": 700, "seed": 5, "second_rater_share": 0.3}
    return simulate_answers(**(options | kwargs))


def store(district, frame: pd.DataFrame, name: str = "Answers", roles: Roles = ROLES):
    data = frame.to_csv(index=False).encode()
    version, _ = ingest(district=district, name=name, data=data, roles=roles)
    return version


def graph(version, scorer_params=None, *tail, split=True):
    """manual start → dataset → split → train_text_scorer (held-out answers connected), then the
    (node, edge) pairs in `tail`."""
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=version.pk),
        node("split", "split", method="stratified", test_share=0.25, seed=0),
        node("scorer", "train_text_scorer", **(scorer_params or {})),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("data", "dataset", "split", "dataset"),
        edge("split", "train", "scorer", "train"),
        edge("split", "test", "scorer", "test"),
    ]
    for n, e in tail:
        nodes.append(n)
        edges.append(e)
    return {"nodes": nodes, "edges": edges}


def validate_node(**params):
    return node("validate", "validate_scorer", **params), edge(
        "scorer", "model", "validate", "model"
    )


@pytest.fixture
def run_graph(
    make_workflow, platform_admin, django_capture_on_commit_callbacks, ml_stores, monkeypatch
):
    monkeypatch.setattr(engine, "HEARTBEAT_AFTER", float("inf"))

    def run(g):
        return run_all(make_workflow(g), platform_admin, django_capture_on_commit_callbacks)

    return run


def logs(step) -> str:
    return " ".join(entry["message"] for entry in step.logs)


# --- train, register, read back ---------------------------------------------------------------
def test_the_scorer_is_registered_as_an_ordinal_score_version_whose_onnx_file_scores_answers(
    district, run_graph
):
    frame = answers()
    version = store(district, frame)
    steps = run_graph(graph(version, {"scale": "0..3"}))
    assert "1400 answers in free text (text)" in logs(steps["data"])
    trained = steps["scorer"]
    assert trained.status == "succeeded", trained.reason
    model = ModelVersion.objects.get(pk=trained.outputs["model"]["model_version"])
    assert (model.task_type, model.algorithm) == ("ordinal_score", "tfidf_logistic_regression")
    assert model.name == "maple-short-answer-scorer" and model.dataset_version == version
    config = model.training["scorer"]
    assert config["points"] == [0, 1, 2, 3] and config["scale"] == [0, 3]
    assert (config["text_column"], config["score_column"]) == ("text", "score_1")
    assert config["parity"]["disagreeing_scores"] == 0
    assert config["parity"]["checked_on"] == "held-out answers"
    assert model.training["rows"] == 1050 and trained.metrics["train_rows"] == 1050
    assert "ONNX parity on 350 held-out answers: the same score on every one" in logs(trained)

    scorer = scoring.load_scorer(model)
    texts = frame["text"].tolist()[:50]
    scores = scorer.score(texts)
    assert set(scores.scores) <= {0, 1, 2, 3}
    assert np.allclose(scores.probabilities.sum(axis=1), 1, atol=1e-5)
    mlflow_ready()
    registered = tracking.client().get_model_version(model.name, model.version)
    assert registered.tags["task_type"] == "ordinal_score"
    assert registered.tags["onnx_sha256"] == config["onnx_sha256"]
    assert registered.source.endswith("/scorer")


def test_validation_reports_qwk_agreement_and_the_human_ceiling_and_passes(district, run_graph):
    version = store(district, answers())
    steps = run_graph(graph(version, {}, validate_node()))
    gate = steps["validate"]
    assert gate.status == "succeeded", gate.reason
    m = gate.metrics
    assert 0.7 <= m["qwk"] <= 1 and 0 < m["exact_agreement"] < m["adjacent_agreement"] <= 1
    assert 0.7 <= m["human_qwk"] <= 1 and m["human_qwk"] - m["qwk"] <= 0.10
    assert abs(m["smd"]) <= 0.15 and 0 <= m["unsure_share"] <= 1
    model = ModelVersion.objects.get()
    assert model.validation["kind"] == "scoring" and model.validation["passed"] is True
    assert model.validation["test_rows"] == 350
    assert model.validation["ceiling"]["n"] >= 20
    text = logs(gate)
    assert f"Machine–human QWK is {m['qwk']:.3f} on 350 answers (at least the 0.70" in text
    assert "Human–human QWK is" in text and "The model is unsure about" in text
    mlflow_ready()
    stored = tracking.read_json(model.run_id, "validation.json")
    assert stored["passed"] is True and stored["metrics"]["qwk"] == pytest.approx(m["qwk"])


def test_validation_stops_the_run_when_the_scorer_agrees_too_little(district, run_graph):
    version = store(district, answers())
    tell = node("tell", "notify"), edge("validate", "model", "tell", "input")
    steps = run_graph(graph(version, {}, validate_node(min_qwk=0.99), tell))
    gate = steps["validate"]
    assert gate.status == "failed"
    assert gate.reason.startswith(
        'Stopped at "Validate short-answer scorer" (validate): Machine–human QWK is'
    )
    assert "(below the 0.99 required)" in gate.reason
    assert steps["tell"].status == "blocked"
    model = ModelVersion.objects.get()
    assert model.validation["passed"] is False and len(model.validation["failures"]) == 1


def test_the_ceiling_is_skipped_with_a_note_when_there_is_no_second_rater_column(
    district, run_graph
):
    version = store(district, answers().drop(columns=["score_2"]))
    steps = run_graph(graph(version, {}, validate_node()))
    gate = steps["validate"]
    assert gate.status == "succeeded", gate.reason
    assert "human_qwk" not in gate.metrics
    assert "No column 'score_2' in the held-out answers: the human–human ceiling" in logs(gate)


# --- bad input --------------------------------------------------------------------------------
def test_a_missing_text_column_fails_the_step_naming_the_columns(district, run_graph):
    version = store(district, answers())
    steps = run_graph(graph(version, {"text_column": "answer"}))
    reason = steps["scorer"].reason
    assert steps["scorer"].status == "failed"
    assert f"\"{version}\" cannot train a scorer: The answers have no column 'answer'" in reason
    assert "name the answer text and score columns." in reason
    assert not ModelVersion.objects.exists()


def test_scores_that_are_not_whole_points_fail_the_step_saying_how_to_fix_them(district, run_graph):
    frame = answers()
    frame["score_1"] = frame["score_1"].astype(float)
    frame.loc[3, "score_1"] = 1.5
    version = store(district, frame)
    steps = run_graph(graph(version))
    reason = steps["scorer"].reason
    assert steps["scorer"].status == "failed"
    assert "Column 'score_1' has 1 score(s) that are not whole points (e.g. 1.5)" in reason
    assert "round or re-rate them to whole points." in reason


def test_a_score_outside_the_scale_fails_the_step(district, run_graph):
    version = store(district, answers())
    steps = run_graph(graph(version, {"scale": "0..2"}))
    assert steps["scorer"].status == "failed"
    assert "outside the scale 0..2 (e.g. 3): fix them or widen the scale." in (
        steps["scorer"].reason
    )


def test_an_answers_dataset_without_a_score_column_is_refused_by_the_dataset_block(
    district, run_graph
):
    version = store(district, answers().drop(columns=["score_1", "score_2"]))
    steps = run_graph(graph(version))
    assert steps["data"].status == "failed"
    assert f'"{version}" has no label column and positive class marked' in steps["data"].reason


def test_load_scorer_refuses_an_onnx_file_changed_after_training(district, run_graph):
    version = store(district, answers())
    steps = run_graph(graph(version))
    model = ModelVersion.objects.get(pk=steps["scorer"].outputs["model"]["model_version"])
    mlflow_ready()
    source = tracking.client().get_model_version(model.name, model.version).source
    path = Path(urlparse(source).path) / scoring.ONNX_FILE
    assert path.exists()
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(scoring.ScorerError, match="hashes to .* recorded when it was trained"):
        scoring.load_scorer(model)


def test_load_scorer_refuses_a_model_that_is_not_a_scorer(district):
    model = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="x", algorithm="lr"
    )
    with pytest.raises(scoring.ScorerError, match="is not a short-answer scorer .*binary_risk"):
        scoring.load_scorer(model)


# --- the scorer where another kind of model is expected, and the reverse -----------------------
@pytest.mark.parametrize(
    ("kind", "step", "instead"),
    [
        ("validate_model", "Validate model", "Validate short-answer scorer (validate_scorer)"),
        (
            "export_onnx",
            "Export to ONNX",
            "Train short-answer scorer (it exports the scorer to ONNX and checks its parity "
            "itself)",
        ),
        ("backtest_gate", "Backtest forecast", "Validate short-answer scorer (validate_scorer)"),
    ],
)
def test_blocks_for_other_models_refuse_the_scorer_naming_what_to_use(
    district, run_graph, kind, step, instead
):
    version = store(district, answers(answers_per_prompt=150))
    other = node("other", kind), edge("scorer", "model", "other", "model")
    steps = run_graph(graph(version, {}, other))
    assert steps["scorer"].status == "succeeded", steps["scorer"].reason
    assert steps["other"].status == "failed"
    model = ModelVersion.objects.get()
    assert steps["other"].reason.endswith(
        f"failed: {model}: {step} works on "
        + ("a forecast model" if kind == "backtest_gate" else "a yes/no risk model")
        + f"; this is a scoring model (whole-point scores). Use {instead} instead."
    )


def test_validate_scorer_refuses_a_yes_no_risk_model(ml_stores, district, staff, run_graph):
    model = make_model(district)
    model.set_alias("challenger", staff)
    steps = run_graph(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("model", "registered_model", model_name="at-risk", alias="challenger"),
                node("validate", "validate_scorer"),
            ],
            "edges": [
                edge("start", "start", "model"),
                edge("model", "model", "validate", "model"),
            ],
        }
    )
    assert steps["validate"].status == "failed"
    assert steps["validate"].reason.endswith(
        f"failed: {model}: Validate short-answer scorer works on a scoring model (whole-point "
        "scores); this is a yes/no risk model. Use Validate (validate_model) instead."
    )


def test_the_registered_onnx_scorer_scores_as_the_library_trained_on_the_same_answers(
    district, run_graph
):
    version = store(district, answers())
    steps = run_graph(graph(version))
    model = ModelVersion.objects.get(pk=steps["scorer"].outputs["model"]["model_version"])
    train, _ = load_reference(steps["split"].outputs["train"], pseudonym_key())
    test, _ = load_reference(steps["split"].outputs["test"], pseudonym_key())
    assert (len(train), len(test)) == (1050, 350)
    here = short_answer.train_scorer(train["text"], train["score_1"]).score(test["text"])
    onnx = scoring.load_scorer(model).score(test["text"].tolist())
    assert onnx.points.tolist() == here.points.tolist() == [0, 1, 2, 3]
    assert (onnx.scores == here.scores).all()
    assert np.abs(onnx.probabilities - here.probabilities).max() < 1e-4


# --- the bias gate on a scoring model ----------------------------------------------------------
def bias_node(**params):
    return node("bias", "bias_gate", **params), edge("scorer", "model", "bias", "model")


def test_the_bias_gate_passes_a_scorer_whose_scores_match_the_teachers_in_every_group(
    district, run_graph
):
    version = store(district, answers())
    steps = run_graph(graph(version, {}, bias_node(if_inconclusive="block")))
    gate = steps["bias"]
    assert gate.status == "succeeded", gate.reason
    model = ModelVersion.objects.get()
    report = model.bias_report
    assert model.bias_outcome == "pass" and report["settings"]["kind"] == "ordinal_score"
    assert report["settings"]["rules"][0]["threshold"] == 0.10
    smd = {g["group"]: g["metrics"]["score_difference"] for g in report["groups"]}
    assert set(smd) == {"english", "other_language"}
    assert all(abs(v) <= 0.10 for v in smd.values())
    assert gate.metrics["smd_group_english"] == smd["english"]
    text = logs(gate)
    assert "Scoring model: the scorer's mean score against the teachers' (score_1) on 350" in text
    assert "pass: group: the machine's scores are furthest from the teachers' in group" in text


def test_the_bias_gate_stops_a_scorer_trained_on_scores_with_a_planted_rater_bias(
    district, run_graph
):
    harsh = RaterBias("other_language", shift=-1)
    version = store(district, answers(rater_bias=harsh))
    tell = node("tell", "notify"), edge("bias", "model", "tell", "input")
    steps = run_graph(graph(version, {}, bias_node(), tell))
    gate = steps["bias"]
    assert gate.status == "failed"
    assert "bias check failed: 1 of 1 check(s) fail: group: the machine's scores are furthest " in (
        gate.reason
    )
    assert "in group other_language: " in gate.reason and "SD above them" in gate.reason
    assert steps["tell"].status == "blocked"
    model = ModelVersion.objects.get()
    assert model.bias_outcome == "fail"
    other = next(g for g in model.bias_report["groups"] if g["group"] == "other_language")
    assert other["metrics"]["score_difference"] > 0.3


def test_the_bias_gate_on_a_scorer_needs_a_sensitive_attribute(district, run_graph):
    version = store(district, answers(), roles=Roles())
    steps = run_graph(graph(version, {}, bias_node()))
    assert steps["bias"].status == "failed"
    assert "no sensitive attribute is marked on the answers' dataset" in steps["bias"].reason


def test_the_model_page_shows_the_scorers_bias_report_in_words(
    district, run_graph, client, platform_admin
):
    version = store(district, answers())
    steps = run_graph(graph(version, {}, bias_node()))
    assert steps["bias"].status == "succeeded", steps["bias"].reason
    model = ModelVersion.objects.get()
    client.force_login(platform_admin)
    response = client.get(f"/models/{model.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Machine minus teacher mean score, in SDs of the teachers" in html
    assert model.bias_report["summary"].split(":")[0] in html
