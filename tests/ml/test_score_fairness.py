"""The scoring models' bias check: the machine's mean score against the human raters' per group,
in SDs of the human scores, on answers with and without a planted rater bias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.core.fairness_charts import bias_view
from edumlops.ml.model_card import group_metrics
from edumlops.ml.score_fairness import score_bias_report
from edumlops.ml.short_answer import ScoringError, group_smd


def test_equal_means_in_every_group_pass_with_the_numbers_of_group_smd():
    rng = np.random.default_rng(0)
    human = rng.integers(0, 4, 600)
    machine = human.copy()
    flip = rng.random(600) < 0.3
    machine[flip] = np.clip(machine[flip] + rng.choice([-1, 1], flip.sum()), 0, 3)
    groups = pd.DataFrame({"lang": rng.choice(["a", "b"], 600)})
    report = score_bias_report(machine, human, groups, max_score_difference=0.10)
    expected = group_smd(machine, human, groups["lang"], min_size=30)
    by_group = {g.group: g.metrics["score_difference"] for g in report.groups}
    assert by_group == {r["group"]: pytest.approx(r["smd"], abs=1e-4) for r in expected.groups}
    worst = max(abs(v) for v in by_group.values())
    assert report.checks[0].value == pytest.approx(worst, abs=1e-4)
    assert report.outcome == ("pass" if worst <= 0.10 else "fail")
    assert report.outcome == "pass"
    check = report.checks[0]
    assert check.ci_low <= check.value <= check.ci_high
    assert "within the limit 0.1." in check.reason


def test_a_group_scored_higher_by_the_machine_fails_naming_the_group_and_the_direction():
    rng = np.random.default_rng(1)
    n = 800
    groups = pd.DataFrame({"lang": rng.choice(["english", "other"], n, p=[0.7, 0.3])})
    human = rng.integers(0, 4, n)
    machine = human.copy()
    other = (groups["lang"] == "other").to_numpy()
    human[other] = np.clip(human[other] - 1, 0, 3)  # raters harsher on this group
    report = score_bias_report(machine, human, groups)
    assert report.outcome == "fail"
    check = report.checks[0]
    assert check.worst_group == "other" and check.value > 0.5
    assert "in group other: " in check.reason and "SD above them" in check.reason
    assert (
        "above the limit 0.1." in check.reason and "re-check the teachers' scores" in check.reason
    )
    assert report.summary.startswith("1 of 1 check(s) fail: lang: ")


def test_small_groups_are_listed_not_judged_and_no_judged_group_is_inconclusive():
    human = np.tile([0, 1, 2, 3], 20)
    machine = human.copy()
    sensitive = pd.DataFrame({"lang": ["a"] * 70 + ["b"] * 10, "sex": ["f", "m"] * 40})
    report = score_bias_report(machine, human, sensitive, min_group_size=50, intersections=False)
    lang, sex = report.checks
    assert lang.outcome == "pass" and lang.judged_groups == 1
    assert "Not judged, fewer than 50 held-out answers: b: 10 held-out answers." in lang.reason
    assert sex.outcome == "inconclusive" and "no group has the 50 held-out answers" in sex.reason
    assert report.outcome == "inconclusive"
    small = [g for g in report.groups if g.insufficient]
    assert {(g.attribute, g.group) for g in small} == {("lang", "b"), ("sex", "f"), ("sex", "m")}


def test_intersections_are_checked_and_the_report_renders_like_the_binary_one():
    rng = np.random.default_rng(2)
    human = rng.integers(0, 4, 400)
    sensitive = pd.DataFrame(
        {"lang": rng.choice(["a", "b"], 400), "sex": rng.choice(["f", "m"], 400)}
    )
    report = score_bias_report(human, human, sensitive).to_dict()
    assert [c["attribute"] for c in report["checks"]] == ["lang", "sex", "lang × sex"]
    assert report["outcome"] == "pass" and report["settings"]["kind"] == "ordinal_score"
    view = bias_view(report)
    assert view["outcome_label"] == "passed" and view["charts"] == []
    assert view["checks"][0]["metric_label"].startswith("machine minus teacher mean score")
    rows = group_metrics(report)
    assert rows[0]["metrics"]["score_difference"]["interval"] is None


def test_bad_input_is_refused_saying_what_to_give():
    groups = pd.DataFrame({"lang": ["a", "b", "a"]})
    with pytest.raises(ScoringError, match="give one of each per answer"):
        score_bias_report([1, 2], [1, 2, 3], groups)
    with pytest.raises(ScoringError, match="human scores do not vary"):
        score_bias_report([1, 2, 3], [2, 2, 2], groups)
    with pytest.raises(ScoringError, match="drop unrated answers"):
        score_bias_report([1, 2, np.nan], [1, 2, 3], groups)
