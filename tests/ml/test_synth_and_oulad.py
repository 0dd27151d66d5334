"""The synthetic district and the OULAD loader: shapes, seasonal and cohort patterns, injected
bias that shows up as a missed-student gap, and the repaired OULAD columns."""

from __future__ import annotations

import numpy as np
import pytest

from edumlops.ml import oulad
from edumlops.ml.datasets import infer_schema
from edumlops.ml.synth import Bias, generate_district


def test_rows_columns_and_kinds_are_what_the_pipeline_expects():
    frame = generate_district(3000, seed=1)
    assert len(frame) == 3000
    kinds = {c.name: c.kind for c in infer_schema(frame)}
    assert kinds["student_id"] == "identifier"  # repeated once per term, still an id
    assert kinds["teacher_note"] == "text"
    assert kinds["term_start"] == "date"
    assert kinds["attendance_rate"] == "numeric" and kinds["ses"] == "categorical"
    assert set(frame["at_risk"]) == {"yes", "no"}
    assert 0.1 < (frame["at_risk"] == "yes").mean() < 0.45
    assert frame["school"].nunique() == 6 and set(frame["grade"]) <= set(range(6, 13))
    assert sorted(frame["term"].unique())[0] == "2024-25 T1"


def test_same_seed_same_rows_and_another_seed_other_rows():
    a, b = generate_district(500, seed=7), generate_district(500, seed=7)
    assert a.equals(b)
    assert not a.equals(generate_district(500, seed=8))


def test_seasonal_dip_and_cohort_drift_are_in_the_data():
    frame = generate_district(30_000, seed=2)
    by_term = frame.groupby("term")["attendance_rate"].mean()
    assert by_term["2024-25 T2"] < by_term["2024-25 T1"] - 0.02  # winter dip
    logins = frame.groupby("school_year")["lms_logins_weekly"].mean()
    assert logins["2025-26"] > logins["2024-25"] + 1.0  # next cohort uses the LMS more
    flat = generate_district(30_000, seed=2, drift=0.0).groupby("school_year")
    assert abs(np.diff(flat["lms_logins_weekly"].mean().to_numpy())[0]) < 0.3


def test_injected_bias_makes_the_group_look_healthier_than_it_is():
    fair = generate_district(20_000, seed=4)
    biased = generate_district(20_000, seed=4, bias=Bias("english_learner", "yes", 1.0))
    at_risk_el = (biased["english_learner"] == "yes") & (biased["at_risk"] == "yes")
    fair_el = (fair["english_learner"] == "yes") & (fair["at_risk"] == "yes")
    # same students, same outcomes; only the recorded features moved
    assert (biased["at_risk"] == fair["at_risk"]).all()
    assert (
        biased.loc[at_risk_el, "quiz_average"].mean() > fair.loc[fair_el, "quiz_average"].mean() + 8
    )
    others = biased["english_learner"] == "no"
    assert biased.loc[others, "quiz_average"].equals(fair.loc[others, "quiz_average"])


def test_a_bias_on_an_unknown_attribute_or_group_is_refused():
    with pytest.raises(ValueError, match="Cannot inject bias on 'shoe_size'"):
        generate_district(100, bias=Bias("shoe_size", "large"))
    with pytest.raises(ValueError, match="'maybe' is not a value of english_learner"):
        generate_district(100, bias=Bias("english_learner", "maybe"))


@pytest.mark.skipif(not oulad.default_path().exists(), reason="OULAD copy not in data/oulad")
def test_oulad_is_loaded_with_its_spreadsheet_damage_repaired():
    frame = oulad.load_student_info()
    assert len(frame) == 32_593
    bands = frame["imd_band"].value_counts()
    assert "20-Oct" not in bands and bands["10-20%"] == 3516 and bands["unknown"] == 1111
    results = frame["final_result"].value_counts()
    assert (results["Pass"], results["Withdrawn"], results["Fail"]) == (12_361, 10_156, 7_052)
    assert (frame["at_risk"] == "yes").sum() == 10_156 + 7_052


def test_a_file_that_is_not_oulad_is_named_as_such():
    import pandas as pd

    with pytest.raises(ValueError, match="not OULAD studentInfo.csv: it lacks"):
        oulad.repair_student_info(pd.DataFrame({"a": [1]}))
