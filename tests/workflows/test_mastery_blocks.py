"""Train mastery (BKT) and Validate mastery, run step by step in this process on answer logs drawn
from a planted BKT truth (a real database and a real MLflow store, no broker): the registered
mastery version recovers the truth and reads back, the validation on held-out students passes
and stops with its numbers, the blocks for yes/no risk models refuse a mastery model naming the
block to use instead, and bad answer logs are refused naming the problem and the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from edumlops.datasets.models import ingest
from edumlops.ml import knowledge_tracing as kt
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.registry.mastery import MasteryError, load_mastery_model, parameter_keys
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import edge, node
from tests.workflows.test_forecast_blocks import run_all
from workflows import engine

TRUTH = {
    "fractions": kt.BKTParams(prior=0.2, learn=0.15, guess=0.15, slip=0.10),
    "decimals": kt.BKTParams(prior=0.35, learn=0.25, guess=0.20, slip=0.08),
}
# as in tests/ml/test_knowledge_tracing.py: ~3x the root-mean-square error of fits on 200
# students x 8 answers per skill; a fit that returned its random start would miss them
TOLERANCE = {"prior": 0.15, "learn": 0.06, "guess": 0.08, "slip": 0.05}
FAST = {"num_fits": 1}  # pyBKT's EM is a Python loop per answer: one start is enough here


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    """250 students, 8 answers on each skill, without the hidden state a real log never has."""
    answers = kt.simulate_answers(TRUTH, students=250, answers_per_skill=8, seed=11)
    return answers.drop(columns="mastered")


def store(district, frame: pd.DataFrame, name: str = "Answers", roles: Roles | None = None):
    data = frame.to_csv(index=False).encode()
    version, _ = ingest(district=district, name=name, data=data, roles=roles or Roles())
    return version


def graph(version, train_params=None, *tail):
    """manual start → dataset → train_mastery, then the (node, edge) pairs in `tail`."""
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=version.pk),
        node("train", "train_mastery", **{**FAST, **(train_params or {})}),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("data", "dataset", "train", "answers"),
    ]
    for n, e in tail:
        nodes.append(n)
        edges.append(e)
    return {"nodes": nodes, "edges": edges}


def validate_node(**params):
    return node("validate", "validate_mastery", **params), edge(
        "train", "model", "validate", "model"
    )


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


def logs_of(step) -> str:
    return " ".join(entry["message"] for entry in step.logs)


# --- train, register, read back -------------------------------------------------------------
def test_train_mastery_recovers_the_planted_truth_and_registers_a_mastery_version(
    district, run_graph, log
):
    version = store(district, log)
    steps = run_graph(graph(version))
    assert steps["data"].status == "succeeded", steps["data"].reason
    assert f"{version}: 4000 answers (student, skill, correct)" in logs_of(steps["data"])
    trained = steps["train"]
    assert trained.status == "succeeded", trained.reason
    model = ModelVersion.objects.get(pk=trained.outputs["model"]["model_version"])
    assert (model.task_type, model.algorithm, model.name) == ("mastery", "bkt", "maple-mastery")
    assert model.dataset_version == version
    assert trained.outputs["model"]["answers"]["version"] == version.pk
    assert model.training["columns"] == {
        "student": "student",
        "skill": "skill",
        "correct": "correct",
        "order": "order",
    }
    assert model.training["skills"]["fractions"] == {"answers": 2000, "students": 250}
    assert trained.metrics == {
        "answers": 4000,
        "students": 250,
        "skills": 2,
        "degenerate_skills": 0,
    }
    assert "Degenerate" not in logs_of(trained)

    bkt = load_mastery_model(model)
    assert set(bkt.skills) == set(TRUTH)
    for name, truth in TRUTH.items():
        for parameter, tolerance in TOLERANCE.items():
            gap = abs(getattr(bkt.skills[name], parameter) - getattr(truth, parameter))
            assert gap < tolerance, (name, parameter, bkt.skills[name])
        assert bkt.skills[name].forget == 0.0
        assert bkt.skills[name].to_dict() == pytest.approx(model.training["parameters"][name])
    assert bkt.info["registry"]["fit"] == {
        "forgets": False,
        "num_fits": 1,
        "min_answers": 30,
        "seed": 0,
    }
    fractions = bkt.skills["fractions"]
    assert (
        f"'fractions' (2000 answers, 250 students): prior {fractions.prior:.2f}, learn "
        f"{fractions.learn:.2f}, guess {fractions.guess:.2f}, slip {fractions.slip:.2f}"
    ) in logs_of(trained)

    mlflow_ready()
    registered = tracking.client().get_model_version(model.name, model.version)
    assert registered.tags["task_type"] == "mastery" and registered.source.endswith("/mastery")
    params = tracking.client().get_run(model.run_id).data.params
    assert float(params["fractions.learn"]) == pytest.approx(fractions.learn, abs=1e-6)
    assert float(params["decimals.slip"]) == pytest.approx(bkt.skills["decimals"].slip, abs=1e-6)
    assert params["algorithm"] == "bkt" and params["fit.num_fits"] == "1"


def test_a_fit_that_forgets_learns_a_forget_rate_and_says_so(district, run_graph, log):
    version = store(district, log)
    steps = run_graph(graph(version, {"forgets": True, "model_name": "mastery-forgetting"}))
    assert steps["train"].status == "succeeded", steps["train"].reason
    bkt = load_mastery_model(ModelVersion.objects.get())
    assert bkt.forgets and all(p.forget < 0.1 for p in bkt.skills.values())  # nobody forgets
    assert ", forget " in logs_of(steps["train"])


def test_mlflow_parameter_keys_keep_what_mlflow_accepts_and_never_collide():
    keys = parameter_keys(["FFF TMA", "a/b", "a&b", "../x", "%"])
    assert keys == {"FFF TMA": "FFF TMA", "a/b": "a_b", "a&b": "a_b_2", "../x": "_x", "%": "_"}


def test_load_mastery_model_refuses_a_model_that_is_not_a_mastery_model(district):
    model = ModelVersion.objects.create(
        district=district, name="maple-at-risk", version="1", run_id="x", algorithm="lr"
    )
    with pytest.raises(MasteryError, match="is not a knowledge-tracing model .*binary_risk"):
        load_mastery_model(model)


# --- validation on held-out students --------------------------------------------------------
def test_validate_mastery_scores_held_out_students_and_passes(district, run_graph, log):
    version = store(district, log)
    steps = run_graph(graph(version, {}, validate_node()))
    gate = steps["validate"]
    assert gate.status == "succeeded", gate.reason
    m = gate.metrics
    assert m["auc"] > 0.7 and m["ece"] < 0.08  # tests/ml/test_knowledge_tracing.py's bounds
    assert 0 < m["brier"] < 0.25 and m["log_loss"] > 0
    model = ModelVersion.objects.get()
    validation = model.validation
    assert validation["kind"] == "mastery" and validation["passed"] is True
    assert validation["split"]["test_students"] == 50 and validation["answers"] == 800
    assert validation["split"]["train_students"] == 200
    assert sum(b["count"] for b in validation["calibration"]) == 800
    assert [s["skill"] for s in validation["per_skill"]] == ["decimals", "fractions"]
    assert validation["limits"]["min_auc"] == 0.65
    logs = logs_of(gate)
    assert "Fitted on 200 students (3200 answers), predicted 800 answers of 50 held-out" in logs
    assert f"AUC {m['auc']:.3f}, ECE {m['ece']:.3f}" in logs
    assert "Passed: AUC at least 0.65 and 0 above the skills' pass rates, ECE at most 0.1" in logs
    # the planted learning shows: earlier answers predict far better than the skills' pass rates
    base = m["base_rate_auc"]
    assert base < m["auc"] - 0.1 and validation["base_rate_auc"] == pytest.approx(base)
    assert (
        f"Each skill's share of right answers alone gives AUC {base:.3f}: the students' earlier "
        f"answers add {m['auc'] - base:.3f}"
    ) in logs
    print(f"GATE on generated answers: AUC {m['auc']:.3f}, ECE {m['ece']:.3f}, base {base:.3f}")
    mlflow_ready()
    stored = tracking.read_json(model.run_id, "validation.json")
    assert stored["passed"] is True and stored["auc"] == pytest.approx(m["auc"])
    run = tracking.client().get_run(model.run_id)
    assert run.data.metrics["test_auc"] == pytest.approx(m["auc"])


def test_validate_mastery_stops_the_run_below_its_limits_saying_what_they_mean(
    district, run_graph, log
):
    version = store(district, log)
    tell = node("tell", "notify"), edge("validate", "model", "tell", "input")
    steps = run_graph(graph(version, {}, validate_node(min_auc=0.99, max_ece=0.001), tell))
    gate = steps["validate"]
    assert gate.status == "failed"
    auc, ece = gate.metrics["auc"], gate.metrics["ece"]
    assert gate.reason == (
        f'Stopped at "Validate mastery" (validate): AUC {auc:.3f} is below the minimum 0.99: the '
        "model tells held-out students' right answers from wrong ones too poorly to choose "
        "their practice (check the skill tagging, or collect more answers per skill); "
        f"calibration error (ECE) {ece:.3f} is above the maximum 0.001: its chances of a right "
        f"answer are off by {ece:.0%} on average, so its mastery estimates cannot be taken at "
        "face value"
    )
    assert steps["tell"].status == "blocked"
    model = ModelVersion.objects.get()
    assert model.validation["passed"] is False and len(model.validation["failures"]) == 2


def test_validate_mastery_stops_a_model_that_does_not_beat_the_pass_rates_by_the_gain(
    district, run_graph, log
):
    version = store(district, log)
    steps = run_graph(graph(version, {}, validate_node(min_gain=0.4)))
    gate = steps["validate"]
    assert gate.status == "failed"
    m = gate.metrics
    assert gate.reason == (
        f'Stopped at "Validate mastery" (validate): AUC {m["auc"]:.3f} does not beat each '
        f"skill's share of right answers alone (AUC {m['base_rate_auc']:.3f}) by the minimum "
        "gain 0.4: the students' earlier answers add too little to choose their practice"
    )


def test_answers_that_cannot_be_told_apart_stop_the_validation(district, run_graph, log):
    """Students who answer at random: the fit has nothing to learn, and the gate says so."""
    noise = log.copy()
    noise["correct"] = (pd.Series(range(len(noise))).mul(7919) % 100 < 60).astype(int)
    version = store(district, noise)
    steps = run_graph(graph(version, {}, validate_node()))
    assert steps["train"].status == "succeeded"
    gate = steps["validate"]
    assert gate.status == "failed"
    assert gate.metrics["auc"] < 0.6
    assert f"AUC {gate.metrics['auc']:.3f} is below the minimum 0.65" in gate.reason


# --- the mastery model where another kind is expected, and the other way round ---------------
@pytest.mark.parametrize(
    ("kind", "step", "instead"),
    [
        (
            "validate_model",
            "Validate model",
            "Validate mastery (it checks next answers of held-out students)",
        ),
        (
            "export_onnx",
            "Export to ONNX",
            "Register / set alias (its parameters per skill are served as they are: there is "
            "nothing to convert)",
        ),
        (
            "bias_gate",
            "Bias gate",
            "Validate mastery (errors per group of students are not compared for mastery "
            "models; it checks the predictions for held-out students)",
        ),
    ],
)
def test_blocks_for_yes_no_risk_models_refuse_a_mastery_model_naming_what_to_use(
    district, run_graph, log, kind, step, instead
):
    version = store(district, log)
    other = node("other", kind), edge("train", "model", "other", "model")
    steps = run_graph(graph(version, {}, other))
    assert steps["train"].status == "succeeded"
    assert steps["other"].status == "failed"
    model = ModelVersion.objects.get()
    accepts = (
        "a yes/no risk model or a scoring model (whole-point scores)"
        if kind == "bias_gate"
        else "a yes/no risk model"
    )
    assert steps["other"].reason.endswith(
        f"failed: {model}: {step} works on {accepts}; this is a knowledge-tracing "
        f"(mastery) model. Use {instead} instead."
    )


def test_validate_mastery_refuses_a_forecast_naming_the_backtest(district, run_graph):
    from tests.workflows.test_forecast_blocks import history
    from tests.workflows.test_forecast_blocks import store as store_history

    version = store_history(district, history())
    nodes = [
        node("start", "manual_trigger"),
        node("data", "dataset", dataset_version=version.pk),
        node("forecast", "train_forecast", method="seasonal_naive"),
        node("validate", "validate_mastery"),
    ]
    edges = [
        edge("start", "start", "data", "start"),
        edge("data", "dataset", "forecast", "history"),
        edge("forecast", "model", "validate", "model"),
    ]
    steps = run_graph({"nodes": nodes, "edges": edges})
    assert steps["forecast"].status == "succeeded"
    assert steps["validate"].reason.endswith(
        f"failed: {ModelVersion.objects.get()}: Validate mastery works on a knowledge-tracing "
        "(mastery) model; this is a forecast model. Use Backtest forecast instead."
    )


# --- bad answer logs ------------------------------------------------------------------------
def test_a_log_lacking_a_column_is_refused_naming_the_parameter_to_set(district, run_graph, log):
    topics = log.rename(columns={"skill": "topic"})
    labelled = Roles(label="correct", positive=["1"])
    version = store(district, topics, roles=labelled)
    steps = run_graph(graph(version))
    assert steps["train"].status == "failed"
    assert steps["train"].reason == (
        "\"Train mastery (BKT)\" (train) failed: The answer log lacks the column(s) 'skill' "
        "(skill: set skill_column); it has student, topic, item, order, correct. An answer log "
        "has one row per answer with the student, the skill, whether it was right and its order."
    )
    assert not ModelVersion.objects.exists()


def test_columns_come_from_the_parameters_and_the_dataset_roles(district, run_graph, log):
    """A log with its own names: the skill named by a parameter, correctness as the dataset's
    label ('yes' right), the order as its date/term column holding dates."""
    start = pd.Timestamp("2026-09-07 08:00")
    own = pd.DataFrame(
        {
            "pupil": log["student"],
            "topic": log["skill"],
            "right": log["correct"].map({1: "yes", 0: "no"}),
            "answered_at": (start + pd.to_timedelta(log["order"] * 3, unit="h")).astype(str),
        }
    ).sample(frac=1.0, random_state=0)  # the log's order is the dates', not the rows'
    roles = Roles(label="right", positive=["yes"], time="answered_at")
    version = store(district, own, roles=roles)
    params = {"student_column": "pupil", "skill_column": "topic"}
    steps = run_graph(graph(version, params, validate_node()))
    assert steps["train"].status == "succeeded", steps["train"].reason
    model = ModelVersion.objects.get()
    assert model.training["columns"] == {
        "student": "pupil",
        "skill": "topic",
        "correct": "right",
        "order": "answered_at",
    }
    bkt = load_mastery_model(model)
    for name, truth in TRUTH.items():
        for parameter, tolerance in TOLERANCE.items():
            assert abs(getattr(bkt.skills[name], parameter) - getattr(truth, parameter)) < (
                tolerance
            )
    assert steps["validate"].status == "succeeded", steps["validate"].reason
    assert steps["validate"].metrics["auc"] > 0.7


def test_a_skill_with_too_few_answers_is_refused_naming_it_and_the_fix(district, run_graph, log):
    few = log[log["skill"] == "fractions"].head(12).assign(skill="geometry")
    version = store(district, pd.concat([log, few], ignore_index=True))
    steps = run_graph(graph(version))
    assert steps["train"].status == "failed"
    assert steps["train"].reason == (
        f'"Train mastery (BKT)" (train) failed: "{version}" cannot be traced: Too few answers '
        "to fit BKT (at least 30 per skill): 'geometry' (12 answers). Collect more answers, "
        "merge the skill into a broader one, drop it, or lower min_answers."
    )
    assert not ModelVersion.objects.exists()


def test_a_skill_trainable_on_all_students_but_not_without_the_held_out_ones_stops_the_gate(
    district, run_graph, log
):
    few = log[log["skill"] == "fractions"].head(40).assign(skill="geometry")
    version = store(district, pd.concat([log, few], ignore_index=True))
    steps = run_graph(graph(version, {}, validate_node(test_share=0.5)))
    assert steps["train"].status == "succeeded", steps["train"].reason
    reason = steps["validate"].reason
    assert reason.startswith(
        'Stopped at "Validate mastery" (validate): without the 50% of students held out, too '
        "few answers are left to fit again (at least 30 per skill, as in training): 'geometry' ("
    )
    assert reason.endswith(
        "answers). Hold out fewer students (test_share), collect more answers on those skills, "
        "or train without them."
    )
    assert "fractions" not in reason and not ModelVersion.objects.get().validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.assign(correct=f["correct"].map({1: "right", 0: "wrong"})),
            "Correctness (column 'correct') must be 0 or 1 (or true/false); 4000 answer(s) have "
            "'right', 'wrong'. Mark 'correct' as the dataset's label, with the value(s) meaning "
            "a right answer as its positive class, on the dataset's page; or set correct_column "
            "to a column of 0/1.",
        ),
        (
            lambda f: f.assign(order=f["order"].astype(str).radd("step ")),
            "The order column 'order' must hold numbers or dates; 4000 answer(s) have something "
            "else, e.g. 'step 0': pick another order_column or fix those rows.",
        ),
    ],
    ids=["correct-as-words", "order-as-words"],
)
def test_answers_bkt_cannot_read_are_refused_saying_what_to_change(
    district, run_graph, log, change, message
):
    version = store(district, change(log))
    steps = run_graph(graph(version))
    assert steps["train"].status == "failed"
    assert steps["train"].reason.endswith(message), steps["train"].reason


def test_validate_mastery_needs_the_answers_train_mastery_passes_on(district, run_graph, log):
    from workflows.blocks.base import BlockError
    from workflows.blocks.modelling import ValidateMasteryBlock, ValidateMasteryParams

    version = store(district, log)
    steps = run_graph(graph(version))
    ref = dict(steps["train"].outputs["model"])
    ref.pop("answers")

    class Here:
        run = steps["train"].run
        run_id, node_id = run.pk, "validate"

    with pytest.raises(BlockError, match="carries no answer log: connect the output of Train"):
        ValidateMasteryBlock().execute(Here(), {"model": ref}, ValidateMasteryParams())
