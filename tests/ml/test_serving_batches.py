"""The serving core's batch path (checked columns, one ONNX run, explanations and bands for the
whole batch at once) answers exactly as scoring each row on its own did, and refuses the same
rows with the same named faults."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from edumlops.ml import onnx_bundle
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.serving_core import (
    RequestError,
    ServingModel,
    columns,
    explain,
    feed,
    linear_terms,
    predict,
    unseen_categories,
    validate,
)
from edumlops.ml.synth import generate_district
from edumlops.ml.training import binary_target, build_pipeline, fit, infer_features, prepare_frame

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


@pytest.fixture(scope="module")
def model() -> ServingModel:
    frame = generate_district(800, seed=4)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = fit(build_pipeline(spec, "logistic_regression", balanced=True, seed=0), X, y)
    manifest = Manifest(
        model=ModelInfo("at-risk", "3"),
        numeric=spec.numeric,
        categorical=spec.categorical,
        thresholds={"high": 0.6, "medium": 0.3},
        explain=linear_terms(pipeline, spec.numeric, spec.categorical),
    )
    return ServingModel.from_manifest(
        manifest, onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, spec))
    )


def random_rows(model: ServingModel, n: int, seed: int) -> list[dict]:
    """Rows as a caller sends them: numbers (some ints, some missing), known categories, some
    missing, some never seen in training; keys in a shuffled order."""
    rng = random.Random(seed)
    known = {name: sorted(model.categories.get(name) or ["x"]) for name in model.categorical}
    rows = []
    for _ in range(n):
        row: dict = {}
        for name in model.numeric:
            roll = rng.random()
            row[name] = (
                None if roll < 0.1 else rng.randint(0, 40) if roll < 0.3 else rng.gauss(3, 2)
            )
        for name in model.categorical:
            roll = rng.random()
            row[name] = (
                None if roll < 0.1 else "never-seen" if roll < 0.15 else rng.choice(known[name])
            )
        keys = list(row)
        rng.shuffle(keys)
        rows.append({k: row[k] for k in keys})
    return rows


def one_by_one(model: ServingModel, row: dict) -> dict:
    """How a row was answered before batches: its own arrays, its own explanation loop."""
    probability = float(model.onnx.predict_feed(feed(model, [row]))[0])
    parts = {}
    for col, (median, mean, scale, w) in model.terms["numeric"].items():
        x = median if row[col] is None else float(row[col])
        parts[col] = (x - mean) / scale * w
    for col, weights in model.terms["categorical"].items():
        parts[col] = weights.get("missing" if row[col] is None else row[col], 0.0)
    ranked = sorted(parts.items(), key=lambda kv: -abs(kv[1]))[:3]
    return {
        "probability": probability,
        "risk_band": model.band(probability),
        "top_features": [(k, v) for k, v in ranked],
    }


@pytest.mark.parametrize("n", [1, 7, 250])
def test_a_batch_answers_as_each_row_on_its_own(model, n):
    rows = random_rows(model, n, seed=n)
    answers, seconds = predict(model, rows)
    assert seconds >= 0 and len(answers) == n
    for row, answer in zip(rows, answers, strict=True):
        alone = one_by_one(model, row)
        # rounded to 6 places; float32 sums in a batch may differ from one row's in the 7th
        assert answer["probability"] == pytest.approx(alone["probability"], abs=1.5e-6)
        assert answer["risk_band"] == alone["risk_band"]
        assert answer["model"] == {"name": "at-risk", "version": "3"}
        got = [(p["feature"], p["contribution"], p["direction"]) for p in answer["top_features"]]
        want = [
            (k, pytest.approx(v, abs=6e-5), "raises risk" if v > 0 else "lowers risk")
            for k, v in alone["top_features"]
        ]
        assert got == want


def test_bands_follow_the_thresholds_at_their_edges(model):
    row = random_rows(model, 1, seed=1)[0]
    answers, _ = predict(model, [row] * 3)
    p = answers[0]["probability"]
    assert model.band(p) == answers[0]["risk_band"]
    assert [model.band(x) for x in (0.3, 0.6, 0.2999, 0.5999)] == [
        "medium",
        "high",
        "low",
        "medium",
    ]


def test_explain_of_rows_equals_the_batch_explanations(model):
    rows = random_rows(model, 20, seed=5)
    answers, _ = predict(model, rows)
    assert explain(model, rows) == [a["top_features"] for a in answers]


def test_whole_numbers_and_numpy_floats_are_accepted_like_floats(model):
    row = random_rows(model, 1, seed=8)[0]
    name = model.numeric[0]
    as_float = predict(model, [{**row, name: 4.0}])[0][0]["probability"]
    assert predict(model, [{**row, name: 4}])[0][0]["probability"] == as_float
    assert predict(model, [{**row, name: np.float64(4.0)}])[0][0]["probability"] == as_float


@pytest.mark.parametrize(
    "change, problem",
    [
        ("missing", "missing"),
        ("unknown", "unknown feature"),
        (True, "must be a number, got True"),
        ("7", "must be a number, got '7'"),
        (math.nan, "must be a number, got nan"),
        (math.inf, "must be a number, got inf"),
        ([1], "must be a number, got [1]"),
    ],
)
def test_a_bad_number_anywhere_refuses_the_batch_naming_row_and_feature(model, change, problem):
    rows = random_rows(model, 30, seed=2)
    name = model.numeric[1]
    bad = dict(rows[17])
    if change == "missing":
        del bad[name]
    elif change == "unknown":
        bad["shoe_size"] = 42
        name = "shoe_size"
    else:
        bad[name] = change
    rows[17] = bad
    for check in (validate, columns, predict):
        with pytest.raises(RequestError) as caught:
            check(model, rows)
        assert caught.value.errors == [{"row": 17, "field": name, "problem": problem}]
        assert name in str(caught.value)


def test_a_category_that_is_not_text_is_refused_and_every_fault_is_listed_in_row_order(model):
    rows = random_rows(model, 5, seed=3)
    cat, num = model.categorical[0], model.numeric[0]
    rows[3] = {**rows[3], cat: 12}
    rows[1] = {**rows[1], num: "high"}
    with pytest.raises(RequestError) as caught:
        predict(model, rows)
    assert caught.value.errors == [
        {"row": 1, "field": num, "problem": "must be a number, got 'high'"},
        {"row": 3, "field": cat, "problem": "must be text, got 12"},
    ]


def test_unseen_categories_are_warned_in_row_then_feature_order(model):
    first, second = model.categorical[0], model.categorical[1]
    rows = random_rows(model, 4, seed=6)
    rows = [{**r, first: r[first] or "a", second: r[second] or "b"} for r in rows]
    known_first = sorted(model.categories[first])[0]
    known_second = sorted(model.categories[second])[0]
    rows = [{**r, first: known_first, second: known_second} for r in rows]
    rows[2] = {**rows[2], second: "zzz", first: "yyy"}
    rows[0] = {**rows[0], second: "qqq"}
    found = [(w["row"], w["field"]) for w in unseen_categories(model, rows)]
    assert found == [(0, second), (2, first), (2, second)]


def test_a_row_is_explained_alike_alone_and_in_a_batch(model):
    """Few rows take plain Python, many take numpy: the same arithmetic and rounding."""
    rows = random_rows(model, 40, seed=9)
    batch = explain(model, rows)
    assert [explain(model, [row])[0] for row in rows] == batch
    assert [explain(model, rows[i : i + 3]) for i in range(0, 39, 3)] == [
        batch[i : i + 3] for i in range(0, 39, 3)
    ]
