"""Enrollment history and its forecasts: the generator's story (ten years, an opening, a
boundary change), the three methods and their intervals, the rolling-origin backtest with MASE
against the seasonal naive, the gate, and the error report once actual counts arrive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edumlops.ml.enrollment_synth import (
    BoundaryChange,
    Opening,
    school_grades,
    simulate_enrollment,
)
from edumlops.ml.forecast import (
    BacktestResult,
    backtest,
    forecast,
    forecast_error,
    forecast_gate,
)

SCHOOLS = ["Riverside High School", "Hillview High", "Pine Hill Elementary"]


@pytest.fixture(scope="module")
def district() -> pd.DataFrame:
    """Three schools, two grades each: Pine Hill opens in the fall of 2024, and from the fall
    of 2021 a fifth of Riverside's students go to Hillview."""
    return simulate_enrollment(
        SCHOOLS,
        grades=(3, 4, 9, 10),
        seed=3,
        growth=0.08,
        opening=Opening("Pine Hill Elementary", 2024, "fall"),
        boundary_change=BoundaryChange("Riverside High School", "Hillview High", 2021, "fall"),
    )


def total(frame: pd.DataFrame, school: str) -> pd.Series:
    rows = frame[frame["school"] == school]
    return rows.groupby("period", sort=False)["enrollment"].sum()


# --- the generator ----------------------------------------------------------------------------
def test_ten_years_of_every_school_and_the_grades_it_serves():
    frame = simulate_enrollment(5, seed=1, terms_per_year=2)
    assert list(frame.columns) == ["school", "grade", "year", "term", "period", "enrollment"]
    assert frame["enrollment"].dtype == np.int64
    assert sorted(frame["year"].unique()) == list(range(2016, 2026))
    assert set(frame["term"]) == {"fall", "spring"}
    assert frame["period"].iloc[:3].tolist() == ["2016-17 fall", "2016-17 spring", "2017-18 fall"]
    assert frame["school"].nunique() == 5
    for school, rows in frame.groupby("school"):
        assert sorted(rows["grade"].unique()) == list(school_grades(school))
        assert (rows.groupby("grade").size() == 20).all()  # 10 years x 2 terms
    assert not frame.duplicated(["school", "grade", "period"]).any()


def test_fall_is_the_largest_term_and_schools_grow_or_shrink():
    frame = simulate_enrollment(6, seed=2, opening=None, boundary_change=None)
    by_term = frame.groupby("term")["enrollment"].sum()
    assert by_term["fall"] > by_term["spring"] > by_term["summer"]
    fall = frame[frame["term"] == "fall"].groupby(["school", "year"])["enrollment"].sum()
    change = fall.groupby("school").agg(lambda s: s.iloc[-1] / s.iloc[0] - 1)
    assert (change > 0.05).any() and (change < -0.05).any()


def test_the_opening_school_has_zeros_before_it_opens_and_students_after(district):
    pine = total(district, "Pine Hill Elementary")
    opened = list(pine.index).index("2024-25 fall")
    assert (pine.iloc[:opened] == 0).all()
    assert (pine.iloc[opened:] > 0).all()


def test_a_boundary_change_moves_students_from_that_term_on_and_only_then(district):
    plain = simulate_enrollment(
        SCHOOLS,
        grades=(3, 4, 9, 10),
        seed=3,
        growth=0.08,
        opening=Opening("Pine Hill Elementary", 2024, "fall"),
        boundary_change=None,
    )
    moved = total(plain, "Riverside High School") - total(district, "Riverside High School")
    gained = total(district, "Hillview High") - total(plain, "Hillview High")
    change = list(moved.index).index("2021-22 fall")
    assert (moved.iloc[:change] == 0).all() and (gained.iloc[:change] == 0).all()
    assert (moved.iloc[change:] > 0).all()
    assert moved.equals(gained)  # what one school loses, the other gains, term by term
    share = moved / total(plain, "Riverside High School")
    assert share.iloc[change:].between(0.19, 0.21).all()
    pine = district["school"] == "Pine Hill Elementary"
    assert district[pine].equals(plain[plain["school"] == "Pine Hill Elementary"])


def test_same_seed_same_history_and_bad_events_are_refused():
    assert simulate_enrollment(seed=5).equals(simulate_enrollment(seed=5))
    assert not simulate_enrollment(seed=5).equals(simulate_enrollment(seed=6))
    with pytest.raises(ValueError, match="opening school 'Nowhere' is not one of the schools"):
        simulate_enrollment(opening=Opening("Nowhere"))
    with pytest.raises(ValueError, match="year 2040 is outside the history"):
        simulate_enrollment(boundary_change=BoundaryChange(year=2040))
    with pytest.raises(ValueError, match="No two of these schools .* serve a grade in common"):
        simulate_enrollment(3)
    with pytest.raises(ValueError, match="serve no grade in common"):
        simulate_enrollment(
            SCHOOLS,
            opening=None,
            boundary_change=BoundaryChange(SCHOOLS[0], "Pine Hill Elementary"),
        )


# --- forecasts --------------------------------------------------------------------------------
def test_seasonal_naive_repeats_the_count_a_season_ago(district):
    out = forecast(district, method="seasonal_naive", horizon=5)
    last_year = district[district["year"] == 2025].set_index(["school", "grade", "term"])
    for row in out.itertuples():
        assert row.point == last_year.loc[(row.school, row.grade, row.term), "enrollment"]
    first = out[out["school"] == "Hillview High"].head(5)
    assert first["period"].tolist() == [
        "2026-27 fall",
        "2026-27 spring",
        "2026-27 summer",
        "2027-28 fall",
        "2027-28 spring",
    ]
    # a season further on, the same count with a wider interval (sqrt 2)
    width = (first["upper"] - first["lower"]).to_numpy()
    assert width[3] == pytest.approx(width[0] * np.sqrt(2))


@pytest.mark.parametrize("method", ["ets", "gbm"])
def test_intervals_hold_the_point_and_ets_widens_with_the_horizon(district, method):
    out = forecast(district, method=method, horizon=6, level=0.9)
    assert len(out) == 6 * district.groupby(["school", "grade"]).ngroups
    assert (out["lower"] <= out["point"]).all() and (out["point"] <= out["upper"]).all()
    assert (out["lower"] >= 0).all() and (out["level"] == 0.9).all()
    if method == "ets":
        fitted = out[out["method"] == "ets"]
        width = (fitted["upper"] - fitted["lower"]).to_numpy().reshape(-1, 6)
        assert (np.diff(width, axis=1) >= -1e-9).all()
        narrower = forecast(district, method="ets", horizon=6, level=0.5)
        assert ((narrower["upper"] - narrower["lower"]) < out["upper"] - out["lower"]).all()


def test_a_school_that_just_opened_falls_back_with_a_reason(district):
    out = forecast(district, method="ets")
    pine = out[out["school"] == "Pine Hill Elementary"]
    assert (pine["method"] == "seasonal_naive").all()
    assert pine["reason"].iloc[0] == (
        "6 term(s) of history (exponential smoothing (ETS) needs 10): seasonal naive used"
    )
    others = out[out["school"] != "Pine Hill Elementary"]
    assert (others["method"] == "ets").all() and (others["reason"] == "").all()
    # before it opened, a school has no forecast model: 0
    before = forecast(district[district["year"] <= 2023], method="gbm")
    pine = before[before["school"] == "Pine Hill Elementary"]
    assert (pine["point"] == 0).all() and (pine["method"] == "none").all()
    assert pine["reason"].iloc[0] == "no students yet (not open): forecast 0"


# --- calibrated intervals ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def six_schools() -> pd.DataFrame:
    return simulate_enrollment(6, seed=3)


@pytest.fixture(scope="module")
def calibrated(six_schools) -> BacktestResult:
    return backtest(six_schools, methods=["ets"], origins=6, horizon=3, level=0.8, calibrate=6)


def test_calibration_brings_too_narrow_intervals_to_their_level(calibrated):
    """ETS's own 80% intervals hold about two actual counts in three here; calibrated on the six
    terms before each origin (and only those), they hold about the level."""
    ets = calibrated.metrics("ets")
    assert ets["raw_coverage"] < 0.72
    assert 0.75 <= ets["coverage"] <= 0.92
    assert ets["coverage"] > ets["raw_coverage"] + 0.1
    assert calibrated.calibrate == 6 and calibrated.as_dict()["calibrate"] == 6
    table = calibrated.table
    widened = (table["upper"] - table["lower"]) >= (table["raw_upper"] - table["raw_lower"]) - 1e-9
    assert widened[table["method"] == "ets"].mean() > 0.9
    bounded = table[table["lower"].notna()]
    assert (bounded["lower"] >= 0).all() and (bounded["lower"] <= bounded["point"] + 1e-9).all()


def test_a_backtest_origin_is_calibrated_as_a_forecast_made_then(six_schools, calibrated):
    """No peeking: the backtest's last origin has the intervals a calibrated forecast made with
    the history up to that origin has."""
    origin = calibrated.origins[-1]
    year, term = int(origin.split()[0][:4]), origin.split()[-1]
    ranks = {"fall": 0, "winter": 1, "spring": 2, "summer": 3}
    cut = six_schools[
        (six_schools["year"] < year)
        | ((six_schools["year"] == year) & (six_schools["term"].map(ranks) <= ranks[term]))
    ]
    then = forecast(cut, method="ets", horizon=3, level=0.8, calibrate=6)
    table = calibrated.table
    last = table[(table["method"] == "ets") & (table["origin"] == origin)]
    assert len(last) == len(then)
    np.testing.assert_allclose(last["lower"].to_numpy(), then["lower"].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(last["upper"].to_numpy(), then["upper"].to_numpy(), atol=1e-6)
    calibration = then.attrs["calibration"]
    assert calibration["applied"] and calibration["origins"] == 6
    assert len(calibration["factors"]) == 3 and min(calibration["factors"]) > 1


def test_too_few_past_forecasts_leave_the_models_intervals_and_say_why():
    one = simulate_enrollment(1, seed=3, boundary_change=None)
    one = one[one["grade"] == one["grade"].iloc[0]]
    plain = forecast(one, method="seasonal_naive", horizon=3)
    out = forecast(one, method="seasonal_naive", horizon=3, calibrate=6)
    pd.testing.assert_frame_equal(out, plain)
    calibration = out.attrs["calibration"]
    assert not calibration["applied"]
    assert "past forecast(s) with an interval" in calibration["why"]
    assert "calibration needs 30" in calibration["why"]
    with pytest.raises(ValueError, match="calibrate must be a number of past origins"):
        forecast(one, method="seasonal_naive", calibrate=-1)


def test_school_totals_are_the_sum_of_their_grades(district):
    out = forecast(district, method="seasonal_naive", by="school", horizon=1)
    assert list(out.columns[:2]) == ["school", "year"]
    fall = district[(district["year"] == 2025) & (district["term"] == "fall")]
    expected = fall.groupby("school")["enrollment"].sum()
    assert out.set_index("school")["point"].to_dict() == expected.astype(float).to_dict()


def bad(frame: pd.DataFrame, **changes) -> pd.DataFrame:
    frame = frame.copy()
    for column, (index, value) in changes.items():
        frame.loc[index, column] = value
    return frame


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda f: f.drop(columns="grade"), {}, r"missing the column\(s\) grade: it needs one row"),
        (
            lambda f: bad(f, enrollment=(5, -3)),
            {},
            r"1 negative count\(s\), e.g. -3 for Riverside High School grade 9 in 2017-18 "
            r"summer: counts must be 0 or more",
        ),
        (
            lambda f: pd.concat([f, f.iloc[[7]]]),
            {},
            r"2 rows that repeat a period, e.g. Riverside High School grade 9 in 2018-19 spring",
        ),
        (
            lambda f: f.drop(index=12),
            {},
            r"no row for Riverside High School grade 9 in 2020-21 fall: give every term",
        ),
        (lambda f: f, {"horizon": 0}, r"horizon must be 1 or more terms \(got 0\)"),
        (lambda f: f, {"method": "arima"}, r"Unknown method 'arima': choose one of"),
        (lambda f: f, {"level": 80}, r"level must be between 0 and 1"),
        (
            lambda f: f[f["year"] == 2025],
            {},
            r"too short: the longest series has 3 term\(s\) since its first student, and a "
            r"forecast needs at least a season and a term \(4\)",
        ),
    ],
)
def test_bad_history_is_refused_with_a_sentence(district, make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        forecast(make(district.reset_index(drop=True)), **kwargs)


# --- backtest and gate ------------------------------------------------------------------------
def linear_with_a_season(periods: int = 24) -> pd.DataFrame:
    t = np.arange(periods)
    return pd.DataFrame(
        {
            "school": "Riverside High School",
            "grade": 9,
            "year": 2016 + t // 3,
            "term": np.array(["fall", "spring", "summer"])[t % 3],
            "enrollment": 100 + 2 * t + np.array([10, 0, -5])[t % 3],
        }
    )


def test_seasonal_naive_mase_is_exactly_one_a_season_ahead_on_a_straight_trend():
    """Each error a season ahead is the trend over a year, as is every in-sample error."""
    history = linear_with_a_season()
    one = backtest(history, methods=("seasonal_naive",), origins=4, horizon=3)
    assert one.metrics("seasonal_naive")["mase"] == pytest.approx(1.0)
    assert one.origins == ["2021-22 summer", "2022-23 fall", "2022-23 spring", "2022-23 summer"]
    two = backtest(history, methods=("seasonal_naive",), origins=2, horizon=6)
    assert two.metrics("seasonal_naive")["mase"] == pytest.approx(1.5)  # 3 errors of 1, 3 of 2
    assert len(two.table) == 12
    with pytest.raises(ValueError, match="the first origin would have 3 term"):
        backtest(history, methods=("seasonal_naive",), origins=19, horizon=3)


def test_on_trending_data_ets_and_gbm_beat_the_seasonal_naive_and_pass_the_gate(district):
    result = backtest(district, methods=("ets", "gbm"), origins=4, by="school")
    assert result.methods == ("seasonal_naive", "ets", "gbm")
    base = result.metrics("seasonal_naive")["mase"]
    for method in ("ets", "gbm"):
        assert result.metrics(method)["mase"] < base
        gate = forecast_gate(result, method=method)
        assert gate.passed and gate.ratio < 1
        assert "it beats the baseline" in gate.reason
    # the same forecasts are scored for every method, per origin too
    counts = result.summary.set_index("method")[["forecasts", "scaled"]]
    assert (counts.nunique() == 1).all()
    assert len(result.per_origin) == 3 * 4
    assert set(result.table["origin"]) == set(result.origins)
    # Pine Hill opens after the first origin: not scored there, a naive fallback after
    assert any("had no students yet at the origin" in note for note in result.notes)
    json.dumps(result.as_dict())


def test_the_gate_fails_a_model_that_does_not_beat_the_baseline():
    summary = pd.DataFrame(
        {
            "method": ["seasonal_naive", "gbm"],
            "mase": [0.9, 1.1],
            "relative_mase": [1.0, 1.1 / 0.9],
            "mape": [0.03, 0.04],
            "coverage": [0.8, 0.7],
        }
    )
    result = BacktestResult(
        pd.DataFrame(), summary, summary, ("seasonal_naive", "gbm"), ["a", "b"], 3, 3, 0.8, "school"
    )
    gate = forecast_gate(result, method="gbm")
    assert not gate.passed and not gate.below_one
    assert gate.reason == (
        "gradient boosting on lags has MASE 1.100 against the seasonal naive's 0.900 over 2 "
        "origin(s) of 3 term(s) (ratio 1.22): it does not beat the baseline; its MASE is not "
        "below 1, the in-sample one-step seasonal naive's error."
    )
    with pytest.raises(ValueError, match="'ets' was not backtested"):
        forecast_gate(result, method="ets")
    with pytest.raises(ValueError, match="The seasonal naive is the baseline"):
        forecast_gate(result, method="seasonal_naive")


# --- monitoring -------------------------------------------------------------------------------
def test_forecast_error_flags_an_actual_outside_the_interval_or_too_far_off():
    forecasts = pd.DataFrame(
        {
            "school": ["A", "A", "B", "B", "D"],
            "year": [2026] * 5,
            "term": ["fall", "spring", "fall", "spring", "fall"],
            "point": [100.0, 95.0, 50.0, 48.0, 10.0],
            "lower": [90.0, 80.0, 45.0, 40.0, np.nan],  # D: one term of history, no interval
            "upper": [110.0, 110.0, 55.0, 56.0, np.nan],
            "level": 0.8,
        }
    )
    actuals = pd.DataFrame(  # per grade: summed to the school totals the forecast is of
        {
            "school": ["A", "A", "A", "A", "B", "C", "D"],
            "grade": [9, 10, 9, 10, 9, 9, 9],
            "year": [2026] * 7,
            "term": ["fall", "fall", "spring", "spring", "fall", "fall", "fall"],
            "enrollment": [60, 45, 50, 55, 44, 10, 10],
        }
    )
    report = forecast_error(forecasts, actuals, tolerance=0.1)
    table = report.table.set_index(["school", "term"])
    assert table["actual"].tolist() == [105.0, 105.0, 44.0, 10.0]
    assert table["flag"].tolist() == [False, False, True, False]
    assert table["inside"].tolist() == [True, True, False, pd.NA]
    assert table.loc[("A", "spring"), "ape"] == pytest.approx(10 / 105)  # within the 10%
    assert table.loc[("B", "fall"), "flag_reason"] == (
        "actual 44 is below the 80% interval [45, 55]; off by 14% of the actual (forecast 50, "
        "tolerance 10%)"
    )
    summary = report.summary
    assert summary["compared"] == 4 and summary["flagged"] == 1
    assert summary["mae"] == pytest.approx((5 + 10 + 6 + 0) / 4)
    assert summary["coverage"] == pytest.approx(2 / 3)  # of the three with an interval
    assert summary["pending"] == 1 and summary["unmatched"] == 1  # B spring; school C
    assert summary["total_ape"] == pytest.approx(abs(264 - 255) / 264)
    strict = forecast_error(forecasts, actuals, tolerance=0.05)
    assert strict.table["flag"].tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match=r"actuals is missing the column\(s\) enrollment"):
        forecast_error(forecasts, actuals.drop(columns="enrollment"))


def test_importing_the_forecast_loads_no_model_library_and_no_django():
    """Pages and the error check import it; statsmodels and sklearn load only when a model fits."""
    code = (
        "import json, sys\nimport edumlops.ml.forecast, edumlops.ml.enrollment_synth\n"
        "print(json.dumps([m for m in ('django', 'statsmodels', 'sklearn') if m in sys.modules]))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
