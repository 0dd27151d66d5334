"""The bias report: rates per group as fairlearn computes them, intervals on the gap, and the
three verdicts — including 'inconclusive' for small groups and for intervals on the limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_negative_rate

from edumlops.ml.fairness import BiasReport, BiasRule, bias_report

FNR = [BiasRule("false_negative_rate", "max_difference", 0.1)]


def groups_with_fnr(fnr_a: float, fnr_b: float, n: int, seed: int = 0):
    """n students per group, half at risk; the model misses fnr_x of each group's at-risk."""
    rng = np.random.default_rng(seed)
    y = np.tile([1, 0], n)
    group = np.repeat(["a", "b"], n)
    miss = np.where(group == "a", fnr_a, fnr_b)
    pred = np.where(y == 1, (rng.random(2 * n) >= miss).astype(int), 0)
    return y, pred, pd.DataFrame({"g": group})


def test_group_rates_are_fairlearns():
    y, pred, frame = groups_with_fnr(0.2, 0.4, 500)
    report = bias_report(y, pred, frame, FNR, intersections=False, n_boot=50)
    expected = MetricFrame(
        metrics=false_negative_rate, y_true=y, y_pred=pred, sensitive_features=frame["g"]
    ).by_group
    for row in report.groups:
        assert row.metrics["false_negative_rate"] == pytest.approx(expected[row.group], abs=1e-4)
        assert row.n == 500 and row.positives == 250


def test_a_clear_gap_fails_a_clear_match_passes():
    y, pred, frame = groups_with_fnr(0.1, 0.5, 2000)
    failed = bias_report(y, pred, frame, FNR, intersections=False)
    assert failed.outcome == "fail"
    check = failed.checks[0]
    assert check.ci_low > 0.1 and check.worst_group == "b"
    assert "differs by" in check.reason and "above the limit 0.1" in check.reason

    y, pred, frame = groups_with_fnr(0.2, 0.2, 2000)
    passed = bias_report(y, pred, frame, FNR, intersections=False)
    assert passed.outcome == "pass" and passed.checks[0].ci_high <= 0.1


def test_a_gap_near_the_limit_on_few_rows_is_inconclusive():
    y, pred, frame = groups_with_fnr(0.2, 0.3, 120)
    report = bias_report(y, pred, frame, FNR, intersections=False)
    assert report.outcome == "inconclusive"
    assert "straddles the limit" in report.checks[0].reason


def test_small_groups_are_shown_but_not_judged():
    y, pred, frame = groups_with_fnr(0.2, 0.2, 500)
    frame.loc[:9, "g"] = "tiny"  # ten students in a third group
    report = bias_report(y, pred, frame, FNR, intersections=False, min_group_size=30)
    tiny = next(g for g in report.groups if g.group == "tiny")
    assert tiny.insufficient and tiny.n == 10
    assert report.outcome == "pass"  # a and b are compared; tiny is listed as insufficient

    only_one = bias_report(y, pred, frame, FNR, intersections=False, min_group_size=600)
    assert only_one.outcome == "inconclusive"
    assert "too few to compare" in only_one.checks[0].reason


def test_intersections_are_checked_and_named():
    y, pred, frame = groups_with_fnr(0.2, 0.2, 1000)
    frame["h"] = np.tile(["x", "y"], 1000)
    report = bias_report(y, pred, frame, FNR, n_boot=50)
    assert {c.attribute for c in report.checks} == {"g", "h", "g × h"}
    assert any(g.group == "a × x" for g in report.groups)


def test_min_ratio_rule_and_round_trip_through_json():
    y, pred, frame = groups_with_fnr(0.1, 0.5, 2000)
    rule = [BiasRule("recall", "min_ratio", 0.8)]
    report = bias_report(y, pred, frame, rule, intersections=False)
    assert report.outcome == "fail"  # recall 0.5 vs 0.9: ratio ~0.56
    assert report.checks[0].worst_group == "b"
    again = BiasReport.from_dict(report.to_dict())
    assert again.to_dict() == report.to_dict()


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="Unknown fairness metric 'accuracy'"):
        BiasRule("accuracy")


def test_a_rate_is_judged_only_on_enough_students_in_its_denominator():
    y, pred, frame = groups_with_fnr(0.2, 0.2, 500)
    # group c: 200 students, only 6 of them at risk, all missed
    y = np.concatenate([y, [1] * 6 + [0] * 194])
    pred = np.concatenate([pred, [0] * 200])
    frame = pd.concat([frame, pd.DataFrame({"g": ["c"] * 200})], ignore_index=True)
    report = bias_report(y, pred, frame, FNR, intersections=False, min_group_size=30)
    check = report.checks[0]
    assert check.outcome == "pass", check.reason  # c's FNR of 1.0 over 6 students is not judged
    assert "Not judged, fewer than 30 at-risk students" in check.reason
    assert "c: 6 at-risk students of 200 held-out students" in check.reason
    assert check.not_judged == [{"group": "c", "count": 6, "n": 200}]
    c = next(g for g in report.groups if g.group == "c")
    assert not c.insufficient and c.judged == {"false_negative_rate": False}
    assert c.metrics["false_negative_rate"] == 1.0  # kept, shown greyed with the reason
    assert c.reasons["false_negative_rate"] == (
        "not judged: fewer than the 30 at-risk students needed"
    )
    selection = bias_report(
        y, pred, frame, [BiasRule("selection_rate", "max_difference", 0.5)], intersections=False
    )
    assert "c:" not in selection.checks[0].reason  # 200 students: c counts for selection rate


@pytest.mark.parametrize("seed", range(5))
def test_noise_among_many_equal_groups_is_not_called_bias(seed):
    """Six groups, the same true miss rate, 40 at-risk students each: the raw gap between the
    best and the worst is often above 0.1 by chance; the gate must not say 'fail'."""
    rng = np.random.default_rng(seed)
    n = 6 * 80
    y = np.tile([1, 0], n // 2)
    pred = np.where(y == 1, (rng.random(n) >= 0.3).astype(int), 0)
    frame = pd.DataFrame({"g": np.repeat(list("abcdef"), 80)})
    report = bias_report(y, pred, frame, FNR, intersections=False, seed=seed)
    assert report.outcome != "fail", report.summary


def test_the_insufficiency_message_says_what_it_counts_and_the_minimum():
    """The issue's case: 93 and 70 held-out students, of whom 14 and 11 at risk: the message
    names both counts, so it agrees with a chart showing 93 and 70."""
    y = np.array([1] * 14 + [0] * 79 + [1] * 11 + [0] * 59)
    pred = np.zeros_like(y)
    frame = pd.DataFrame({"sex": ["F"] * 93 + ["M"] * 70})
    report = bias_report(y, pred, frame, FNR, intersections=False, min_group_size=30)
    check = report.checks[0]
    assert check.outcome == "inconclusive"
    assert check.counted == "at-risk students" and check.min_group_size == 30
    assert check.judged_groups == 0
    assert "at least 30 at-risk students; no group has that many" in check.reason
    assert "F: 14 at-risk students of 93 held-out students" in check.reason
    assert "M: 11 at-risk students of 70 held-out students" in check.reason
    assert "false-negative rate" in check.reason and "false_negative_rate" not in check.reason
    f = next(g for g in report.groups if g.group == "F")
    assert (f.n, f.positives, f.negatives) == (93, 14, 79)


def test_insufficient_groups_keep_their_numbers_and_reason():
    y, pred, frame = groups_with_fnr(0.2, 0.2, 500)
    frame.loc[:9, "g"] = "tiny"
    pred[:10] = 0
    pred[0] = 1  # tiny: 5 at-risk students, one found
    report = bias_report(y, pred, frame, FNR, intersections=False, min_group_size=30)
    tiny = next(g for g in report.groups if g.group == "tiny")
    assert tiny.insufficient and tiny.n == 10 and tiny.positives == 5
    assert tiny.metrics["false_negative_rate"] == pytest.approx(0.8)
    assert tiny.judged == {"false_negative_rate": False}
    assert tiny.reasons["false_negative_rate"] == (
        "not judged: fewer than the 30 held-out students needed"
    )
    again = BiasReport.from_dict(report.to_dict())
    assert again.groups[-1].reasons == report.groups[-1].reasons


def test_intersections_carry_their_attributes_counts_and_failing_check():
    """An intersection that fails while each attribute alone passes is in the report with its
    groups' counts, so it can be charted."""
    rng = np.random.default_rng(1)
    n = 4000
    sex = rng.choice(["F", "M"], n)
    address = rng.choice(["U", "R"], n)
    y = rng.integers(0, 2, n)
    miss = np.where((sex == "F") & (address == "U"), 0.5, 0.15)
    miss = np.where((sex == "M") & (address == "R"), 0.0, miss)
    pred = np.where(y == 1, (rng.random(n) >= miss).astype(int), 0)
    frame = pd.DataFrame({"sex": sex, "address": address})
    report = bias_report(y, pred, frame, [BiasRule("false_negative_rate", "max_difference", 0.2)])
    by_attr = {c.attribute: c for c in report.checks}
    assert by_attr["sex × address"].outcome == "fail"
    assert by_attr["sex × address"].worst_group == "F × U"
    fu = next(g for g in report.groups if g.group == "F × U")
    assert fu.attribute == "sex × address" and fu.attributes == ["sex", "address"]
    assert fu.n == int(((sex == "F") & (address == "U")).sum())
    assert fu.positives == int(y[(sex == "F") & (address == "U")].sum())
