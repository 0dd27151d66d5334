"""The bias gate's evidence: error rates per group (fairlearn's MetricFrame) and, for each rule, the
gap between groups with a bootstrap confidence interval — so the verdict can be pass, fail, or
honestly inconclusive.

- Groups with fewer than `min_group_size` held-out rows are *insufficient*: shown, never judged.
  A rate is judged only on a group with at least `min_group_size` rows in its denominator (the
  at-risk students for the false-negative rate and recall, the others for the false-positive
  rate): a rate over five at-risk students is noise, and a gap between noisy rates is not bias.
- A check with fewer than two sufficient groups is inconclusive.
- max_difference: pass when the interval's upper end is within the limit, fail when its lower end
  is beyond it, inconclusive when it straddles the limit. min_ratio mirrors that.
- Pairs of attributes ("ses × english_learner") are checked too when `intersections` is on.

The point estimates come from fairlearn; the intervals are computed here with one vectorised
bootstrap (numpy bincount per resample) because fairlearn's own `MetricFrame(n_boot=200)` took
11.5 s for 5,000 rows and three groups on this machine, and a gate checks ten attribute sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd

# The one mapping from codes to the words pages show (model card, canvas panel, approvals, the
# train form); the JSON keeps the codes.
METRICS = {
    "false_negative_rate": "missed at-risk students (false-negative rate)",
    "selection_rate": "students flagged (selection rate)",
    "recall": "at-risk students found (recall)",
    "false_positive_rate": "students flagged who were not at risk (false-positive rate)",
}
RULES = {
    "max_difference": "largest gap between groups (max difference)",
    "min_ratio": "smallest ratio between groups (min ratio)",
}
OUTCOMES = {
    "pass": "passed",
    "fail": "failed",
    "inconclusive": "inconclusive",
    "not checked": "not checked",
}
# What each rate is computed on: its denominator, counted per group.
COUNTED = {
    "false_negative_rate": "at-risk students",
    "recall": "at-risk students",
    "false_positive_rate": "students not at risk",
    "selection_rate": "held-out students",
}


# the names of the scoring models' bias check (edumlops.ml.score_fairness)
SCORE_NAMES = {
    "score_difference": "machine minus teacher mean score, in SDs of the teachers' scores",
    "max_score_difference": "largest standardized mean score difference in a group",
}


def metric_name(code: str) -> str:
    return METRICS.get(code) or SCORE_NAMES.get(code) or code.replace("_", " ")


def rule_name(code: str) -> str:
    return RULES.get(code) or SCORE_NAMES.get(code) or code.replace("_", " ")


def students(count: int, what: str = "held-out students") -> str:
    """'1 at-risk student', '14 at-risk students'."""
    return f"{count} {what[:-1] if count == 1 and what.endswith('s') else what}"


def not_judged(minimum: int, what: str) -> str:
    """Why a group's rate is shown greyed (its counts are shown next to it)."""
    return f"not judged: fewer than the {minimum} {what} needed"


RuleKind = Literal["max_difference", "min_ratio"]
Outcome = Literal["pass", "fail", "inconclusive"]
JOIN = " × "


@dataclass(frozen=True)
class BiasRule:
    metric: str
    kind: RuleKind = "max_difference"
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(
                f"Unknown fairness metric '{self.metric}': use one of {', '.join(METRICS)}."
            )
        if self.kind not in ("max_difference", "min_ratio"):
            raise ValueError("A bias rule is max_difference or min_ratio.")


@dataclass
class BiasCheck:
    attribute: str
    metric: str
    kind: str
    threshold: float
    value: float | None
    ci_low: float | None
    ci_high: float | None
    outcome: Outcome
    reason: str
    worst_group: str | None = None
    best_group: str | None = None
    # What the check counted per group and how many it needed: the rate's denominator (e.g.
    # "at-risk students"), the minimum, and the groups left out with both of their counts.
    counted: str = ""
    min_group_size: int = 0
    judged_groups: int = 0
    not_judged: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GroupRow:
    attribute: str
    group: str
    n: int
    positives: int
    metrics: dict[str, float | None]
    insufficient: bool
    # Per metric: is the rate judged (enough students in its denominator), and if not, why.
    judged: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)  # two for an intersection

    @property
    def negatives(self) -> int:
        return self.n - self.positives


@dataclass
class BiasReport:
    outcome: Outcome
    checks: list[BiasCheck]
    groups: list[GroupRow]
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "summary": self.summary,
            "checks": [asdict(c) for c in self.checks],
            "groups": [asdict(g) for g in self.groups],
            "settings": self.settings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiasReport:
        return cls(
            outcome=data["outcome"],
            checks=[BiasCheck(**c) for c in data.get("checks", [])],
            groups=[GroupRow(**g) for g in data.get("groups", [])],
            summary=data.get("summary", ""),
            settings=data.get("settings", {}),
        )


# --- per-group rates, vectorised over bootstrap resamples -------------------------------------
def _counts(codes: np.ndarray, y: np.ndarray, p: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Counts per group code: rows, positives, true positives, predicted positives."""
    return {
        "n": np.bincount(codes, minlength=k),
        "pos": np.bincount(codes, weights=y, minlength=k),
        "tp": np.bincount(codes, weights=y * p, minlength=k),
        "pp": np.bincount(codes, weights=p, minlength=k),
    }


def _rate(metric: str, c: dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "selection_rate":
            return np.where(c["n"] > 0, c["pp"] / c["n"], np.nan)
        if metric == "recall":
            return np.where(c["pos"] > 0, c["tp"] / c["pos"], np.nan)
        if metric == "false_negative_rate":
            return np.where(c["pos"] > 0, 1 - c["tp"] / c["pos"], np.nan)
        negatives = c["n"] - c["pos"]
        return np.where(negatives > 0, (c["pp"] - c["tp"]) / negatives, np.nan)


def _statistic(kind: str, values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    if len(present) < 2:
        return None
    if kind == "max_difference":
        return float(present.max() - present.min())
    top = present.max()
    return float(present.min() / top) if top > 0 else 1.0


def _fairlearn_rates(
    y: np.ndarray, p: np.ndarray, labels: np.ndarray, metrics: list[str]
) -> pd.DataFrame:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
    )
    from sklearn.metrics import recall_score

    functions = {
        "false_negative_rate": false_negative_rate,
        "selection_rate": selection_rate,
        "recall": lambda yt, yp: recall_score(yt, yp, zero_division=np.nan),
        "false_positive_rate": false_positive_rate,
    }
    chosen = {m: functions[m] for m in metrics}
    chosen["n"] = count
    chosen["positives"] = lambda yt, yp: int(np.sum(yt))
    frame = MetricFrame(
        metrics=chosen, y_true=y, y_pred=p, sensitive_features=pd.Series(labels, name="group")
    )
    return frame.by_group


def _attribute_sets(columns: list[str], intersections: bool) -> list[tuple[str, ...]]:
    sets: list[tuple[str, ...]] = [(c,) for c in columns]
    if intersections:
        sets += list(combinations(columns, 2))
    return sets


def _group_labels(frame: pd.DataFrame, attrs: tuple[str, ...]) -> np.ndarray:
    parts = [frame[a].astype(str).where(frame[a].notna(), "unknown") for a in attrs]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + JOIN + part
    return labels.to_numpy(dtype=object)


def bias_report(
    y_true: Any,
    y_pred: Any,
    sensitive: pd.DataFrame,
    rules: list[BiasRule],
    *,
    min_group_size: int = 30,
    intersections: bool = True,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> BiasReport:
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if len(y) != len(p) or len(y) != len(sensitive):
        raise ValueError("y_true, y_pred and the sensitive columns must have the same length.")
    if not rules:
        raise ValueError("Give at least one bias rule.")
    sensitive = sensitive.reset_index(drop=True)
    metrics = list(dict.fromkeys(r.metric for r in rules))
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(y), len(y)) for _ in range(n_boot)] if len(y) else []
    tail = (1 - level) / 2 * 100
    checks: list[BiasCheck] = []
    groups: list[GroupRow] = []
    for attrs in _attribute_sets(list(sensitive.columns), intersections):
        name = JOIN.join(attrs)
        labels = _group_labels(sensitive, attrs)
        by_group = _fairlearn_rates(y, p, labels, metrics)
        names = [str(g) for g in by_group.index]
        codes = pd.Categorical(labels, categories=names).codes.astype(np.int64)
        sizes = by_group["n"].to_numpy(dtype=int)
        sufficient = sizes >= min_group_size
        positives = by_group["positives"].to_numpy(dtype=int)
        denominators = {
            "false_negative_rate": positives,
            "recall": positives,
            "false_positive_rate": sizes - positives,
            "selection_rate": sizes,
        }
        for i, group in enumerate(names):
            row = by_group.iloc[i]
            judged, reasons = {}, {}
            for m in metrics:
                count = int(denominators[m][i])
                judged[m] = bool(sufficient[i]) and count >= min_group_size
                if not sufficient[i]:
                    reasons[m] = not_judged(min_group_size, "held-out students")
                elif not judged[m]:
                    reasons[m] = not_judged(min_group_size, COUNTED[m])
            groups.append(
                GroupRow(
                    attribute=name,
                    group=group,
                    n=int(row["n"]),
                    positives=int(row["positives"]),
                    metrics={m: _clean(row[m]) for m in metrics},
                    insufficient=not bool(sufficient[i]),
                    judged=judged,
                    reasons=reasons,
                    attributes=list(attrs),
                )
            )
        boot_rates = {m: [] for m in metrics}
        for idx in resamples:
            c = _counts(codes[idx], y[idx], p[idx], len(names))
            for m in metrics:
                boot_rates[m].append(_rate(m, c))
        for rule in rules:
            values = by_group[rule.metric].to_numpy(dtype=float)
            counts = denominators[rule.metric]
            values = np.where(sufficient & (counts >= min_group_size), values, np.nan)
            checks.append(
                _check(name, rule, values, names, counts, sizes, min_group_size, boot_rates, tail)
            )
    outcome = _outcome(checks)
    settings = {
        "rules": [asdict(r) for r in rules],
        "min_group_size": min_group_size,
        "intersections": intersections,
        "bootstrap_samples": n_boot,
        "seed": seed,
        "level": level,
        "rows": int(len(y)),
    }
    return BiasReport(outcome, checks, groups, _summary(outcome, checks), settings)


def _outcome(checks: list[BiasCheck]) -> Outcome:
    """Fail if any check fails, else inconclusive if any is, else pass."""
    if any(c.outcome == "fail" for c in checks):
        return "fail"
    return "inconclusive" if any(c.outcome == "inconclusive" for c in checks) else "pass"


def _clean(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else round(value, 4)


def _check(
    name: str,
    rule: BiasRule,
    values: np.ndarray,
    names: list[str],
    counts: np.ndarray,
    sizes: np.ndarray,
    min_group_size: int,
    boot_rates: dict[str, list[np.ndarray]],
    tail: float,
) -> BiasCheck:
    label = metric_name(rule.metric)
    counted = COUNTED[rule.metric]
    judged = ~np.isnan(values)
    base = BiasCheck(name, rule.metric, rule.kind, rule.threshold, None, None, None, "pass", "")
    base.counted, base.min_group_size, base.judged_groups = (
        counted,
        min_group_size,
        int(judged.sum()),
    )
    base.not_judged = [
        {"group": g, "count": int(c), "n": int(n)}
        for g, c, n, ok in zip(names, counts, sizes, judged, strict=True)
        if not ok
    ]
    small = [_counts_text(d, counted) for d in base.not_judged]
    listed = "; ".join(small[:6]) + (" …" if len(small) > 6 else "")
    if judged.sum() < 2:
        have = (
            "no group has that many"
            if not judged.any()
            else f"only {int(judged.sum())} group has that many"
        )
        base.outcome = "inconclusive"
        base.reason = (
            f"{name}: {label} is compared only between groups with at least "
            f"{min_group_size} {counted}; {have}, too few to compare"
            + (f" ({listed})" if small else "")
            + ". Collect more data or lower the minimum group size."
        )
        return base
    value = _statistic(rule.kind, values)
    stats = [
        s
        for s in (
            _statistic(rule.kind, np.where(judged, r, np.nan)) for r in boot_rates[rule.metric]
        )
        if s is not None
    ]
    if len(stats) >= 10:
        # The gap between the best and the worst of several noisy rates is biased away from "no
        # difference", and its resamples more so: a percentile interval alone calls noise bias,
        # a basic (reflected) interval alone is too narrow near zero. The union of the two is
        # conservative both ways: fail only if even the bias-corrected end is past the limit,
        # pass only if even the biased end is within it.
        q_low, q_high = (float(q) for q in np.percentile(stats, [tail, 100 - tail]))
        low = max(0.0, min(q_low, 2 * value - q_high))
        high = min(1.0, max(q_high, 2 * value - q_low))
    else:
        low = high = value
    high_i, low_i = int(np.nanargmax(values)), int(np.nanargmin(values))
    lower_is_better = rule.metric in ("false_negative_rate", "false_positive_rate")
    worst, best = (
        (names[high_i], names[low_i]) if lower_is_better else (names[low_i], names[high_i])
    )
    base.value, base.ci_low, base.ci_high = round(value, 4), round(low, 4), round(high, 4)
    base.worst_group, base.best_group = worst, best
    interval = f"95% interval {low:.3f}–{high:.3f}"
    if rule.kind == "max_difference":
        gap = f"{label} differs by {value:.3f} between groups ({interval}; worst: {worst})"
        if high <= rule.threshold:
            base.outcome, verdict = "pass", f"within the limit {rule.threshold:g}"
        elif low > rule.threshold:
            base.outcome, verdict = "fail", f"above the limit {rule.threshold:g}"
        else:
            base.outcome = "inconclusive"
            verdict = f"the interval straddles the limit {rule.threshold:g}"
    else:
        gap = (
            f"{label}: the worst group's rate is {value:.3f} of the best's ({interval}; "
            f"worst: {worst})"
        )
        if low >= rule.threshold:
            base.outcome, verdict = "pass", f"at or above the minimum {rule.threshold:g}"
        elif high < rule.threshold:
            base.outcome, verdict = "fail", f"below the minimum {rule.threshold:g}"
        else:
            base.outcome = "inconclusive"
            verdict = f"the interval straddles the minimum {rule.threshold:g}"
    base.reason = f"{name}: {gap}, {verdict}." + (
        f" Not judged, fewer than {min_group_size} {counted}: {listed}." if small else ""
    )
    return base


def _counts_text(entry: dict[str, Any], counted: str) -> str:
    """'F: 14 at-risk students of 93 held-out students' (or just '12 held-out students')."""
    if counted == "held-out students":
        return f"{entry['group']}: {students(entry['n'])}"
    return f"{entry['group']}: {students(entry['count'], counted)} of {students(entry['n'])}"


def _summary(outcome: Outcome, checks: list[BiasCheck]) -> str:
    if outcome == "pass":
        return f"All {len(checks)} check(s) pass."
    chosen = [c for c in checks if c.outcome == outcome]
    shown = " ".join(c.reason for c in chosen[:3])
    more = f" (and {len(chosen) - 3} more)" if len(chosen) > 3 else ""
    word = "fail" if outcome == "fail" else "are inconclusive"
    return f"{len(chosen)} of {len(checks)} check(s) {word}: {shown}{more}"


# --- from counts: the bias report of a model whose rows the district never sees ---------------
CONFUSION = ("tp", "fp", "tn", "fn")


def expand_counts(counts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y_true, y_pred and group labels that hold exactly the given confusion counts per group
    ({group: {tp, fp, tn, fn}}). Every rate, and every bootstrap resample of the counts, is the
    same as on the rows the counts were taken from; no row is needed or made up beyond them."""
    y_true, y_pred, labels = [], [], []
    cells = {"tp": (1, 1), "fn": (1, 0), "fp": (0, 1), "tn": (0, 0)}
    for group, c in counts.items():
        for key, (truth, pred) in cells.items():
            n = int(c.get(key, 0) or 0)
            if n < 0:
                raise ValueError(f"Group {group!r} has a negative {key} count ({n}).")
            y_true.append(np.full(n, truth))
            y_pred.append(np.full(n, pred))
            labels.append(np.full(n, str(group), dtype=object))
    if not y_true:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=object)
    return np.concatenate(y_true), np.concatenate(y_pred), np.concatenate(labels)


def bias_report_from_counts(
    group_counts: dict[str, dict[str, Any]], rules: list[BiasRule], **options: Any
) -> BiasReport:
    """The bias report from summed confusion counts per sensitive attribute and group (what the
    schools of a federated training return). Each attribute is judged on its own counts, with
    the same minimum group size and bootstrap intervals as a report on rows; intersections need
    joint counts, which the schools do not send, so they are not checked."""
    if not group_counts:
        raise ValueError(
            "No counts per group came back: the schools' records have no sensitive attribute "
            "the model knows of; name them on the schema dataset."
        )
    options = {**options, "intersections": False}
    parts = []
    for attribute, counts in group_counts.items():
        y_true, y_pred, labels = expand_counts(counts)
        if not len(y_true):
            continue
        parts.append(
            bias_report(y_true, y_pred, pd.DataFrame({attribute: labels}), rules, **options)
        )
    if not parts:
        raise ValueError("The schools returned no evaluated students: nothing to judge.")
    checks = [c for p in parts for c in p.checks]
    groups = [g for p in parts for g in p.groups]
    outcome = _outcome(checks)
    settings = {
        **parts[0].settings,
        "rows": max(p.settings.get("rows", 0) for p in parts),
        "from_counts": True,
        "intersections": False,
    }
    return BiasReport(outcome, checks, groups, _summary(outcome, checks), settings)
