"""Validation and monitors for knowledge tracing (edumlops.ml.knowledge_tracing).

- `validate_bkt` fits on some students and scores next-answer predictions on the others:
  AUC, log loss, Brier score, and a calibration table with its expected calibration error
  (`evaluate_bkt` scores a stored model on any answer log).
- `parameter_drift`: the parameters that moved from one retraining to the next.
- `item_difficulty_check`: skills whose items are too easy (guess too high), too hard (slip too
  high, or practice that teaches nothing) or whose fit is degenerate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from edumlops.ml.knowledge_tracing import PARAMETERS, BKTModel, fit_bkt, predict_answers

# --- validation on held-out students -------------------------------------------------------------


@dataclass
class BKTValidation:
    """Next-answer correctness predicted on held-out answers, scored."""

    answers: int
    students: int
    share_correct: float
    auc: float | None  # None when the answers are all correct or all wrong
    log_loss: float
    brier: float
    ece: float  # expected calibration error: the count-weighted gap of the calibration bins
    calibration: list[dict[str, Any]]  # lower, upper, count, mean_predicted, observed
    per_skill: list[dict[str, Any]]  # skill, answers, students, share_correct, mean_predicted, auc
    split: dict[str, Any] = field(default_factory=dict)  # train/test students, seed, share

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_table(y: Any, p: Any, bins: int = 10) -> list[dict[str, Any]]:
    """Predictions in `bins` equal-width bins of [0, 1] (the last one closed): per bin its
    bounds, count, mean prediction and observed share correct (None for an empty bin)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}.")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=p, minlength=bins)
    observed = np.bincount(which, weights=y, minlength=bins)
    return [
        {
            "lower": i / bins,
            "upper": (i + 1) / bins,
            "count": int(counts[i]),
            "mean_predicted": float(predicted[i] / counts[i]) if counts[i] else None,
            "observed": float(observed[i] / counts[i]) if counts[i] else None,
        }
        for i in range(bins)
    ]


def expected_calibration_error(table: Sequence[Mapping[str, Any]]) -> float:
    """Σ count/n × |mean predicted − observed| over the bins of `calibration_table`."""
    n = sum(b["count"] for b in table)
    if not n:
        raise ValueError("The calibration table is empty: there are no predictions to judge.")
    return float(
        sum(b["count"] * abs(b["mean_predicted"] - b["observed"]) for b in table if b["count"]) / n
    )


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def evaluate_bkt(
    model: BKTModel,
    frame: pd.DataFrame,
    *,
    student: str = "student",
    skill: str = "skill",
    correct: str = "correct",
    order: str = "order",
    bins: int = 10,
) -> BKTValidation:
    """Scores the model's next-answer predictions (`predict_answers`) on an answer log: AUC,
    log loss, Brier score, calibration table and ECE, overall and AUC per skill."""
    from sklearn.metrics import brier_score_loss, log_loss

    cols = {"student": student, "skill": skill, "correct": correct, "order": order}
    predicted = predict_answers(model, frame, **cols)
    y = predicted[correct].to_numpy()
    p = predicted["p_correct"].to_numpy()
    table = calibration_table(y, p, bins)
    per_skill = []
    for name, part in predicted.groupby(skill, sort=True):
        py, pp = part[correct].to_numpy(), part["p_correct"].to_numpy()
        per_skill.append(
            {
                "skill": str(name),
                "answers": len(part),
                "students": int(part[student].nunique()),
                "share_correct": float(py.mean()),
                "mean_predicted": float(pp.mean()),
                "auc": _auc(py, pp),
            }
        )
    return BKTValidation(
        answers=len(y),
        students=int(predicted[student].nunique()),
        share_correct=float(y.mean()),
        auc=_auc(y, p),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier=float(brier_score_loss(y, p, pos_label=1)),
        ece=expected_calibration_error(table),
        calibration=table,
        per_skill=per_skill,
    )


def split_students(
    frame: pd.DataFrame, *, student: str = "student", test_share: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The answers of a seeded random `test_share` of the students, and the rest's: every
    student's answers fall on one side."""
    if student not in frame.columns:
        raise ValueError(f"The answers have no student column '{student}': name it with student=.")
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1, not {test_share}.")
    ids = np.sort(frame[student].astype(str).unique())
    if len(ids) < 2:
        raise ValueError("Held-out validation needs at least two students.")
    held = max(1, min(len(ids) - 1, round(len(ids) * test_share)))
    test_ids = np.random.default_rng(seed).choice(ids, size=held, replace=False)
    is_test = frame[student].astype(str).isin(test_ids)
    return frame[~is_test], frame[is_test]


def validate_bkt(
    frame: pd.DataFrame,
    *,
    student: str = "student",
    skill: str = "skill",
    correct: str = "correct",
    order: str = "order",
    test_share: float = 0.2,
    seed: int = 0,
    bins: int = 10,
    forgets: bool = False,
    num_fits: int = 5,
    min_answers: int = 30,
) -> tuple[BKTModel, BKTValidation]:
    """Fits on the answers of (1 - test_share) of the students and scores next-answer
    predictions on the others' (`split_students`, `fit_bkt`, `evaluate_bkt`)."""
    cols = {"student": student, "skill": skill, "correct": correct, "order": order}
    train, test = split_students(frame, student=student, test_share=test_share, seed=seed)
    model = fit_bkt(
        train, **cols, forgets=forgets, seed=seed, num_fits=num_fits, min_answers=min_answers
    )
    report = evaluate_bkt(model, test, **cols, bins=bins)
    report.split = {
        "train_students": int(train[student].nunique()),
        "test_students": int(test[student].nunique()),
        "train_answers": len(train),
        "test_answers": len(test),
        "test_share": test_share,
        "seed": seed,
    }
    return model, report


# --- monitors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterChange:
    """One parameter of one skill from one retraining to the next."""

    skill: str
    parameter: str
    old: float | None  # None: the skill is new
    new: float | None  # None: the skill was dropped
    change: float | None
    flagged: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# How far a parameter may move between two retrainings before it is flagged. Fits of one truth
# on fresh logs of 200 students x 8 answers per skill (1,600 answers) miss it by a root mean
# square of 0.018 (learn), 0.014 (slip), 0.028 (guess) and 0.05 (prior, the least identified;
# tests/ml/test_knowledge_tracing.py), so two such fits differ by about 1.4x that: 0.1 is three
# of those for learn and slip and 2.5 for guess, 0.2 about three for prior. Larger logs move less.
DRIFT_TOLERANCE = {"prior": 0.2, "learn": 0.1, "guess": 0.1, "slip": 0.1, "forget": 0.1}


def parameter_drift(
    previous: BKTModel,
    current: BKTModel,
    *,
    tolerance: float | Mapping[str, float] | None = None,
) -> list[ParameterChange]:
    """Every parameter of every skill, old and new, flagged when it moved by more than its
    tolerance (absolute: one number for all, or some per parameter, the others at
    `DRIFT_TOLERANCE`) or when the skill appeared or disappeared. A refit of the same answers
    from another random start moves nothing that matters (EM finds the same optimum)."""
    limits = _tolerances(tolerance)
    out = []
    for name in sorted(set(previous.skills) | set(current.skills)):
        old, new = previous.skills.get(name), current.skills.get(name)
        for parameter in PARAMETERS:
            a = getattr(old, parameter) if old else None
            b = getattr(new, parameter) if new else None
            if a is None or b is None:
                why = "new skill" if a is None else "skill no longer in the model"
                out.append(ParameterChange(name, parameter, a, b, None, True, f"'{name}': {why}."))
                continue
            change = b - a
            flagged = abs(change) > limits[parameter]
            reason = (
                f"'{name}' {parameter} moved from {a:.3f} to {b:.3f} ({change:+.3f}), more than "
                f"the tolerance of {limits[parameter]:g}."
                if flagged
                else ""
            )
            out.append(ParameterChange(name, parameter, a, b, change, flagged, reason))
    return out


def _tolerances(tolerance: float | Mapping[str, float] | None) -> dict[str, float]:
    if tolerance is None:
        limits = dict(DRIFT_TOLERANCE)
    elif isinstance(tolerance, Mapping):
        unknown = sorted(set(tolerance) - set(PARAMETERS))
        if unknown:
            raise ValueError(
                f"Unknown parameter(s) {', '.join(unknown)} in tolerance: use "
                f"{', '.join(PARAMETERS)}."
            )
        limits = {p: float(tolerance.get(p, DRIFT_TOLERANCE[p])) for p in PARAMETERS}
    else:
        limits = dict.fromkeys(PARAMETERS, float(tolerance))
    bad = [p for p, v in limits.items() if not (0.0 <= v < 1.0) or math.isnan(v)]
    if bad:
        raise ValueError(f"Tolerance for {', '.join(bad)} must be between 0 and 1.")
    return limits


Verdict = Literal["too_easy", "too_hard", "degenerate"]


@dataclass(frozen=True)
class DifficultyFlag:
    """A skill whose fitted parameters say its items are out of range."""

    skill: str
    verdict: Verdict
    parameter: str
    value: float
    limit: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def item_difficulty_check(
    model: BKTModel,
    *,
    max_guess: float = 0.3,
    max_slip: float = 0.3,
    min_learn: float = 0.01,
) -> list[DifficultyFlag]:
    """Skills whose items are too easy, too hard, or whose fit is degenerate, with a sentence
    each (a skill can have several flags).

    - too easy: guess > `max_guess`. Corbett & Anderson (1995) bounded guess at 0.3 in the
      Cognitive Tutors, and Baker, Corbett & Aleven (2008, "More accurate student modeling
      through contextual estimation of slip and guess probabilities") use that bound: above
      it, a correct answer says little about mastery (items guessable, or the skill was
      already known).
    - too hard: slip > `max_slip`, or learn < `min_learn`. Those papers bound slip at 0.1 for
      tutor steps; quizzes and assessments have more careless or ambiguous items, so the check
      warns at 0.3, the top of the range pyBKT itself starts EM from: past it, students who
      have the skill still fail often (items too hard, or mis-keyed). A learn rate under 0.01
      means practice barely moves mastery.
    - degenerate: guess >= 1 - slip, Baker et al.'s model degeneracy: a student who has not
      mastered the skill is at least as likely to answer right as one who has, so a correct
      answer does not raise P(mastered). The parameters cannot be used for mastery.
    """
    for name, value in (("max_guess", max_guess), ("max_slip", max_slip), ("min_learn", min_learn)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, not {value}.")
    flags = []
    for name in sorted(model.skills):
        p = model.skills[name]
        if p.degenerate:
            flags.append(
                DifficultyFlag(
                    name,
                    "degenerate",
                    "guess",
                    p.guess,
                    1.0 - p.slip,
                    f"'{name}': guess {p.guess:.2f} is at least 1 - slip ({1 - p.slip:.2f}): "
                    "students who have not mastered it answer right as often as those who "
                    "have, so its answers cannot measure mastery.",
                )
            )
        if p.guess > max_guess:
            flags.append(
                DifficultyFlag(
                    name,
                    "too_easy",
                    "guess",
                    p.guess,
                    max_guess,
                    f"'{name}': guess {p.guess:.2f} > {max_guess:g}: students who have not "
                    "mastered it often answer right, so its items are too easy to show mastery.",
                )
            )
        if p.slip > max_slip:
            flags.append(
                DifficultyFlag(
                    name,
                    "too_hard",
                    "slip",
                    p.slip,
                    max_slip,
                    f"'{name}': slip {p.slip:.2f} > {max_slip:g}: students who have mastered it "
                    "still often answer wrong, so its items are too hard or mis-keyed.",
                )
            )
        if p.learn < min_learn:
            flags.append(
                DifficultyFlag(
                    name,
                    "too_hard",
                    "learn",
                    p.learn,
                    min_learn,
                    f"'{name}': learn {p.learn:.3f} < {min_learn:g}: practice barely moves "
                    "mastery, so its items are too hard to learn from as they are taught.",
                )
            )
    return flags
