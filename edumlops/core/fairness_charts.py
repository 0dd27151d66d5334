"""The bias report as pages show it: the model card, the canvas's bias-gate panel and the
approvals inbox all render `bias_view(model.bias_report)` through templates/registry/_fairness.html.

- Words, not codes: metric, rule and outcome names come from the one mapping in ml.fairness.
- Every count says what it counts ("14 at-risk students of 93 held-out students").
- A group whose rate was not judged keeps its numbers; the page greys it and says why.
- Intersections (e.g. sex × address) are charted like single attributes; a chart whose check
  failed (or is inconclusive) is marked, with its worst group.

A report as published to someone who cannot see the rows (edumlops/privacy/publish.py
`bias_report`) marks its small groups with `privacy` (noised or suppressed): their counts read
"≈ 5 …" or "fewer than 10 students", with no interval.

Works on reports stored before groups carried `judged`/`reasons` too (they are recomputed from the
counts and the minimum group size kept in the report's settings).
"""

from __future__ import annotations

from typing import Any

from edumlops.ml.fairness import (
    COUNTED,
    JOIN,
    OUTCOMES,
    metric_name,
    not_judged,
    rule_name,
    students,
)
from edumlops.ml.model_card import wilson

_DENOMINATOR = {
    "false_negative_rate": "positives",
    "recall": "positives",
    "false_positive_rate": "negatives",
    "selection_rate": "n",
}


def _count(group: dict[str, Any], metric: str) -> int:
    n, positives = int(group.get("n") or 0), int(group.get("positives") or 0)
    return {"positives": positives, "negatives": n - positives, "n": n}[_DENOMINATOR[metric]]


def _judged(group: dict[str, Any], metric: str, minimum: int) -> tuple[bool, str]:
    """Was this group's rate judged, and if not, why (in words)."""
    judged = (group.get("judged") or {}).get(metric)
    reason = (group.get("reasons") or {}).get(metric, "")
    if judged is None:  # a report stored before groups said so
        count = _count(group, metric)
        if group.get("insufficient"):
            judged, reason = False, not_judged(minimum, "held-out students")
        else:
            judged = count >= minimum
            reason = "" if judged else not_judged(minimum, COUNTED[metric])
    return bool(judged), reason


def _counts_text(group: dict[str, Any], metric: str) -> str:
    privacy = group.get("privacy") or {}
    if privacy.get("state") == "suppressed":
        return f"fewer than {privacy.get('min_cell')} students"
    if privacy.get("state") == "noised":
        n = f"≈ {students(int(group.get('n') or 0))}"
        if COUNTED[metric] == "held-out students":
            return n
        return f"≈ {students(_count(group, metric), COUNTED[metric])} of {n}"
    n = int(group.get("n", 0))
    if COUNTED[metric] == "held-out students":
        return students(n)
    return f"{students(_count(group, metric), COUNTED[metric])} of {students(n)}"


def _bars(
    groups: list[dict[str, Any]], metric: str, minimum: int, worst: str | None
) -> list[dict[str, Any]]:
    bars = []
    for g in groups:
        value = (g.get("metrics") or {}).get(metric)
        judged, reason = _judged(g, metric, minimum)
        privacy = g.get("privacy") or {}
        # no interval around a published small group: its counts are noised or not shown
        interval = None if privacy else wilson(value, _count(g, metric))
        low, high = (
            (round(100 * interval[0], 2), round(100 * interval[1], 2))
            if interval
            else (
                None,
                None,
            )
        )
        bars.append(
            {
                "group": str(g["group"]),
                "value": value,
                "width": round(100 * value, 2) if value is not None else 0.0,
                "low": low,
                "span": round(high - low, 2) if low is not None and high is not None else None,
                "counts": _counts_text(g, metric),
                "judged": judged,
                "reason": reason,
                "worst": worst is not None and str(g["group"]) == worst,
                "privacy": privacy.get("state", ""),
                "privacy_note": privacy.get("note", ""),
            }
        )
    return bars


def bias_view(report: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the fairness partial shows, in words, from a stored bias report."""
    report = report or {}
    settings = report.get("settings") or {}
    minimum = int(settings.get("min_group_size") or 0)
    groups = report.get("groups") or []
    raw_checks = report.get("checks") or []
    outcome = report.get("outcome") or "not checked"
    checks = []
    for c in raw_checks:
        metric = c.get("metric", "")
        checks.append(
            {
                **c,
                "intersection": JOIN in c.get("attribute", ""),
                "metric_label": metric_name(metric),
                "rule_label": rule_name(c.get("kind", "")),
                "outcome_label": OUTCOMES.get(c.get("outcome", ""), c.get("outcome", "")),
                "counted": c.get("counted") or COUNTED.get(metric, "held-out students"),
            }
        )
    ruled = [r.get("metric") for r in settings.get("rules") or []]
    metrics = list(dict.fromkeys(ruled + [c["metric"] for c in raw_checks]))
    if not metrics:
        metrics = list(dict.fromkeys(m for g in groups for m in (g.get("metrics") or {})))
    attributes = list(dict.fromkeys(g["attribute"] for g in groups))
    by_key = {(c["attribute"], c["metric"]): c for c in checks}
    charts = []
    for attribute in attributes:
        members = [g for g in groups if g["attribute"] == attribute]
        for metric in metrics:
            if metric not in COUNTED or not any(
                metric in (g.get("metrics") or {}) for g in members
            ):
                continue
            check = by_key.get((attribute, metric))
            state = check["outcome"] if check else ""
            flagged = state in ("fail", "inconclusive")
            charts.append(
                {
                    "attribute": attribute,
                    "intersection": JOIN in attribute,
                    "metric": metric,
                    "metric_label": metric_name(metric),
                    "counted": COUNTED[metric],
                    "outcome": state,
                    "outcome_label": OUTCOMES.get(state, state),
                    "flagged": flagged,
                    "check": check,
                    "bars": _bars(
                        members, metric, minimum, check.get("worst_group") if flagged else None
                    ),
                }
            )
    # the failing charts first (then the inconclusive ones): that is where to act
    order = {"fail": 0, "inconclusive": 1}
    charts.sort(key=lambda chart: order.get(chart["outcome"], 2))
    return {
        "checked": bool(report),
        "outcome": outcome,
        "outcome_label": OUTCOMES.get(outcome, outcome),
        "summary": report.get("summary", ""),
        "checks": checks,
        "charts": charts,
        "min_group_size": minimum,
        "rows": settings.get("rows"),
        "intersections": any(c["intersection"] for c in charts),
        "privacy": (report.get("privacy") or {}).get("summary", ""),
        # a scorer's report: the machine's mean score against the teachers' per group
        "scoring": settings.get("kind") == "ordinal_score",
        "score_groups": [
            {
                "attribute": g["attribute"],
                "group": g["group"],
                "n": g.get("n"),
                "value": (g.get("metrics") or {}).get("score_difference"),
                "judged": not g.get("insufficient", False) and (g.get("n") or 0) >= minimum,
            }
            for g in groups
            if "score_difference" in (g.get("metrics") or {})
        ],
    }
