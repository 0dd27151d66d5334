"""Answering with a model version of any task type, in the shape of its type.

`POST /api/models/{id}/predict/` (registry/api.py) calls `predict`. Each task type has one
function here that turns the checked request body into the answer:

- forecast: the stored forecast rows (school, grade, term, point and interval), filtered by
  school, grade and how many terms ahead;
- ordinal score: each answer's whole-point score, its expected score and the probability of
  each point, from the scorer's ONNX file (checked against its SHA-256); answers whose two most
  likely scores are close are marked unsure, to go to a teacher;
- mastery: a student's answers in order (skill, right or wrong) → P(mastered) for every skill
  of the BKT model and the skill to practise next;
- binary risk: refused with the door that answers it (a school's deployment), since a risk
  model's answers are recorded and monitored per school.

What each version needs to answer (a forecast table, a scorer's ONNX session) is read from
MLflow once per process and kept: a registered version never changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from edumlops.ml.task_types import TaskType, parse
from edumlops.registry.models import ModelVersion


class PredictRefused(ValueError):
    """The version cannot answer this request; the message says why and what to do instead.
    `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


KEEP = 16  # loaded versions kept per process
_kept: OrderedDict[tuple[int, str], Any] = OrderedDict()
_lock = threading.Lock()


def _loaded(version: ModelVersion, load: Callable[[ModelVersion], Any]) -> Any:
    key = (version.pk, version.run_id)
    with _lock:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
    value = load(version)
    with _lock:
        _kept[key] = value
        while len(_kept) > KEEP:
            _kept.popitem(last=False)
    return value


def _model(version: ModelVersion) -> dict[str, Any]:
    return {"id": version.pk, "name": version.name, "version": version.version}


# --- forecast ----------------------------------------------------------------------------------
FORECAST_FIELDS = ("school", "grade", "period", "year", "term", "step")


def _forecast(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    from edumlops.registry.forecasts import ForecastError, load_forecast

    try:
        rows = _loaded(version, load_forecast)
    except ForecastError as exc:
        raise PredictRefused(str(exc), status=409) from None
    config = rows.attrs.get("config", {})
    chosen = rows
    for key in ("school", "grade"):
        wanted = body.get(key)
        if wanted in (None, ""):
            continue
        if key not in rows.columns:
            raise PredictRefused(f"This forecast is per school, not per {key}: leave out {key!r}.")
        values = rows[key].astype(str)
        chosen = chosen[values.loc[chosen.index] == str(wanted)]
        if chosen.empty:
            known = sorted(set(values))
            raise PredictRefused(
                f"{key.capitalize()} {wanted!r} is not in this forecast: use one of "
                f"{', '.join(known[:30])}{' …' if len(known) > 30 else ''}."
            )
    steps = body.get("steps")
    if steps is not None:
        horizon = int(rows["step"].max())
        if steps > horizon:
            raise PredictRefused(
                f"This forecast reaches {horizon} terms ahead; ask for steps 1 to {horizon}, or "
                "train it again with a longer horizon."
            )
        chosen = chosen[chosen["step"] <= steps]
    forecasts = []
    for row in chosen.to_dict("records"):
        forecasts.append(
            {
                "school": str(row["school"]),
                "grade": str(row["grade"]) if "grade" in row and row["grade"] is not None else None,
                "period": str(row["period"]),
                "year": int(row["year"]),
                "term": str(row["term"]),
                "step": int(row["step"]),
                "point": round(float(row["point"]), 2),
                "lower": round(float(row["lower"]), 2),
                "upper": round(float(row["upper"]), 2),
                "method": str(row["method"]),
                "fallback_reason": str(row.get("reason") or ""),
            }
        )
    return {
        "task_type": TaskType.FORECAST.value,
        "model": _model(version),
        "method": config.get("method"),
        "level": config.get("level"),
        "by": config.get("by"),
        "forecasts": forecasts,
    }


# --- ordinal score -----------------------------------------------------------------------------
DEFAULT_MARGIN = 0.2  # as Validate short-answer scorer's default


def _ordinal_score(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    from edumlops.ml.short_answer import ScoringError, unsure_share
    from edumlops.registry.scoring import ScorerError, load_scorer

    try:
        scorer = _loaded(version, load_scorer)
    except ScorerError as exc:
        raise PredictRefused(str(exc), status=409) from None
    texts = list(body["answers"])
    margin = body.get("unsure_margin")
    if margin is None:
        margin = ((version.validation or {}).get("unsure") or {}).get("margin", DEFAULT_MARGIN)
    try:
        scores = scorer.score(texts)
        unsure = unsure_share(scores.probabilities, margin=float(margin))
    except ScoringError as exc:
        raise PredictRefused(str(exc)) from None
    flagged = set(unsure.indexes)
    sent = 0
    if body.get("send_unsure_to_teachers"):
        from edumlops.registry import reviews

        sent = reviews.send(
            version, texts, scores, unsure.indexes, source=reviews.AnswerReview.Source.PREDICT
        )
    points = [int(p) for p in scores.points]
    answers = [
        {
            "index": i,
            "score": int(scores.scores[i]),
            "expected": round(float(scores.expected[i]), 4),
            "probabilities": {
                str(point): round(float(p), 4)
                for point, p in zip(points, scores.probabilities[i], strict=True)
            },
            "unsure": i in flagged,
        }
        for i in range(len(texts))
    ]
    return {
        "task_type": TaskType.ORDINAL_SCORE.value,
        "model": _model(version),
        "scale": [int(v) for v in scorer.scale],
        "points": points,
        "unsure_margin": float(margin),
        "answers": answers,
        "unsure": {"count": unsure.count, "indexes": unsure.indexes, "message": unsure.message},
        "sent_to_teachers": sent,
    }


# --- mastery (knowledge tracing) -------------------------------------------------------------
def _mastery(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    from edumlops.ml.knowledge_tracing import mastery
    from edumlops.registry.mastery import MasteryError, load_mastery_model

    try:
        model = _loaded(version, load_mastery_model)
    except MasteryError as exc:
        raise PredictRefused(str(exc), status=409) from None
    threshold = body.get("threshold") or 0.95
    answers = [{"skill": a["skill"], "correct": bool(a["correct"])} for a in body["answers"]]
    try:
        found = mastery(model, answers, threshold=threshold)
    except ValueError as exc:  # an unknown skill, named with the ones the model knows
        raise PredictRefused(str(exc)) from None
    return {
        "task_type": TaskType.MASTERY.value,
        "model": _model(version),
        "threshold": threshold,
        "skills": [
            {
                "skill": name,
                "p_mastered": round(float(info["p_mastered"]), 4),
                "mastered": bool(info["mastered"]),
                "answers": int(info["answers"]),
                "p_correct_next": round(float(info["p_correct_next"]), 4),
            }
            for name, info in found["skills"].items()
        ],
        "next_skill": found["next_skill"],
        "reason": found["reason"],
    }


def _binary_risk(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    raise PredictRefused(
        f"{version} is a yes/no risk model: its answers come from a school's deployment, where "
        "they are recorded and monitored. Roll it out to a school, then POST rows to "
        "/api/schools/{id}/predict/.",
        status=409,
    )


ANSWER: dict[TaskType, Callable[[ModelVersion, dict[str, Any]], dict[str, Any]]] = {
    TaskType.FORECAST: _forecast,
    TaskType.ORDINAL_SCORE: _ordinal_score,
    TaskType.MASTERY: _mastery,
    TaskType.BINARY_RISK: _binary_risk,
}


def predict(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    """The answer of `version` to a checked request body, in the shape of its task type."""
    kind = parse(version.task_type)
    answer = ANSWER.get(kind)
    if answer is None:
        raise PredictRefused(
            f"{version} is {kind.noun}, which this server cannot answer with yet.", status=409
        )
    return answer(version, body)
