"""Drift with the academic calendar in mind: a start-of-term dip is not drift against the same
weeks of last year but is against the naive previous window; a real shift is caught and named;
a small school gets "insufficient data" until pooled; raw rows and histograms agree."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from edumlops.ml import drift
from edumlops.ml.synth import generate_weeks, school_calendar

FEATURES = ["attendance_rate", "lms_logins_weekly", "quiz_average"]
PERIODS = [drift.Period(*p) for p in school_calendar((2024, 2025))]
START, END = dt.date(2025, 9, 1), dt.date(2025, 9, 14)  # the first two weeks of the new year


def window(frame, start, end):
    return frame[(frame["week"] >= np.datetime64(start)) & (frame["week"] <= np.datetime64(end))]


@pytest.fixture(scope="module")
def year():
    frame = generate_weeks(300, seed=1)
    reference = drift.build_reference(
        frame[frame["week"] < np.datetime64("2025-07-01")], FEATURES, ["locality"]
    )
    return frame, reference


def test_the_baselines_the_calendar_picks():
    assert drift.seasonal_baseline(START, END, PERIODS) == (
        dt.date(2024, 9, 2),
        dt.date(2024, 9, 15),
    )
    # the naive window before the autumn term is the end of last summer term
    assert drift.previous_window(START, END, PERIODS) == (
        dt.date(2025, 6, 13),
        dt.date(2025, 6, 26),
    )
    assert drift.masked(dt.date(2024, 12, 24), PERIODS) and not drift.masked(START, PERIODS)


def test_a_start_of_term_dip_is_not_drift_against_last_years_same_weeks(year):
    frame, reference = year
    current = window(frame, START, END)
    seasonal = drift.detect(
        reference, current, baseline=window(frame, *drift.seasonal_baseline(START, END, PERIODS))
    )
    assert seasonal.status == "no_drift", [f.reason for f in seasonal.features]
    naive = drift.detect(
        reference, current, baseline=window(frame, *drift.previous_window(START, END, PERIODS))
    )
    assert naive.status == "drift"
    assert set(naive.drifted) == {"attendance_rate", "lms_logins_weekly"}


def test_a_real_shift_is_caught_with_the_seasonal_baseline_and_named(year):
    frame, reference = year
    shifted = generate_weeks(300, seed=1, shift={"quiz_average": (START, END, 8.0)})
    report = drift.detect(
        reference,
        window(shifted, START, END),
        baseline=window(frame, *drift.seasonal_baseline(START, END, PERIODS)),
    )
    assert report.drifted == ["quiz_average"]
    quiz = next(f for f in report.features if f.name == "quiz_average")
    assert "quiz_average drifted" in quiz.reason and quiz.psi_interval[0] > 0.2


def test_a_school_with_twelve_predictions_is_insufficient_until_pooled(year):
    frame, reference = year
    current = window(frame, START, END)
    tiny = current.head(12)
    assert drift.detect(reference, tiny).status == "insufficient_data"
    counts = {"Mill Road": 12, "Cedar Creek": 12, "Oak Farm": 12, "Riverside High": 400}
    places = {"Mill Road": "rural", "Cedar Creek": "rural", "Oak Farm": "rural"}
    groups = drift.pool_small_groups(counts, places | {"Riverside High": "urban"}, min_count=30)
    assert groups == {
        "Riverside High": ["Riverside High"],
        "rural (pooled)": ["Cedar Creek", "Mill Road", "Oak Farm"],
    }
    pooled = current.iloc[:36]  # the three schools' 12 rows each
    assert drift.detect(reference, pooled).status in ("drift", "no_drift")
    lonely = drift.pool_small_groups({"A": 12, "B": 30}, {"A": "rural", "B": "urban"}, 30)
    assert lonely == {"A": ["A"], "B": ["B"]}  # nobody to pool with: reported insufficient


def test_raw_rows_and_histograms_agree(year):
    frame, reference = year
    shifted = generate_weeks(300, seed=1, shift={"attendance_rate": (START, END, -0.08)})
    current = window(shifted, START, END)
    raw = drift.detect(reference, current, n_boot=0)
    aggregated = drift.detect(reference, drift.histograms(reference, current), n_boot=0)
    for a, b in zip(raw.features, aggregated.features, strict=True):
        assert a.psi == pytest.approx(b.psi, abs=1e-9)  # the same bins, the same counts
        assert a.js == pytest.approx(b.js, abs=1e-9)
    assert (
        raw.drifted
        == aggregated.drifted
        == ["attendance_rate", "lms_logins_weekly"][:1]
        + [f for f in aggregated.drifted if f != "attendance_rate"]
    )
    assert "attendance_rate" in raw.drifted


def test_histogram_bins_and_psi_by_hand():
    ref = drift.FeatureReference("x", "numeric", edges=[0.0, 1.0])
    assert ref.histogram([-5, 0, 0.5, 1, 7, None]).tolist() == [1, 2, 2, 1]
    cat = drift.FeatureReference("c", "categorical", categories=["a", "b"])
    assert cat.histogram(["a", "b", "b", "z", None]).tolist() == [1, 2, 1, 1]
    assert drift.psi([50, 50], [50, 50]) == 0.0
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert drift.psi([50, 50], [80, 20]) == pytest.approx(expected)
    again = drift.FeatureReference.from_dict(ref.to_dict())
    assert again == ref and again.labels[-1] == drift.MISSING


def test_a_reference_rebins_another_models_counts_and_names_the_school_year():
    import datetime as dt

    from edumlops.ml import drift as d

    old = d.FeatureReference("x", "numeric", edges=[0.0, 10.0], counts=[0, 5, 5, 0])
    new = d.FeatureReference("x", "numeric", edges=[5.0], counts=[5, 5, 0])
    assert new.rebin([1, 4, 6, 2], old) == [1 + 2, 2 + 6, 2]
    cat = d.FeatureReference("c", "categorical", categories=["a"])
    try:
        new.rebin([1, 2, 3], cat)
    except ValueError as exc:
        assert "categorical bins cannot become numeric" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a categorical histogram became numeric")
    assert d.school_year(dt.date(2025, 10, 1)) == "2025–26"
    assert d.school_year(dt.date(2026, 3, 1)) == "2025–26"
    assert d.add_histograms({"x": [1, 2]}, {"x": [3, 4], "y": [1]}) == {"x": [4, 6], "y": [1]}


def test_a_feature_drifting_names_the_rule_that_decided():
    from edumlops.ml import drift as d

    ref = d.FeatureReference("x", "categorical", categories=["a", "b"], counts=[500, 500, 0, 0])
    report = d.detect({"x": ref}, {"x": [300, 700, 0, 0]}, psi_threshold=1.0, js_threshold=0.05)
    (feature,) = report.features
    assert feature.drifted and feature.psi < 1.0
    assert "Jensen–Shannon above 0.05" in feature.reason and "PSI above" not in feature.reason
    calm = d.detect({"x": ref}, {"x": [300, 700, 0, 0]}, psi_threshold=1.0, js_threshold=0.5)
    assert not calm.features[0].drifted
