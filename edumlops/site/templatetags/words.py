"""Human words for the status codes stored by checks, runs and alerts: `{{ check.status|words }}`.

Pages never print a raw code such as ``insufficient_data``; a code missing from the table below
is shown with its underscores turned into spaces, so a new code still reads as words.
"""

from __future__ import annotations

from django import template

register = template.Library()

WORDS: dict[str, str] = {
    # drift, performance and latency checks
    "drift": "drift found",
    "no_drift": "no drift",
    "insufficient_data": "not enough data yet",
    "ok": "all right",
    "degraded": "worse than at training",
    "slow": "slower than allowed",
    # alerts
    "open": "open",
    "acknowledged": "seen, not yet resolved",
    "resolved": "resolved",
    "info": "for information",
    "warning": "warning",
    "critical": "critical",
    # runs and steps
    "pending": "not started",
    "queued": "waiting to start",
    "running": "running",
    "waiting": "waiting",
    "waiting_approval": "waiting for approval",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "blocked": "not run (an earlier step failed)",
    # bias gate
    "pass": "passed",
    "fail": "failed",
    "inconclusive": "inconclusive",
    # algorithms whose code does not read as words
    "dp_logistic_regression": "private logistic regression (differential privacy)",
    "dp_gaussian_nb": "private Gaussian naive Bayes (differential privacy)",
}


@register.filter
def words(code: object) -> str:
    """The words for a status code (unknown codes: underscores become spaces)."""
    text = "" if code is None else str(code)
    return WORDS.get(text, text.replace("_", " "))


MONITORS = {"drift": "Drift", "performance": "Performance", "latency": "Latency"}


@register.filter
def monitor(code: object) -> str:
    """A monitor's name: `{{ alert.monitor|monitor }}` ("drift" → "Drift")."""
    text = "" if code is None else str(code)
    return MONITORS.get(text, text.replace("_", " ").capitalize())


@register.filter
def feature(name: object) -> str:
    """A monitored column as people read it: the model's own output is "predicted risk"."""
    text = "" if name is None else str(name)
    return text.replace("__prediction__", "predicted risk")


@register.filter
def percent(share: object, digits: int = 0) -> str:
    """A share as a percentage ("0.0289"|percent:1 → "2.9%"); "—" when there is none."""
    try:
        value = float(share)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    if value != value:
        return "—"
    return f"{value * 100:.{int(digits)}f}%"
