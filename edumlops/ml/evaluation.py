"""Scoring a model on held-out rows: metrics at a decision threshold, a calibration curve,
bootstrap intervals, and the plain-language verdict when a metric misses its limit."""

from __future__ import annotations

from typing import Any

import numpy as np

LABELS = {
    "auc": "ROC AUC",
    "recall": "recall",
    "precision": "precision",
    "f1": "F1",
    "brier": "Brier score",
    "accuracy": "accuracy",
}


def predict_positive(proba: Any, threshold: float) -> np.ndarray:
    return (np.asarray(proba, dtype=float) >= threshold).astype(int)


def _rates(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    recall = tp / (tp + fn) if tp + fn else None
    precision = tp / (tp + fp) if tp + fp else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "accuracy": float((pred == y).mean()) if len(y) else None,
    }


def evaluate(y: Any, proba: Any, threshold: float = 0.5, bins: int = 10) -> dict[str, Any]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    both = len(set(y.tolist())) == 2
    metrics: dict[str, Any] = {
        "auc": float(roc_auc_score(y, proba)) if both else None,
        **_rates(y, predict_positive(proba, threshold)),
        "brier": float(brier_score_loss(y, proba)) if len(y) else None,
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
    }
    if both:
        frac, mean = calibration_curve(y, proba, n_bins=bins, strategy="quantile")
        metrics["calibration"] = {
            "mean_predicted": [round(float(v), 4) for v in mean],
            "fraction_positive": [round(float(v), 4) for v in frac],
        }
    else:
        metrics["calibration"] = None
    return metrics


def evaluate_counts(counts: dict[str, Any], threshold: float = 0.5) -> dict[str, Any]:
    """The metrics a confusion table gives (recall, precision, F1, accuracy) — what a federated
    evaluation returns. AUC, the Brier score and calibration need scores, so they are None."""
    tp, fp, tn, fn = (int(counts.get(k, 0) or 0) for k in ("tp", "fp", "tn", "fn"))
    n = tp + fp + tn + fn
    return {
        "auc": None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "accuracy": (tp + tn) / n if n else None,
        "brier": None,
        "n": n,
        "positives": tp + fn,
        "threshold": float(threshold),
        "calibration": None,
        "from_counts": True,
    }


def check_thresholds(
    metrics: dict[str, Any],
    *,
    minimum: dict[str, float] | None = None,
    maximum: dict[str, float] | None = None,
) -> list[str]:
    """One sentence per metric that misses its limit (limits of 0 / 1 are 'no limit')."""
    failures = []
    for key, limit in (minimum or {}).items():
        if not limit:
            continue
        value = metrics.get(key)
        if value is None:
            failures.append(f"{LABELS.get(key, key)} cannot be computed on these rows")
        elif value < limit:
            failures.append(f"{LABELS.get(key, key)} {value:.3f} is below the minimum {limit:g}")
    for key, limit in (maximum or {}).items():
        if limit is None or limit >= 1:
            continue
        value = metrics.get(key)
        if value is None:
            failures.append(f"{LABELS.get(key, key)} cannot be computed on these rows")
        elif value > limit:
            failures.append(f"{LABELS.get(key, key)} {value:.3f} is above the maximum {limit:g}")
    return failures


def bootstrap_intervals(
    y: Any,
    proba: Any,
    threshold: float = 0.5,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of each metric, resampling held-out rows."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=int)
    proba = np.asarray(proba, dtype=float)
    pred = predict_positive(proba, threshold)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in LABELS}
    n = len(y)
    if n == 0:
        return {k: None for k in LABELS}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb, pb, predb = y[idx], proba[idx], pred[idx]
        if 0 < yb.sum() < n:
            draws["auc"].append(float(roc_auc_score(yb, pb)))
        for key, value in _rates(yb, predb).items():
            if value is not None:
                draws[key].append(value)
        draws["brier"].append(float(np.mean((pb - yb) ** 2)))
    tail = (1 - level) / 2 * 100
    return {
        key: (
            [round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4)]
            if len(v) >= 10
            else None
        )
        for key, v in draws.items()
    }
