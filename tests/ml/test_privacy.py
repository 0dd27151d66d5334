"""Private pipelines (edumlops.ml.privacy) on generated district rows: the preprocessing learns
nothing from the rows, the bounds say where they came from, ε reaches diffprivlib as passed and
is what its accountant records, and the post-processed model converts to ONNX with the same
probabilities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edumlops.ml import onnx_bundle, privacy
from edumlops.ml.synth import generate_district
from edumlops.ml.training import FeatureSpec, binary_target, infer_features, prepare_frame

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


@pytest.fixture(scope="module")
def rows():
    frame = generate_district(3000, seed=3)
    spec = infer_features(frame, exclude=EXCLUDE)
    train, test = frame.iloc[:2200], frame.iloc[2200:]
    return (
        spec,
        prepare_frame(train, spec),
        binary_target(train["at_risk"], ["yes"]),
        prepare_frame(test, spec),
        binary_target(test["at_risk"], ["yes"]),
    )


def test_bounds_come_from_the_user_then_the_profile_then_the_rows(rows):
    spec, X, *_ = rows
    given = {"attendance_rate": [0, 1], "prior_gpa": [0, 4]}
    profile = {"quiz_average": (0.0, 100.0)}
    setup = privacy.resolve(spec, X, 2, given, profile)
    assert setup.epsilon == 2.0
    assert setup.bounds["attendance_rate"] == (0.0, 1.0)
    assert setup.bounds_from["attendance_rate"] == privacy.GIVEN
    assert setup.bounds["quiz_average"] == (0.0, 100.0)
    assert setup.bounds_from["quiz_average"] == privacy.PROFILE
    assert setup.bounds["lms_logins_weekly"] == (
        X["lms_logins_weekly"].min(),
        X["lms_logins_weekly"].max(),
    )
    assert setup.bounds_from["lms_logins_weekly"] == privacy.ROWS
    assert "attendance_rate" not in setup.read_from_data
    assert {"quiz_average", "lms_logins_weekly"} <= set(setup.read_from_data)
    assert setup.to_dict()["bounds_read_from_data"] == setup.read_from_data
    assert setup.categories["school"] == sorted(X["school"].unique())


def test_bounds_written_as_text_read_like_the_json_form():
    text = "attendance_rate: 0..1\nprior_gpa: 0 .. 4"
    assert privacy.parse_bounds(text) == {"attendance_rate": (0.0, 1.0), "prior_gpa": (0.0, 4.0)}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("attendance_rate 0..1", "'name: lower..upper'"),
        ({"attendance_rate": [1, 0]}, "lower < upper"),
        ({"attendance_rate": ["a", 1]}, "two numbers"),
        ({"attendance_rate": [0, math.inf]}, "finite"),
    ],
)
def test_bad_bounds_are_refused_with_the_fix(given, message):
    with pytest.raises(privacy.PrivacyError, match=message):
        privacy.parse_bounds(given)


def test_bounds_of_a_feature_the_model_does_not_use_are_refused(rows):
    spec, X, *_ = rows
    with pytest.raises(privacy.PrivacyError, match="'?shoe_size'?.*numeric features: grade"):
        privacy.resolve(spec, X, 1, {"shoe_size": [30, 50]})


@pytest.mark.parametrize("epsilon", [0, -1, 0.001, 51, math.nan, "much", None])
def test_an_epsilon_out_of_range_is_refused(rows, epsilon):
    spec, X, *_ = rows
    with pytest.raises(privacy.PrivacyError, match="ε"):
        privacy.resolve(spec, X, epsilon)


def test_the_preprocessing_is_fitted_on_the_bounds_not_on_the_rows(rows):
    spec, X, *_ = rows
    setup = privacy.resolve(spec, X, 1, {"attendance_rate": [0.5, 1.0]})
    pre = privacy.preprocessing(spec, setup)
    scaler = pre.named_transformers_["numeric"].named_steps["scale"]
    lower = [setup.bounds[c][0] for c in spec.numeric]
    upper = [setup.bounds[c][1] for c in spec.numeric]
    np.testing.assert_allclose(scaler.data_min_, lower)
    np.testing.assert_allclose(scaler.data_max_, upper)
    # the same setup gives the same preprocessing whatever rows there are
    other = privacy.preprocessing(spec, setup)
    probe = X.head(50)
    np.testing.assert_array_equal(pre.transform(probe), other.transform(probe))

    # out of bounds is clipped, a gap is the middle (0), an unseen category sets no column
    odd = X.head(3).copy()
    odd.loc[odd.index[0], "attendance_rate"] = 0.1  # below 0.5
    odd.loc[odd.index[1], "attendance_rate"] = np.nan
    odd.loc[odd.index[2], "school"] = "Nowhere Academy"
    out = pre.transform(odd)
    col = spec.numeric.index("attendance_rate")
    assert out[0, col] == -1.0
    assert out[1, col] == 0.0
    first = len(spec.numeric) + sum(
        len(setup.categories[c]) for c in spec.categorical[: spec.categorical.index("school")]
    )
    school = slice(first, first + len(setup.categories["school"]))
    assert out[2, school].sum() == 0


def test_no_prepared_row_is_longer_than_the_data_norm(rows):
    spec, X, *_ = rows
    setup = privacy.resolve(spec, X, 1)
    assert setup.data_norm == pytest.approx(math.sqrt(len(spec.numeric) + len(spec.categorical)))
    out = privacy.preprocessing(spec, setup).transform(X)
    assert np.linalg.norm(out, axis=1).max() <= setup.data_norm + 1e-9
    assert out[:, : len(spec.numeric)].min() >= -1 and out[:, : len(spec.numeric)].max() <= 1


@pytest.mark.parametrize("algorithm", sorted(privacy.DP_ALGORITHMS))
@pytest.mark.parametrize("epsilon", [0.5, 3.0])
def test_epsilon_reaches_diffprivlib_as_passed(rows, algorithm, epsilon):
    spec, X, y, *_ = rows
    setup = privacy.resolve(spec, X, epsilon)
    fitted = privacy.fit_private(spec, algorithm, setup, X, y, seed=1)
    assert fitted.private_model.epsilon == epsilon
    assert fitted.private_model.accountant.spent_budget == [(epsilon, 0)]
    assert fitted.epsilon_spent == pytest.approx(epsilon)
    if algorithm == "dp_logistic_regression":
        assert fitted.private_model.data_norm == pytest.approx(setup.data_norm)
    else:
        lower, upper = privacy.transformed_bounds(spec, setup)
        assert list(fitted.private_model.bounds[0]) == lower
        assert list(fitted.private_model.bounds[1]) == upper


def test_a_smaller_epsilon_moves_the_model_further_from_the_non_private_one(rows):
    """The noise grows as ε shrinks: averaged over seeds, the private coefficients sit further
    from the non-private model's at ε = 0.2 than at ε = 20."""
    spec, X, y, *_ = rows

    def distance(epsilon: float) -> float:
        setup = privacy.resolve(spec, X, epsilon)
        public = privacy.fit_non_private(spec, "dp_logistic_regression", setup, X, y)
        target = public.named_steps["model"].coef_
        gaps = []
        for seed in range(6):
            fitted = privacy.fit_private(spec, "dp_logistic_regression", setup, X, y, seed=seed)
            gaps.append(np.linalg.norm(fitted.pipeline.named_steps["model"].coef_ - target))
        return float(np.mean(gaps))

    assert distance(0.2) > 2 * distance(20.0)


@pytest.mark.parametrize("algorithm", sorted(privacy.DP_ALGORITHMS))
def test_the_plain_model_gives_the_private_models_probabilities(rows, algorithm):
    spec, X, y, Xt, _ = rows
    setup = privacy.resolve(spec, X, 1)
    fitted = privacy.fit_private(spec, algorithm, setup, X, y, seed=0)
    prepared = fitted.pipeline.named_steps["prepare"].transform(Xt)
    expected = fitted.private_model.predict_proba(prepared)
    got = fitted.pipeline.predict_proba(Xt)
    if algorithm == "dp_gaussian_nb":  # only where a variance was raised to the floor
        floored = (fitted.private_model.var_ < privacy.VAR_FLOOR).any()
        if floored:
            pytest.skip("a noisy variance was floored: probabilities differ by design")
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert type(fitted.pipeline.named_steps["model"]).__module__.startswith("sklearn.")


@pytest.mark.parametrize("algorithm", sorted(privacy.DP_ALGORITHMS))
def test_onnx_gives_the_private_models_probabilities(rows, algorithm):
    spec, X, y, Xt, _ = rows
    setup = privacy.resolve(spec, X, 1, {"attendance_rate": [0.6, 1.0]})
    fitted = privacy.fit_private(spec, algorithm, setup, X, y, seed=0)
    probe = Xt.copy()
    probe.iloc[0, probe.columns.get_loc("attendance_rate")] = np.nan  # a gap
    probe.iloc[1, probe.columns.get_loc("attendance_rate")] = 0.2  # clipped
    probe.iloc[2, probe.columns.get_loc("school")] = "Nowhere Academy"  # unknown category
    onnx = onnx_bundle.OnnxModel(onnx_bundle.to_onnx(fitted.pipeline, spec))
    result = onnx_bundle.parity(fitted.pipeline, onnx, probe)
    assert result.ok, result.describe()
    assert result.decisions_agree == 1.0


def test_the_comparison_scores_both_models_on_the_same_rows(rows):
    spec, X, y, Xt, yt = rows
    setup = privacy.resolve(spec, X, 8)
    fitted = privacy.fit_private(spec, "dp_logistic_regression", setup, X, y, seed=0)
    public = privacy.fit_non_private(spec, "dp_logistic_regression", setup, X, y)
    out = privacy.comparison(fitted.pipeline, public, Xt, yt)
    assert out["rows"] == len(Xt)
    expected = float(((public.predict_proba(Xt)[:, 1] >= 0.5) == yt.to_numpy()).mean())
    assert out["non_private"]["accuracy"] == pytest.approx(expected)
    assert 0.5 < out["non_private"]["auc"] <= 1
    assert 0 <= out["private"]["accuracy"] <= 1


def test_a_non_private_algorithm_is_refused(rows):
    spec, X, y, *_ = rows
    setup = privacy.resolve(spec, X, 1)
    with pytest.raises(privacy.PrivacyError, match="not a private algorithm"):
        privacy.fit_private(spec, "random_forest", setup, X, y)


def test_one_class_only_is_refused():
    spec = FeatureSpec(["x"], [])
    X = pd.DataFrame({"x": [0.1, 0.2, 0.3]})
    setup = privacy.resolve(spec, X, 1, {"x": [0, 1]})
    with pytest.raises(privacy.PrivacyError, match="only one class"):
        privacy.fit_private(spec, "dp_gaussian_nb", setup, X, pd.Series([1, 1, 1]))
