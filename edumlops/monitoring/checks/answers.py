"""The answer drift check: new short answers (a dataset of answers not yet rated) compared with
the answers a scorer was trained on: their length in words (`length_drift`, PSI), the share of
their words outside the scorer's vocabulary (`vocabulary_drift`), and the share the scorer is
unsure about (`unsure_share`: its two most likely scores close in probability), whose row
numbers the report lists; they are also queued for a teacher to score on the Answers to rate
page (edumlops/registry/reviews.py). Each finding past its limit is one alert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import short_answer
from edumlops.monitoring.checks.params import CheckError, CheckParams
from edumlops.monitoring.models import Alert
from edumlops.monitoring.services import raise_alert
from edumlops.registry import reviews
from edumlops.registry.models import AnswerReview, ModelVersion
from edumlops.registry.scoring import ScorerError, config_of, load_scorer
from edumlops.schools.models import District

MONITOR = "answers"
MAX_ROWS = 500  # unsure answers listed in the report


class AnswerDriftParams(CheckParams):
    length_threshold: float = Field(
        0.2,
        gt=0,
        le=5,
        description="Flag answer length drift when its PSI is above this (0.2: a real shift).",
        json_schema_extra={"threshold": "district", "label": "Length PSI above"},
    )
    vocabulary_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description=(
            "Flag vocabulary drift when the share of words outside the scorer's vocabulary "
            "rises by more than this (0.1 = 10 points) over the training answers'."
        ),
        json_schema_extra={"threshold": "district", "label": "Rise of new words above"},
    )
    margin: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "An answer is unsure when its two most likely scores are within this in probability."
        ),
        json_schema_extra={"label": "Unsure within"},
    )
    max_unsure_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Alert when more than this share of the answers is unsure.",
        json_schema_extra={"threshold": "district", "label": "Unsure share above"},
    )
    send_unsure_to_teachers: bool = Field(
        True,
        description=(
            "Queue the unsure answers on the Answers to rate page for a teacher to score (each "
            "row once, at most 5,000 waiting per scorer)."
        ),
    )
    min_answers: int = Field(
        30,
        ge=1,
        le=100_000,
        description="Length drift is not judged on fewer answers than this.",
        json_schema_extra={"label": "Fewest answers", "unit": "answers"},
    )


@dataclass
class Finding:
    kind: str  # "length", "vocabulary" or "unsure"
    flagged: bool
    value: float | None
    limit: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    alert: Alert | None = None
    new_alert: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "flagged": self.flagged,
            "value": self.value,
            "limit": self.limit,
            "message": self.message,
            **self.details,
            "alert": self.alert.pk if self.alert else None,
        }


@dataclass
class AnswerDriftResult:
    model: ModelVersion
    answers: int
    findings: list[Finding] = field(default_factory=list)
    unsure_rows: list[int] = field(default_factory=list)
    unsure: int = 0
    sent_to_teachers: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def new_alerts(self) -> int:
        return sum(f.new_alert for f in self.findings)

    def finding(self, kind: str) -> Finding:
        return next(f for f in self.findings if f.kind == kind)

    def report(self) -> dict[str, Any]:
        return {
            "model_version": self.model.pk,
            "model": str(self.model),
            "summary": {
                "answers": self.answers,
                "unsure": self.unsure,
                "sent_to_teachers": self.sent_to_teachers,
                "flagged": [f.kind for f in self.findings if f.flagged],
                "new_alerts": self.new_alerts,
            },
            "results": [f.as_dict() for f in self.findings],
            "unsure_rows": self.unsure_rows[:MAX_ROWS],
            "unsure_rows_listed": min(len(self.unsure_rows), MAX_ROWS),
        }


def _reference(model: ModelVersion) -> dict[str, Any]:
    kept = (model.training or {}).get("reference") or {}
    if not kept.get("length_counts") or not kept.get("vocabulary"):
        raise CheckError(
            f"{model} was trained before EduMLOps kept the training answers' lengths and "
            "vocabulary: train the scorer again to monitor its answers."
        )
    return kept


def _texts(model: ModelVersion, frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        raise CheckError(
            f"The new answers have no column '{column}': {model} was trained on answers in a "
            f"column '{column}'; upload the new answers with that column (these have "
            f"{', '.join(map(str, frame.columns[:10]))})."
        )
    if frame.empty:
        raise CheckError("The new answers have no rows: upload the answers to check.")
    texts = frame[column].tolist()
    if not any(short_answer.tokens(t) for t in texts):
        raise CheckError(
            f"None of the new answers in column '{column}' has a word: upload the answers' text."
        )
    return texts


def check_answer_drift(
    district: District,
    model: ModelVersion,
    frame: pd.DataFrame,
    params: AnswerDriftParams,
    dataset_version: DatasetVersion | None = None,
) -> AnswerDriftResult:
    """Length and vocabulary drift of `frame`'s answers against `model`'s training answers, and
    the share it is unsure about; one alert per finding past its limit."""
    try:
        config = config_of(model)
    except ScorerError as exc:
        raise CheckError(str(exc)) from None
    kept = _reference(model)
    texts = _texts(model, frame, config["text_column"])
    lengths = np.repeat(
        [int(n) for n in kept["length_counts"]], [int(c) for c in kept["length_counts"].values()]
    )
    length = short_answer.length_drift(
        [],
        texts,
        threshold=params.length_threshold,
        min_answers=params.min_answers,
        reference_lengths=lengths,
    )
    vocabulary = short_answer.vocabulary_drift(
        [],
        texts,
        vocabulary=kept["vocabulary"],
        threshold=params.vocabulary_threshold,
        reference_share=(kept["oov_share"], kept["words"]),
    )
    try:
        scorer = load_scorer(model)
        scores = scorer.score(texts)
        unsure = short_answer.unsure_share(scores.probabilities, margin=params.margin)
    except (ScorerError, short_answer.ScoringError) as exc:
        raise CheckError(str(exc)) from None
    result = AnswerDriftResult(
        model=model, answers=len(texts), unsure_rows=unsure.indexes, unsure=unsure.count
    )
    if params.send_unsure_to_teachers and dataset_version is not None:
        result.sent_to_teachers = reviews.send(
            model,
            texts,
            scores,
            unsure.indexes,
            source=AnswerReview.Source.MONITOR,
            dataset_version=dataset_version,
            frame=frame,
            text_column=config["text_column"],
        )
    judged = length.statistic == length.statistic  # NaN: too few answers to judge
    result.findings = [
        Finding(
            "length",
            length.drifted,
            round(float(length.statistic), 4) if judged else None,
            params.length_threshold,
            length.message,
            {"reference": length.reference, "current": length.current},
        ),
        Finding(
            "vocabulary",
            vocabulary.drifted,
            round(float(vocabulary.statistic), 4),
            params.vocabulary_threshold,
            vocabulary.message,
            {"reference": vocabulary.reference, "current": vocabulary.current},
        ),
        Finding(
            "unsure",
            unsure.share > params.max_unsure_share,
            round(unsure.share, 4),
            params.max_unsure_share,
            unsure.message,
            {"count": unsure.count, "margin": params.margin},
        ),
    ]
    for finding in result.findings:
        if finding.flagged:
            _alert(district, model, finding, result)
    result.log = _log(result)
    return result


WHAT_TO_DO = {
    "length": (
        "Check whether the prompt, its instructions or the way answers are collected changed; "
        "have teachers rate a sample of these answers and retrain the scorer on them."
    ),
    "vocabulary": (
        "The answers use words the scorer never saw (a new prompt, topic or language?): have "
        "teachers rate a sample and retrain the scorer with them."
    ),
    "unsure": (
        "Send the unsure answers to a teacher to rate (on the Answers to rate page, or by their "
        "row numbers in the report), add the scores to the scorer's training answers there and "
        "retrain the scorer."
    ),
}


def _alert(
    district: District, model: ModelVersion, finding: Finding, result: AnswerDriftResult
) -> None:
    listed = min(len(result.unsure_rows), MAX_ROWS)
    rows = ""
    if finding.kind == "unsure":
        rows = f" The report lists {listed} of their row numbers."
        if result.sent_to_teachers:
            rows += f" {result.sent_to_teachers} were queued on the Answers to rate page."

    alert, new = raise_alert(
        district=district,
        school=None,
        monitor=MONITOR,
        cause=f"answers {model.name}: {finding.kind}"[:200],
        severity=Alert.Severity.WARNING,
        message=(
            f"New answers scored by {model} ({result.answers} answers): {finding.message}"
            f"{rows} {WHAT_TO_DO[finding.kind]}"
        ),
    )
    finding.alert, finding.new_alert = alert, new


def _log(result: AnswerDriftResult) -> list[str]:
    lines = [f"{result.answers} new answers compared with the training answers of {result.model}."]
    for finding in result.findings:
        state = (
            f" Alert #{finding.alert.pk}{' (new)' if finding.new_alert else ' (refreshed)'}."
            if finding.alert
            else ""
        )
        lines.append(f"{finding.kind}: {finding.message}{state}")
    if result.unsure_rows:
        shown = ", ".join(map(str, result.unsure_rows[:20]))
        more = " …" if len(result.unsure_rows) > 20 else ""
        lines.append(f"Unsure answers to send to a teacher (row numbers from 0): {shown}{more}")
    if result.sent_to_teachers:
        lines.append(
            f"{result.sent_to_teachers} of them queued on the Answers to rate page (/ratings/)."
        )
    return lines
