"""Categories never seen in training: which ones the serving core knows for sure (a linear
model's terms, or a drift reference whose "other" bin was empty), the warning each unseen value
gets, and that such a row is still scored through ONNX Runtime like scikit-learn scores it."""

from __future__ import annotations

import pandas as pd
import pytest

from edumlops.ml import drift, onnx_bundle
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.serving_core import (
    UNSEEN,
    ServingModel,
    known_categories,
    linear_terms,
    predict,
    unseen_categories,
)
from edumlops.ml.synth import generate_district
from edumlops.ml.training import binary_target, build_pipeline, fit, infer_features, prepare_frame

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


@pytest.fixture(scope="module")
def trained():
    frame = generate_district(800, seed=3)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = fit(build_pipeline(spec, "random_forest", balanced=True, seed=0), X, y)
    return frame, spec, pipeline


def reference_of(frame, spec, **kwargs):
    built = drift.build_reference(frame, spec.numeric, spec.categorical, **kwargs)
    return {name: ref.to_dict() for name, ref in built.items()}


def served(frame, spec, pipeline, reference=None) -> ServingModel:
    manifest = Manifest(
        model=ModelInfo("at-risk", "1"),
        numeric=spec.numeric,
        categorical=spec.categorical,
        thresholds={"decision": 0.5},
        drift_reference=reference,
    )
    return ServingModel.from_manifest(
        manifest, onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, spec))
    )


def a_row(frame, spec, **changes) -> dict:
    row = frame[spec.columns].iloc[0].to_dict()
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return {**row, **changes}


def test_a_linear_models_terms_give_every_category_its_encoder_learnt():
    frame = generate_district(400, seed=1)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = fit(build_pipeline(spec, "logistic_regression", balanced=True, seed=0), X, y)
    terms = linear_terms(pipeline, spec.numeric, spec.categorical)
    known = known_categories(spec.categorical, terms, None)
    encoder = pipeline[:-1][0].named_transformers_["categorical"]
    for col, cats in zip(spec.categorical, encoder.categories_, strict=True):
        assert known[col] == {str(c) for c in cats}
    assert known["locality"] == {"rural", "suburban", "urban"}


def test_a_drift_reference_is_trusted_only_when_its_other_bin_was_empty(trained):
    frame, spec, _ = trained
    complete = known_categories(spec.categorical, None, reference_of(frame, spec))
    assert complete["locality"] == {"rural", "suburban", "urban"}
    assert complete["school"] == set(frame["school"].astype(str))
    # two categories kept, the rest counted as "other": the list is not all of them
    cut = known_categories(spec.categorical, None, reference_of(frame, spec, max_categories=2))
    assert "locality" not in cut and "school" not in cut
    assert known_categories(spec.categorical, None, None) == {}


def test_each_unseen_value_is_named_with_its_row_and_field(trained):
    frame, spec, pipeline = trained
    model = served(frame, spec, pipeline, reference_of(frame, spec))
    rows = [
        a_row(frame, spec),
        a_row(frame, spec, locality="lunar", school_size=None),
        a_row(frame, spec, locality="Rural", school="Mars Academy"),
    ]
    warnings = unseen_categories(model, rows)
    assert sorted((w["row"], w["field"], w["code"]) for w in warnings) == [
        (1, "locality", UNSEEN),
        (2, "locality", UNSEEN),  # categories are compared exactly: "Rural" is not "rural"
        (2, "school", UNSEEN),
    ]
    first = next(w for w in warnings if w["row"] == 1)
    assert "'lunar'" in first["message"] and "rural, suburban, urban" in first["message"]
    assert "still scored" in first["message"]


def test_no_warning_where_the_training_categories_are_not_known(trained):
    """No ONNX graph to read (the slim edge install has no `onnx` package), no linear terms and
    no drift reference: nothing is flagged rather than everything."""
    frame, spec, pipeline = trained
    runner = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(pipeline, spec))
    runner.categories = {}
    manifest = Manifest(
        model=ModelInfo("at-risk", "1"),
        numeric=spec.numeric,
        categorical=spec.categorical,
        thresholds={"decision": 0.5},
    )
    model = ServingModel.from_manifest(manifest, runner)
    assert model.categories == {}
    assert unseen_categories(model, [a_row(frame, spec, locality="lunar")]) == []


def test_an_unseen_row_is_scored_as_scikit_learn_scores_it(trained):
    frame, spec, pipeline = trained
    model = served(frame, spec, pipeline, reference_of(frame, spec))
    rows = [a_row(frame, spec, locality="lunar"), a_row(frame, spec)]
    answers, _ = predict(model, rows)
    expected = pipeline.predict_proba(prepare_frame(pd.DataFrame(rows), spec))[:, 1]
    for answer, p in zip(answers, expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)


def test_reasons_for_any_model_are_the_change_when_each_value_is_unknown(trained):
    """A random forest has no weights to read: each reason is the probability this row loses
    or gains when that one value is made unknown, scored through the same ONNX session."""
    from edumlops.ml.serving_core import explain_by_substitution, feed

    frame, spec, pipeline = trained
    model = served(frame, spec, pipeline)
    row = a_row(frame, spec)
    reasons = explain_by_substitution(model, row, top=3)
    assert 1 <= len(reasons) <= 3
    sizes = [abs(r["contribution"]) for r in reasons]
    assert sizes == sorted(sizes, reverse=True)
    base = float(model.onnx.predict_feed(feed(model, [row]))[0])
    for reason in reasons:
        without = float(model.onnx.predict_feed(feed(model, [{**row, reason["feature"]: None}]))[0])
        assert reason["contribution"] == pytest.approx(base - without, abs=1e-4)
        assert reason["direction"] == ("raises risk" if base > without else "lowers risk")
    # a row with every value unknown has nothing to explain
    assert explain_by_substitution(model, dict.fromkeys(spec.columns)) == []


def test_any_models_categories_are_read_off_its_onnx_graph(trained):
    """A random forest with no drift reference: the categories its one-hot encoders learnt are
    in the ONNX graph, so an unseen value is flagged exactly, and a known one never is."""
    frame, spec, pipeline = trained
    model = served(frame, spec, pipeline, reference=None)
    for name in spec.categorical:
        assert model.categories[name] == frozenset(frame[name].dropna().astype(str))
    name = spec.categorical[0]
    warnings = unseen_categories(
        model, [a_row(frame, spec, **{name: "astronaut"}), a_row(frame, spec)]
    )
    assert [(w["row"], w["field"], w["code"]) for w in warnings] == [(0, name, UNSEEN)]
