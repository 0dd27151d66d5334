"""Answers for a teacher to rate: the short answers a scorer was unsure about, routed to human
rating, and the teachers' scores sent back into the scorer's training answers.

- `send` queues unsure answers (from the Answer drift monitor, with the dataset row each came
  from, or from the predict API when the caller asks). At most `MAX_WAITING` wait per scorer; a
  row of a dataset is queued once however often the monitor runs.
- `rate` and `skip` record a teacher's decision, checked against the scorer's scale.
- `add_to_training` appends the rated answers to the newest version of the dataset the scorer was
  trained on, as a new version (text in its text column, the teacher's score in its score column,
  the row's other columns where the dataset has them), so the next training run learns from them.

Who may: anyone who works in the district rates (teachers of its schools, district staff, admins);
only those who manage the district's data add the scores to a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from edumlops.datasets.models import DatasetError, DatasetVersion, ingest
from edumlops.registry.models import AnswerReview, ModelVersion
from edumlops.registry.scoring import ScorerError, config_of
from edumlops.schools.models import District
from edumlops.schools.permissions import Action, can, visible_districts, visible_schools

MAX_WAITING = 5_000  # answers waiting per scorer; more unsure answers are not queued
MAX_VALUE_CHARS = 500  # of each other column's value kept with an answer
MAX_COLUMNS = 100  # other columns kept with an answer (the first ones)


class ReviewError(Exception):
    """A rating or an export that cannot be done; the message says what to do."""


def rating_districts(user: Any) -> QuerySet[District]:
    """The districts whose answers `user` may rate: those they work in, at any level."""
    return District.objects.filter(
        Q(pk__in=visible_districts(user).values("pk"))
        | Q(schools__in=visible_schools(user).values("pk"))
    ).distinct()


def reviews_for(user: Any) -> QuerySet[AnswerReview]:
    return AnswerReview.objects.filter(district__in=rating_districts(user)).select_related(
        "model_version", "dataset_version", "rated_by"
    )


def may_add_to_training(user: Any, model: ModelVersion) -> bool:
    return can(user, Action.MANAGE_DATA, model.district)


def scale_of(model: ModelVersion) -> tuple[int, int]:
    try:
        low, high = config_of(model)["scale"]
    except ScorerError as exc:
        raise ReviewError(str(exc)) from None
    return int(low), int(high)


def shown_values(review: AnswerReview) -> dict[str, str]:
    """The answer's row as a teacher sees it: its other columns but the sensitive ones (the
    dataset's and the scorer's), so that a group does not colour the score."""
    hidden = set((review.model_version.roles or {}).get("sensitive") or [])
    if review.dataset_version is not None:
        hidden |= set(review.dataset_version.role_set.sensitive)
    return {c: v for c, v in review.row_values.items() if c not in hidden}


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)[:MAX_VALUE_CHARS]


def send(
    model: ModelVersion,
    texts: Sequence[str],
    scores: Any,
    indexes: Sequence[int],
    *,
    source: str,
    dataset_version: DatasetVersion | None = None,
    frame: pd.DataFrame | None = None,
    text_column: str | None = None,
) -> int:
    """Queue the answers at `indexes` (of `texts`, scored as `scores`: short_answer.Scores) for a
    teacher. With `dataset_version`, `indexes` are its row numbers, kept with the row's other
    columns from `frame`, and a row already queued is not queued again. Returns how many were
    queued now."""
    indexes = [int(i) for i in indexes]
    if not indexes:
        return 0
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(pk=model.pk).exists()
        room = MAX_WAITING - model.answer_reviews.filter(status=AnswerReview.Status.WAITING).count()
        if dataset_version is not None:
            seen = set(
                model.answer_reviews.filter(dataset_version=dataset_version).values_list(
                    "row", flat=True
                )
            )
            indexes = [i for i in indexes if i not in seen]
        indexes = indexes[: max(room, 0)]
        others = [c for c in (frame.columns if frame is not None else []) if c != text_column]
        others = others[:MAX_COLUMNS]
        points = [int(p) for p in scores.points]
        reviews = []
        for i in indexes:
            values = {}
            if frame is not None:
                row = frame.iloc[i]
                values = {str(c): v for c in others if (v := _text(row[c])) is not None}
            reviews.append(
                AnswerReview(
                    district=model.district,
                    model_version=model,
                    source=source,
                    dataset_version=dataset_version,
                    row=i if dataset_version is not None else None,
                    text=str(texts[i]),
                    row_values=values,
                    score=int(scores.scores[i]),
                    expected=round(float(scores.expected[i]), 4),
                    probabilities={
                        str(p): round(float(q), 4)
                        for p, q in zip(points, scores.probabilities[i], strict=True)
                    },
                )
            )
        AnswerReview.objects.bulk_create(reviews)
    return len(reviews)


def rate(review: AnswerReview, score: Any, user: Any) -> AnswerReview:
    """Record a teacher's whole-point score for `review` (a new score replaces an earlier one
    until the scores are added to the training answers)."""
    low, high = scale_of(review.model_version)
    if isinstance(score, bool) or not isinstance(score, int | str):
        raise ReviewError(f"The score must be a whole number from {low} to {high}.")
    try:
        value = int(str(score).strip())
    except ValueError:
        raise ReviewError(
            f"The score must be a whole number from {low} to {high}, not {str(score)[:20]!r}."
        ) from None
    if not low <= value <= high:
        raise ReviewError(
            f"{review.model_version} scores from {low} to {high} points: give a score in that "
            f"range, not {value}."
        )
    return _decide(review, user, AnswerReview.Status.RATED, value)


def skip(review: AnswerReview, user: Any) -> AnswerReview:
    """A teacher cannot score this answer (not an answer to the question, unreadable...)."""
    return _decide(review, user, AnswerReview.Status.SKIPPED, None)


def _decide(review: AnswerReview, user: Any, status: str, value: int | None) -> AnswerReview:
    with transaction.atomic():
        locked = AnswerReview.objects.select_for_update().get(pk=review.pk)
        if locked.stored_in_id is not None:
            raise ReviewError(
                f"This answer's score ({locked.teacher_score}) is already in "
                f"{locked.stored_in}: it cannot be changed now."
            )
        locked.status = status
        locked.teacher_score = value
        locked.rated_by = user if getattr(user, "is_authenticated", False) else None
        locked.rated_at = timezone.now()
        locked.save(update_fields=["status", "teacher_score", "rated_by", "rated_at"])
    return locked


def add_to_training(model: ModelVersion, user: Any) -> tuple[DatasetVersion, int]:
    """Append `model`'s rated answers not yet stored to the newest version of the dataset it was
    trained on, as a new version; returns it and how many answers it gained."""
    config = _config(model)
    trained_on = model.dataset_version
    if trained_on is None:
        raise ReviewError(
            f"The dataset {model} was trained on no longer exists: download the rated answers "
            "(GET /api/answer-reviews/?status=rated) and upload them with your training answers."
        )
    newest = trained_on.dataset.versions.order_by("-number").first()
    text, score = config["text_column"], config["score_column"]
    with transaction.atomic():
        rated = list(
            model.answer_reviews.select_for_update()
            .filter(status=AnswerReview.Status.RATED, stored_in__isnull=True)
            .order_by("pk")
        )
        if not rated:
            raise ReviewError(
                f"No answers scored by {model} have been rated since the last were added: rate "
                "some on the Answers to rate page first."
            )
        frame = newest.frame()
        missing = [c for c in (text, score) if c not in frame.columns]
        if missing:
            raise ReviewError(
                f"The newest version of {newest.dataset.name} (v{newest.number}) has no column "
                f"{', '.join(map(repr, missing))}, which {model} was trained with: add the rated "
                "answers to a dataset that has them."
            )
        added = pd.DataFrame(
            [
                {
                    **{c: v for c, v in r.row_values.items() if c in frame.columns},
                    text: r.text,
                    score: r.teacher_score,
                }
                for r in rated
            ],
            columns=frame.columns,
        )
        combined = pd.concat([frame, added], ignore_index=True)
        try:
            version, _ = ingest(
                district=model.district,
                name=newest.dataset.name,
                data=combined.to_csv(index=False).encode(),
                user=user,
                roles=newest.role_set,
                original_name=f"{newest.dataset.name} + {len(rated)} teacher ratings.csv",
                source=newest.dataset.source,
            )
        except DatasetError as exc:
            raise ReviewError(f"The rated answers could not be added: {exc}") from None
        AnswerReview.objects.filter(pk__in=[r.pk for r in rated]).update(stored_in=version)
    return version, len(rated)


def _config(model: ModelVersion) -> dict[str, Any]:
    try:
        return config_of(model)
    except ScorerError as exc:
        raise ReviewError(str(exc)) from None
