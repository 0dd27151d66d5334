"""Features, the pipeline and fitting: typed inputs, clear errors, staged progress."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.ml import evaluation
from edumlops.ml.synth import generate_district
from edumlops.ml.training import (
    FeatureError,
    FeatureSpec,
    binary_target,
    build_pipeline,
    fit,
    infer_features,
    prepare_frame,
)

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}


def test_features_leave_out_ids_notes_dates_and_constants():
    frame = generate_district(2000, seed=0)
    frame["constant"] = 1
    spec = infer_features(frame, exclude=EXCLUDE)
    assert "attendance_rate" in spec.numeric and "school" in spec.categorical
    assert not {"term_start", "constant", "student_id", "teacher_note"} & set(spec.columns)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_prepare_frame_names_missing_and_wrongly_typed_features():
    spec = FeatureSpec(["attendance_rate"], ["school"])
    with pytest.raises(FeatureError, match="lack the feature\\(s\\) school"):
        prepare_frame(pd.DataFrame({"attendance_rate": [0.9]}), spec)
    bad = pd.DataFrame({"attendance_rate": [0.9, "ninety"], "school": ["A", None]})
    with pytest.raises(FeatureError, match="'attendance_rate' must be a number.*'ninety'"):
        prepare_frame(bad, spec)
    ok = prepare_frame(pd.DataFrame({"attendance_rate": [0.9, None], "school": ["A", None]}), spec)
    assert ok["school"].tolist() == ["A", "missing"]
    assert ok["attendance_rate"].dtype == np.float64 and np.isnan(ok["attendance_rate"].iloc[1])


def test_binary_target_compares_as_text():
    assert binary_target(pd.Series([1, 0, 1]), ["1"]).tolist() == [1, 0, 1]
    with pytest.raises(FeatureError, match="No positive class"):
        binary_target(pd.Series(["a"]), [])


@pytest.mark.parametrize(
    "algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting"]
)
def test_each_algorithm_learns_and_reports_its_stages(algorithm):
    frame = generate_district(4000, seed=5)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    stages = []
    pipeline = build_pipeline(spec, algorithm, balanced=True, seed=0)
    fit(pipeline, X.iloc[:3000], y.iloc[:3000], progress=lambda s, f: stages.append((s, f)))
    proba = pipeline.predict_proba(X.iloc[3000:])[:, 1]
    assert evaluation.evaluate(y.iloc[3000:], proba)["auc"] > 0.7
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    if algorithm != "logistic_regression":
        assert any(" of " in s for s, _ in stages)  # "fitting: 50 of 150 boosting rounds"


def test_an_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="Unknown algorithm 'svm'"):
        build_pipeline(FeatureSpec(["a"], []), "svm", balanced=False, seed=0)
