"""Metrics at a threshold, limits in plain words, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from edumlops.ml.evaluation import bootstrap_intervals, check_thresholds, evaluate


def test_metrics_at_the_threshold_match_a_hand_count():
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    proba = [0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.2]
    m = evaluate(y, proba, threshold=0.5)
    assert m["recall"] == pytest.approx(2 / 3)  # 0.9 and 0.6 found, 0.2 missed
    assert m["precision"] == pytest.approx(2 / 3)  # 0.7 is a false alarm
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(11.5 / 15)  # 11 pairs ordered, one tie
    assert m["brier"] == pytest.approx(np.mean((np.array(proba) - np.array(y)) ** 2))
    assert m["n"] == 8 and m["positives"] == 3
    assert len(m["calibration"]["mean_predicted"]) == len(m["calibration"]["fraction_positive"])


def test_one_class_gives_no_auc_rather_than_an_error():
    m = evaluate([0, 0, 0], [0.1, 0.2, 0.3])
    assert m["auc"] is None and m["recall"] is None and m["calibration"] is None


def test_limits_are_reported_as_sentences_and_zero_means_no_limit():
    m = {"auc": 0.65, "recall": 0.4, "precision": None, "brier": 0.3}
    failures = check_thresholds(
        m, minimum={"auc": 0.7, "recall": 0.0, "precision": 0.0}, maximum={"brier": 0.25}
    )
    assert failures == [
        "ROC AUC 0.650 is below the minimum 0.7",
        "Brier score 0.300 is above the maximum 0.25",
    ]


def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_rows():
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n)
        return y, np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1)

    y, p = sample(400)
    small = bootstrap_intervals(y, p, n_boot=200)
    m = evaluate(y, p)
    assert small["auc"][0] <= m["auc"] <= small["auc"][1]
    y2, p2 = sample(4000)
    large = bootstrap_intervals(y2, p2, n_boot=200)
    assert large["auc"][1] - large["auc"][0] < small["auc"][1] - small["auc"][0]
