"""The bias report and the metrics of a federated model, from summed confusion counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edumlops.ml.evaluation import evaluate, evaluate_counts
from edumlops.ml.fairness import BiasRule, bias_report, bias_report_from_counts, expand_counts


def _rows(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.35, 0.05])
    y = rng.random(n) < np.where(group == "b", 0.4, 0.25)
    miss = np.where(group == "b", 0.5, 0.2)  # group b's at-risk students are missed more
    pred = np.where(y, rng.random(n) > miss, rng.random(n) < 0.1)
    return y.astype(int), pred.astype(int), pd.DataFrame({"ses": group})


def _counts(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, int]]:
    out = {}
    for g in np.unique(groups):
        m = groups == g
        out[str(g)] = {
            "tp": int(((y == 1) & (pred == 1) & m).sum()),
            "fp": int(((y == 0) & (pred == 1) & m).sum()),
            "tn": int(((y == 0) & (pred == 0) & m).sum()),
            "fn": int(((y == 1) & (pred == 0) & m).sum()),
        }
    return out


def test_the_report_from_counts_is_the_report_from_the_rows():
    y, pred, sensitive = _rows()
    rules = [BiasRule("false_negative_rate", "max_difference", 0.1)]
    on_rows = bias_report(y, pred, sensitive, rules, min_group_size=20, intersections=False)
    counts = {"ses": _counts(y, pred, sensitive["ses"].to_numpy())}
    on_counts = bias_report_from_counts(counts, rules, min_group_size=20)
    assert on_counts.outcome == on_rows.outcome
    rows_by_group = {g.group: g for g in on_rows.groups}
    for g in on_counts.groups:
        mine = rows_by_group[g.group]
        assert (g.n, g.positives, g.insufficient) == (mine.n, mine.positives, mine.insufficient)
        assert g.metrics["false_negative_rate"] == pytest.approx(
            mine.metrics["false_negative_rate"]
        )
    check_rows, check_counts = on_rows.checks[0], on_counts.checks[0]
    assert check_counts.value == pytest.approx(check_rows.value)
    assert check_counts.worst_group == check_rows.worst_group
    assert on_counts.settings["from_counts"] is True
    # group c (5% of 600 = about 30, fewer at-risk) is not judged, and says why
    assert any(not g.judged.get("false_negative_rate", True) for g in on_counts.groups)


def test_each_attribute_is_judged_on_its_own_counts():
    y, pred, sensitive = _rows(1)
    other = np.where(np.arange(len(y)) % 2 == 0, "F", "M")
    counts = {
        "ses": _counts(y, pred, sensitive["ses"].to_numpy()),
        "sex": _counts(y, pred, other),
    }
    report = bias_report_from_counts(
        counts, [BiasRule("recall", "max_difference", 0.5)], min_group_size=20
    )
    assert {c.attribute for c in report.checks} == {"ses", "sex"}
    assert not report.settings["intersections"]


def test_counts_that_make_no_sense_are_refused():
    with pytest.raises(ValueError, match="negative"):
        expand_counts({"a": {"tp": -1}})
    with pytest.raises(ValueError, match="sensitive attribute"):
        bias_report_from_counts({}, [BiasRule("recall", "max_difference", 0.1)])


def test_metrics_from_counts_match_the_rows_where_counts_suffice():
    y, pred, _ = _rows(2)
    c = _counts(y, pred, np.zeros(len(y)))["0.0"]
    from_counts = evaluate_counts(c)
    from_rows = evaluate(y, pred.astype(float), threshold=0.5)
    for key in ("recall", "precision", "f1", "accuracy", "n", "positives"):
        assert from_counts[key] == pytest.approx(from_rows[key])
    assert from_counts["auc"] is None and from_counts["brier"] is None
