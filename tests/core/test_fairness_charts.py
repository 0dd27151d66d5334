"""The bias report as pages show it: words instead of codes, both counts on every bar, groups not
judged kept with their numbers and reason, intersections charted with the failing one first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.core.fairness_charts import bias_view
from edumlops.ml.fairness import BiasRule, bias_report


def failing_intersection(seed: int = 0):
    """At-risk students missed: F × U half the time, M × R 40%, F × R and M × U 10%: each
    attribute alone is within 0.2 (0.3 against 0.25), the pair is not. Plus a tiny address 'X'."""
    rng = np.random.default_rng(seed)
    n = 4000
    sex = rng.choice(["F", "M"], n)
    address = rng.choice(["U", "R"], n).astype(object)
    address[:12] = "X"
    y = rng.integers(0, 2, n)
    miss = np.where((sex == "F") & (address == "U"), 0.5, 0.1)
    miss = np.where((sex == "M") & (address == "R"), 0.4, miss)
    pred = np.where(y == 1, (rng.random(n) >= miss).astype(int), 0)
    frame = pd.DataFrame({"sex": sex, "address": address})
    rules = [BiasRule("false_negative_rate", "max_difference", 0.2)]
    return bias_report(y, pred, frame, rules, n_boot=100).to_dict(), sex, address, y


def test_the_failing_intersection_is_charted_first_with_its_worst_group():
    report, sex, address, y = failing_intersection()
    view = bias_view(report)
    assert view["outcome_label"] == "failed"
    first = view["charts"][0]
    assert first["attribute"] == "sex × address" and first["intersection"]
    assert first["flagged"] and first["outcome"] == "fail"
    assert first["metric_label"] == "missed at-risk students (false-negative rate)"
    worst = [b for b in first["bars"] if b["worst"]]
    assert [b["group"] for b in worst] == ["F × U"]
    fu = (sex == "F") & (address == "U")
    assert worst[0]["counts"] == (
        f"{int(y[fu].sum())} at-risk students of {int(fu.sum())} held-out students"
    )
    assert {c["attribute"] for c in view["charts"]} == {"sex", "address", "sex × address"}
    assert not next(c for c in view["charts"] if c["attribute"] == "sex")["flagged"]


def test_groups_not_judged_keep_their_numbers_and_say_why():
    report, *_ = failing_intersection()
    view = bias_view(report)
    address = next(c for c in view["charts"] if c["attribute"] == "address")
    x = next(b for b in address["bars"] if b["group"] == "X")
    assert (
        not x["judged"] and x["value"] is not None and x["width"] == pytest.approx(100 * x["value"])
    )
    assert x["counts"].endswith("of 12 held-out students")
    assert x["reason"] == "not judged: fewer than the 30 held-out students needed"
    check = next(c for c in view["checks"] if c["attribute"] == "address")
    assert check["rule_label"] == "largest gap between groups (max difference)"
    assert check["counted"] == "at-risk students"


def test_a_report_stored_before_groups_said_why_is_shown_the_same_way():
    old = {
        "outcome": "inconclusive",
        "summary": "1 of 1 check(s) are inconclusive: …",
        "settings": {
            "min_group_size": 30,
            "rows": 163,
            "rules": [
                {"metric": "false_negative_rate", "kind": "max_difference", "threshold": 0.1}
            ],
        },
        "checks": [
            {
                "attribute": "sex",
                "metric": "false_negative_rate",
                "kind": "max_difference",
                "threshold": 0.1,
                "value": None,
                "ci_low": None,
                "ci_high": None,
                "outcome": "inconclusive",
                "reason": "…",
            }
        ],
        "groups": [
            {
                "attribute": "sex",
                "group": "F",
                "n": 93,
                "positives": 14,
                "insufficient": False,
                "metrics": {"false_negative_rate": 0.5},
            },
            {
                "attribute": "sex",
                "group": "M",
                "n": 70,
                "positives": 11,
                "insufficient": False,
                "metrics": {"false_negative_rate": 0.2727},
            },
        ],
    }
    view = bias_view(old)
    (chart,) = view["charts"]
    f, m = chart["bars"]
    assert f["counts"] == "14 at-risk students of 93 held-out students"
    assert f["reason"] == "not judged: fewer than the 30 at-risk students needed"
    assert m["counts"] == "11 at-risk students of 70 held-out students" and not m["judged"]
    assert chart["flagged"] and view["checks"][0]["counted"] == "at-risk students"


def test_no_report_is_not_checked():
    view = bias_view({})
    assert not view["checked"] and view["outcome_label"] == "not checked" and view["charts"] == []
