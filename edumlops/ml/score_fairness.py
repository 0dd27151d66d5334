"""The bias gate for a scoring model (whole-point scores, e.g. a short-answer scorer): in each
group of each sensitive attribute, how far the machine's mean score is from the human raters'
mean score on the same answers, in standard deviations of the human scores (the standardized
mean difference, SMD, of edumlops.ml.short_answer.group_smd: machine − human, one ruler for
all groups). The e-rater criterion (Williamson, Xi & Breyer 2012) is |SMD| ≤ 0.10 in every
group: a scorer that agrees well overall can still score one group's answers higher or lower
than teachers do.

The report has the shape of edumlops.ml.fairness.BiasReport, so the pages that show the binary
bias gate's report (bias_view, the model card, the approvals inbox) show this one too. Per
attribute there is one check: the largest |SMD| over the groups with at least `min_group_size`
answers, judged on that point value against `max_score_difference` (as e-rater is judged),
with a bootstrap interval for reading. Smaller groups are listed with their numbers, not
judged; an attribute with no group large enough is inconclusive.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from edumlops.ml.fairness import JOIN, BiasCheck, BiasReport, GroupRow, not_judged, students
from edumlops.ml.short_answer import ScoringError, group_smd

METRIC = "score_difference"
RULE = "max_score_difference"
COUNTED = "held-out answers"


def _labels(frame: pd.DataFrame, attrs: tuple[str, ...]) -> np.ndarray:
    parts = [frame[a].astype(str).where(frame[a].notna(), "unknown") for a in attrs]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + JOIN + part
    return labels.to_numpy(dtype=object)


def _max_abs_smd(
    m: np.ndarray, h: np.ndarray, codes: np.ndarray, judged: np.ndarray, k: int
) -> float | None:
    """The largest |SMD| over the judged groups (None when the human scores do not vary)."""
    sd = h.std(ddof=1) if len(h) > 1 else 0.0
    if sd <= 0:
        return None
    n = np.bincount(codes, minlength=k)
    gap = np.bincount(codes, weights=m - h, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = np.where(n > 0, gap / n / sd, np.nan)
    values = np.abs(smd[judged])
    values = values[~np.isnan(values)]
    return float(values.max()) if len(values) else None


def score_bias_report(
    machine: Any,
    human: Any,
    sensitive: pd.DataFrame,
    *,
    max_score_difference: float = 0.10,
    min_group_size: int = 30,
    intersections: bool = True,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> BiasReport:
    """The bias report of a scoring model on held-out answers: `machine` and `human` scores (one
    each per answer, whole points) and the answers' sensitive columns."""
    m = np.asarray(machine, dtype=float)
    h = np.asarray(human, dtype=float)
    if len(m) != len(h) or len(m) != len(sensitive):
        raise ScoringError(
            f"{len(m)} machine scores, {len(h)} human scores and {len(sensitive)} rows of "
            "sensitive columns: give one of each per answer."
        )
    if np.isnan(m).any() or np.isnan(h).any():
        raise ScoringError("Every answer needs a machine and a human score: drop unrated answers.")
    if len(m) < 2 or h.std() == 0:
        raise ScoringError(
            "The human scores do not vary (or there are fewer than two answers): the score "
            "difference is measured in standard deviations of the human scores, so it needs "
            "answers with different scores."
        )
    if max_score_difference <= 0:
        raise ScoringError("max_score_difference must be above 0 (e.g. 0.10).")
    sensitive = sensitive.reset_index(drop=True)
    columns = list(sensitive.columns)
    sets: list[tuple[str, ...]] = [(c,) for c in columns]
    if intersections:
        sets += list(combinations(columns, 2))
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(m), len(m)) for _ in range(n_boot)]
    tail = (1 - level) / 2 * 100
    checks: list[BiasCheck] = []
    groups: list[GroupRow] = []
    for attrs in sets:
        name = JOIN.join(attrs)
        labels = _labels(sensitive, attrs)
        smd = group_smd(m, h, labels, min_size=min_group_size)
        names = [row["group"] for row in smd.groups]
        codes = pd.Categorical(labels.astype(str), categories=names).codes.astype(np.int64)
        judged = np.array([row["enough"] for row in smd.groups], dtype=bool)
        for row in smd.groups:
            groups.append(
                GroupRow(
                    attribute=name,
                    group=row["group"],
                    n=row["n"],
                    positives=0,
                    metrics={
                        METRIC: round(row["smd"], 4),
                        "machine_mean": round(row["machine_mean"], 4),
                        "human_mean": round(row["human_mean"], 4),
                    },
                    insufficient=not row["enough"],
                    judged={METRIC: bool(row["enough"])},
                    reasons={} if row["enough"] else {METRIC: not_judged(min_group_size, COUNTED)},
                    attributes=list(attrs),
                )
            )
        checks.append(
            _check(
                name, smd.groups, judged, codes, m, h, resamples, tail, max_score_difference,
                min_group_size,
            )
        )  # fmt: skip
    outcome = (
        "fail"
        if any(c.outcome == "fail" for c in checks)
        else "inconclusive"
        if any(c.outcome == "inconclusive" for c in checks)
        else "pass"
    )
    settings = {
        "kind": "ordinal_score",
        "rules": [{"metric": METRIC, "kind": RULE, "threshold": max_score_difference}],
        "min_group_size": min_group_size,
        "intersections": intersections,
        "bootstrap_samples": n_boot,
        "seed": seed,
        "level": level,
        "rows": int(len(m)),
        "human_sd": round(float(h.std(ddof=1)), 4),
        "overall_smd": round(float(group_smd(m, h).overall), 4),
    }
    return BiasReport(outcome, checks, groups, _summary(outcome, checks), settings)


def _check(
    name: str,
    rows: list[dict[str, Any]],
    judged: np.ndarray,
    codes: np.ndarray,
    m: np.ndarray,
    h: np.ndarray,
    resamples: list[np.ndarray],
    tail: float,
    limit: float,
    min_group_size: int,
) -> BiasCheck:
    check = BiasCheck(name, METRIC, RULE, limit, None, None, None, "pass", "")
    check.counted, check.min_group_size, check.judged_groups = (
        COUNTED,
        min_group_size,
        int(judged.sum()),
    )
    check.not_judged = [
        {"group": r["group"], "count": r["n"], "n": r["n"]} for r in rows if not r["enough"]
    ]
    small = "; ".join(f"{d['group']}: {students(d['n'], COUNTED)}" for d in check.not_judged[:6])
    if not judged.any():
        check.outcome = "inconclusive"
        check.reason = (
            f"{name}: no group has the {min_group_size} {COUNTED} needed to judge its score "
            f"difference ({small}). Collect more scored answers or lower the minimum group size."
        )
        return check
    sized = [r for r, ok in zip(rows, judged, strict=True) if ok]
    worst = max(sized, key=lambda r: abs(r["smd"]))
    value = abs(worst["smd"])
    stats = [
        s
        for s in (_max_abs_smd(m[i], h[i], codes[i], judged, len(rows)) for i in resamples)
        if s is not None
    ]
    if len(stats) >= 10:
        # as the binary gate: the union of the percentile and the basic interval (a maximum of
        # absolute values is biased away from 0, and its resamples more so)
        q_low, q_high = (float(q) for q in np.percentile(stats, [tail, 100 - tail]))
        low, high = max(0.0, min(q_low, 2 * value - q_high)), max(q_high, 2 * value - q_low)
    else:
        low = high = value
    check.value, check.ci_low, check.ci_high = round(value, 4), round(low, 4), round(high, 4)
    check.worst_group = worst["group"]
    check.best_group = min(sized, key=lambda r: abs(r["smd"]))["group"]
    direction = "above" if worst["smd"] > 0 else "below"
    passed = value <= limit
    check.outcome = "pass" if passed else "fail"
    check.reason = (
        f"{name}: the machine's scores are furthest from the teachers' in group "
        f"{worst['group']}: {value:.3f} SD {direction} them (mean {worst['machine_mean']:.2f} "
        f"against {worst['human_mean']:.2f}, {students(worst['n'], COUNTED)}; 95% interval "
        f"{low:.3f}–{high:.3f}), "
        + (f"within the limit {limit:g}." if passed else f"above the limit {limit:g}.")
    )
    if not passed:
        check.reason += (
            " Either the scorer or the teachers' scores treat this group differently: re-check "
            "the teachers' scores of this group before retraining."
        )
    if check.not_judged:
        check.reason += f" Not judged, fewer than {min_group_size} {COUNTED}: {small}."
    return check


def _summary(outcome: str, checks: list[BiasCheck]) -> str:
    if outcome == "pass":
        return (
            f"All {len(checks)} check(s) pass: in every group the machine's mean score is "
            "within the limit of the teachers'."
        )
    chosen = [c for c in checks if c.outcome == outcome]
    word = "fail" if outcome == "fail" else "are inconclusive"
    shown = " ".join(c.reason for c in chosen[:3])
    more = f" (and {len(chosen) - 3} more)" if len(chosen) > 3 else ""
    return f"{len(chosen)} of {len(checks)} check(s) {word}: {shown}{more}"
