"""What a model version predicts: its task type. Each step of the main loop (train, validate, the
bias gate, export, serving, monitoring, the card) either does the right thing for the type or
refuses it with a sentence that names the block to use instead.

- binary risk: a yes/no outcome with a probability (the early-warning models).
- ordinal score: a score on a scale of whole points (short-answer scoring against human raters).
- forecast: a number for future periods with a range (enrollment per school and grade).
- mastery: P(a skill is mastered) after a student's answers (knowledge tracing).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class TaskType(StrEnum):
    BINARY_RISK = "binary_risk"
    ORDINAL_SCORE = "ordinal_score"
    FORECAST = "forecast"
    MASTERY = "mastery"

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def noun(self) -> str:
        """How a sentence names a model of this type ("a yes/no risk model")."""
        return NOUNS[self]


LABELS = {
    TaskType.BINARY_RISK: "Binary risk",
    TaskType.ORDINAL_SCORE: "Ordinal score",
    TaskType.FORECAST: "Forecast",
    TaskType.MASTERY: "Mastery",
}
NOUNS = {
    TaskType.BINARY_RISK: "a yes/no risk model",
    TaskType.ORDINAL_SCORE: "a scoring model (whole-point scores)",
    TaskType.FORECAST: "a forecast model",
    TaskType.MASTERY: "a knowledge-tracing (mastery) model",
}
CHOICES = [(t.value, t.label) for t in TaskType]


def parse(value: str | None) -> TaskType:
    """The task type of a stored value; a model stored before task types existed is binary risk."""
    if not value:
        return TaskType.BINARY_RISK
    try:
        return TaskType(value)
    except ValueError:
        known = ", ".join(t.value for t in TaskType)
        raise ValueError(f"Unknown task type {value!r}: use one of {known}.") from None


def refusal(
    step: str, task_type: str | None, accepts: Iterable[TaskType], instead: dict[TaskType, str]
) -> str | None:
    """The sentence with which `step` refuses a model of `task_type`, or None when it accepts it.
    `instead` names, per type, what to use in its place."""
    kind = parse(task_type)
    accepted = tuple(accepts)
    if kind in accepted:
        return None
    handles = " or ".join(t.noun for t in accepted)
    fix = instead.get(kind)
    return f"{step} works on {handles}; this is {kind.noun}. " + (
        f"Use {fix} instead." if fix else "Connect a model of the kind it works on."
    )
