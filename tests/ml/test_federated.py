"""Federated training on real Flower processes on loopback: a SuperLink, four SuperNodes (each
with its own school's records file, reaching the SuperLink through a capturing TCP forwarder),
and the ServerApp submitted with `flwr run`. One school is stopped after round 1.

One federated run (module fixture) feeds the first tests; it takes about two minutes, most of
it Flower's own pacing (a SuperNode polls every 3 s and starts one ClientApp process per
message; SecAgg+ needs four messages per round)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edumlops.ml import federated_protocol as proto
from edumlops.ml import onnx_bundle, synth
from edumlops.ml.federated import (
    FederatedConfig,
    FederatedError,
    FederatedResult,
    epsilon_spent,
    run_federated,
    to_sklearn_pipeline,
)
from edumlops.ml.federated_processes import LocalFederation
from edumlops.ml.training import FeatureSpec, binary_target, build_pipeline, prepare_frame

HERE = Path(__file__).resolve().parent
SCHOOLS = {
    "rhs": "Riverside High School",
    "lms": "Lakeside Middle School",
    "phe": "Pine Hill Elementary",
    "hvh": "Hillview High",
}
STOPPED = "hvh"
NUMERIC = ["attendance_rate", "submission_rate", "lms_logins_weekly", "quiz_average", "prior_gpa"]
CATEGORICAL = {
    "ses": ["low", "middle", "high"],
    "english_learner": ["yes", "no"],
    "disability": ["none", "learning", "physical", "sensory"],
}
SPEC = FeatureSpec(NUMERIC, list(CATEGORICAL))
# a federated model of 2 rounds × 20 local epochs against a centrally trained LogisticRegression
# on the same rows, both scored on the same central held-out rows
ACCURACY_MARGIN = 0.03


def canary(code: str) -> str:
    return f"CANARY-{code}-q7Zx93"


def config(**changes) -> FederatedConfig:
    base = dict(
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        label="at_risk",
        positive=["yes"],
        schools=list(SCHOOLS),
        sensitive=["ses", "sex"],
        sensitive_groups={"sex": ["F", "M", "X"]},
        rounds=2,
        min_schools=3,
        local_epochs=20,
        learning_rate=0.5,
        max_school_rows=1000,
        join_timeout=30,
        round_timeout=25,
        seed=7,
    )
    base.update(changes)
    return FederatedConfig(**base)


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """Each school's records file (with canaries planted), and central held-out rows."""
    folder = tmp_path_factory.mktemp("federated")
    rows = synth.generate_district(4200, seed=11)
    rows = rows[rows["school"].isin(SCHOOLS.values())].reset_index(drop=True)
    central_holdout = rows.sample(frac=0.25, random_state=3)
    pooled = rows.drop(central_holdout.index)
    files = {}
    for code, name in SCHOOLS.items():
        mine = pooled[pooled["school"] == name].copy()
        mine["student_id"] = [f"{canary(code)}-{i:05d}" for i in range(len(mine))]
        mine["teacher_note"] = canary(code) + " note about a student"
        mine.iloc[0, mine.columns.get_loc("ses")] = canary(code)  # a value no category lists
        files[code] = folder / f"{code}.csv"
        mine.to_csv(files[code], index=False)
    return {"folder": folder, "files": files, "pooled": pooled, "holdout": central_holdout}


@pytest.fixture(scope="module")
def federation(district):
    with LocalFederation(district["folder"] / "flower", district["files"], capture=True) as fed:
        yield fed


@pytest.fixture(scope="module")
def run(federation, district):
    events = []

    def on_round(event):
        events.append(event)
        if event["round"] == 1:
            federation.stop(STOPPED)

    result = run_federated(
        config(),
        control_address=federation.address,
        workdir=district["folder"] / "run",
        timeout=600,
        on_round=on_round,
    )
    return {
        "result": result,
        "events": events,
        "upstream": federation.upstream(),
        "downstream": federation.downstream(),
    }


def test_the_run_completes_with_the_three_schools_left_and_lists_them_per_round(run):
    result: FederatedResult = run["result"]
    assert [r["round"] for r in result.rounds] == [1, 2]
    assert result.rounds[0]["schools"] == sorted(SCHOOLS)
    assert result.rounds[1]["schools"] == sorted(set(SCHOOLS) - {STOPPED})
    assert [e["round"] for e in run["events"]] == [1, 2]
    assert result.schools == sorted(SCHOOLS)
    assert result.evaluation["schools"] == sorted(set(SCHOOLS) - {STOPPED})
    assert result.dp is None


def test_the_global_model_is_within_the_margin_of_a_central_model(run, district):
    pooled, holdout = district["pooled"], district["holdout"]
    central = build_pipeline(SPEC, "logistic_regression", balanced=False, seed=0)
    central.fit(prepare_frame(pooled, SPEC), binary_target(pooled["at_risk"], ["yes"]))
    x_test = prepare_frame(holdout, SPEC)
    y_test = binary_target(holdout["at_risk"], ["yes"]).to_numpy()
    federated = to_sklearn_pipeline(run["result"])
    central_accuracy = (central.predict(x_test) == y_test).mean()
    federated_accuracy = (federated.predict(x_test) == y_test).mean()
    assert federated_accuracy >= central_accuracy - ACCURACY_MARGIN, (
        federated_accuracy,
        central_accuracy,
    )


def test_the_group_counts_come_from_the_schools_held_out_rows(run):
    result = run["result"]
    overall = result.evaluation["counts"]
    assert sum(overall.values()) == result.evaluation["rows"] > 0
    for attribute in ("ses", "sex"):
        cells = result.group_counts[attribute]
        assert sum(sum(c.values()) for c in cells.values()) == result.evaluation["rows"]
    # the planted canary in `ses` is not a listed group: it is counted as "other"
    assert set(result.group_counts["ses"]) <= {"low", "middle", "high", proto.OTHER_GROUP}


def test_no_canary_reaches_the_superlink(run, district):
    upstream = run["upstream"]
    assert len(upstream) > 10_000  # the forwarders did carry the run
    for code in SCHOOLS:
        assert canary(code).encode() not in upstream
        assert b"note about a student" not in upstream


def _plain_updates(result: FederatedResult, files: dict[str, Path], cfg: FederatedConfig):
    """Each school's round-1 update, recomputed from its file with the ClientApp's own code."""
    spec = cfg.encoding_spec()
    transform = proto.Transform(result.means, result.scales)
    updates = {}
    for code, path in files.items():
        records = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        rows = proto.parse_rows(records, spec, code)
        x = proto.encode(rows, transform)[rows.train]
        coef, intercept = proto.train_local(
            x,
            rows.y[rows.train],
            np.zeros(spec.width),
            0.0,
            family=cfg.family,
            epochs=cfg.local_epochs,
            learning_rate=cfg.learning_rate,
            proximal_mu=0.0,
            seed=cfg.seed + 2,
        )
        updates[code] = (np.append(coef, intercept), int(rows.train.sum()))
    return updates


def test_secure_aggregation_equals_plain_fedavg_but_hides_each_update(run, district):
    result = run["result"]
    updates = _plain_updates(result, district["files"], config())
    weights = np.array([n for _, n in updates.values()], dtype=float)
    plain = sum(w * v for (v, _), w in zip(updates.values(), weights, strict=True)) / weights.sum()
    secure = np.append(result.rounds[0]["coef"], result.rounds[0]["intercept"])
    # SecAgg+ quantises each value to a 2^22-step grid over [-8, 8] (stochastic rounding)
    assert np.abs(secure - plain).max() < 2e-3, (secure, plain)
    upstream = run["upstream"]
    for code, (vector, _) in updates.items():
        assert vector[:-1].tobytes() not in upstream, code
    # the scan can see arrays: round 2 sent the round-1 aggregate down to every school
    downstream_round1 = np.asarray(result.rounds[0]["coef"], dtype=np.float64).tobytes()
    assert downstream_round1 in run["downstream"], "the scan cannot see arrays"


def test_fewer_schools_than_the_minimum_fails_with_a_reason_and_no_model(run, federation, district):
    workdir = district["folder"] / "too-few"
    cfg = config(schools=["rhs", "lms", "elsewhere"], min_schools=3, join_timeout=4)
    with pytest.raises(FederatedError, match="only 2 of the listed schools"):
        run_federated(cfg, control_address=federation.address, workdir=workdir, timeout=120)
    assert "error" in json.loads((workdir / "result.json").read_text())
    assert not (workdir / "progress.jsonl").exists()


def test_a_client_that_sends_a_row_is_caught_by_the_same_scan(run, federation, district):
    """Negative control: tests/ml/leaky_flower_app answers the school question with one of its
    raw rows; the same scan finds it in what the SuperLink received."""
    before = federation.mark()
    cfg = config(schools=["nobody-a", "nobody-b"], min_schools=2, join_timeout=4)
    with pytest.raises(FederatedError):
        run_federated(
            cfg,
            control_address=federation.address,
            workdir=district["folder"] / "leaky",
            timeout=120,
            app_dir=HERE / "leaky_flower_app",
        )
    captured = federation.upstream(since=before)
    assert any(canary(code).encode() in captured for code in SCHOOLS)


def test_an_unreachable_superlink_is_a_clear_error(tmp_path):
    with pytest.raises(FederatedError, match="did not take the run"):
        run_federated(config(), control_address="127.0.0.1:9", workdir=tmp_path, timeout=30)


def test_the_config_lists_every_problem_at_once():
    with pytest.raises(FederatedError) as caught:
        config(
            family="forest", strategy="fedprox", min_schools=1, dp_noise_multiplier=1.0
        ).validate()
    message = str(caught.value)
    for part in ("Unknown model family", "proximal term", "at least 2 schools", "both a clipping"):
        assert part in message


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    assert epsilon_spent(10, 1.0, 1e-5) > epsilon_spent(5, 1.0, 1e-5)
    assert epsilon_spent(5, 2.0, 1e-5) < epsilon_spent(5, 1.0, 1e-5)
    rho = 5 / 2.0
    assert epsilon_spent(5, 1.0, 1e-5) == pytest.approx(rho + 2 * np.sqrt(rho * np.log(1e5)))


def _synthetic_result() -> FederatedResult:
    rng = np.random.default_rng(0)
    width = len(NUMERIC) + sum(len(v) for v in CATEGORICAL.values())
    return FederatedResult(
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        coef=list(rng.normal(size=width)),
        intercept=-0.7,
        means=[0.9, 0.8, 6.5, 72.0, 2.9],
        scales=[0.05, 0.12, 2.6, 12.0, 0.57],
        rounds=[],
        evaluation={},
        group_counts={},
        dp=None,
        secagg={},
        schools=[],
        seconds=0.0,
    )


def test_the_sklearn_pipeline_matches_the_schools_math_and_onnx(tmp_path):
    result = _synthetic_result()
    frame = synth.generate_district(400, seed=5)
    frame.loc[frame.index[:5], "ses"] = "unlisted"
    prepared = prepare_frame(frame, SPEC)
    pipeline = to_sklearn_pipeline(result)
    expected = pipeline.predict_proba(prepared)[:, 1]
    # the ClientApp's encoding of the same rows gives the same probabilities
    csv_path = tmp_path / "rows.csv"
    frame.to_csv(csv_path, index=False)
    records = pd.read_csv(csv_path, dtype=str, keep_default_na=False).to_dict("records")
    spec = config().encoding_spec()
    rows = proto.parse_rows(records, spec, "x")
    x = proto.encode(rows, proto.Transform(result.means, result.scales))
    school_math = proto.sigmoid(x @ np.asarray(result.coef) + result.intercept)
    np.testing.assert_allclose(expected, school_math, atol=1e-9)
    # and ONNX Runtime gives them too
    model = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, SPEC))
    assert onnx_bundle.parity(pipeline, model, prepared).ok
