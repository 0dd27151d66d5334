"""Knowledge tracing for adaptive practice: Bayesian Knowledge Tracing (BKT) fitted with pyBKT,
served and checked without it.

BKT (Corbett & Anderson 1995) follows one hidden state per student and skill, mastered or not,
with five probabilities per skill: `prior` (mastered before the first answer), `learn` (not
mastered → mastered after an answer), `forget` (mastered → not; 0 in classic BKT), `guess`
(correct while not mastered) and `slip` (wrong while mastered).

- `simulate_answers` draws answer logs from a known ground truth (`random_ground_truth` draws a
  plausible one), so tests can check that fitting recovers what was planted.
- `fit_bkt` fits the parameters with pyBKT's EM and keeps them in a `BKTModel`, plain numbers
  that go to JSON and back. Nothing after fitting needs pyBKT.
- `predict_answers` runs the BKT forward filter over answer logs: P(correct) before each answer
  from the answers before it, what pyBKT's one-step prediction gives.
- `mastery` is the serving core: P(mastered) per skill after one student's answers, and the
  next skill to practise.

Validation on held-out students and the monitors (parameter drift, too easy/too hard skills) are
in edumlops.ml.knowledge_tracing_checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PARAMETERS = ("prior", "learn", "guess", "slip", "forget")
FORMAT = 1  # the version of BKTModel.to_dict()


@dataclass(frozen=True)
class BKTParams:
    """The five BKT probabilities of one skill."""

    prior: float
    learn: float
    guess: float
    slip: float
    forget: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAMETERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"BKT parameter {name} must be a number, not {value!r}.")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(
                    f"BKT parameter {name}={value!r} is not a probability: give a number "
                    "between 0 and 1."
                )
            object.__setattr__(self, name, float(value))

    @property
    def degenerate(self) -> bool:
        """A student who has not mastered the skill answers right at least as often as one who
        has (guess >= 1 - slip): a right answer does not raise P(mastered)."""
        return self.guess >= 1.0 - self.slip

    def p_correct(self, p_mastered: float) -> float:
        """P(correct answer) for a student mastered with probability `p_mastered`."""
        return p_mastered * (1.0 - self.slip) + (1.0 - p_mastered) * self.guess

    def update(self, p_mastered: float, correct: bool) -> float:
        """P(mastered) before the next answer, after one answer: Bayes' rule on the answer, then
        the chance to learn (or forget)."""
        if correct:
            evidence = p_mastered * (1.0 - self.slip)
            total = self.p_correct(p_mastered)
        else:
            evidence = p_mastered * self.slip
            total = 1.0 - self.p_correct(p_mastered)
        posterior = evidence / total if total > 0.0 else p_mastered
        return posterior * (1.0 - self.forget) + (1.0 - posterior) * self.learn

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BKTParams:
        missing = [p for p in PARAMETERS[:4] if p not in data]
        if missing:
            raise ValueError(
                f"BKT parameters lack {', '.join(missing)}: give prior, learn, guess, slip "
                "(and forget, 0 if left out)."
            )
        return cls(**{p: data[p] for p in PARAMETERS if p in data})


# --- generated answer logs -----------------------------------------------------------------------


def _skill_names(skills: int | Sequence[str]) -> list[str]:
    if isinstance(skills, int):
        if skills < 1:
            raise ValueError(f"Ask for at least one skill, not {skills}.")
        return [f"skill {i + 1}" for i in range(skills)]
    names = [str(s) for s in skills]
    if not names or len(set(names)) != len(names):
        raise ValueError("Give at least one skill name, each once.")
    return names


def random_ground_truth(skills: int | Sequence[str], seed: int = 0) -> dict[str, BKTParams]:
    """A plausible BKT truth per skill ('skill 1', 'skill 2' ... for an int): prior 0.1–0.5,
    learn 0.05–0.4, guess 0.05–0.25, slip 0.05–0.25, no forgetting. Guess and slip stay below
    the bounds item_difficulty_check applies, so a drawn truth is never "too easy/too hard"."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in _skill_names(skills):
        prior, learn, guess, slip = rng.uniform([0.1, 0.05, 0.05, 0.05], [0.5, 0.4, 0.25, 0.25])
        out[name] = BKTParams(prior=prior, learn=learn, guess=guess, slip=slip)
    return out


def simulate_answers(
    skills: Mapping[str, BKTParams] | int,
    students: int,
    answers_per_skill: int | tuple[int, int],
    seed: int = 0,
    *,
    items_per_skill: int = 5,
) -> pd.DataFrame:
    """Answer logs drawn from a BKT ground truth.

    `skills` is the truth per skill, or a number of skills whose truth is
    `random_ground_truth(skills, seed)` (call it with the same seed to know the truth).
    Each student answers each skill `answers_per_skill` times (or a number drawn from the
    inclusive range `(low, high)`), the skills interleaved at random. Columns: `student`,
    `skill`, `item` (one of `items_per_skill` items per skill; items share their skill's
    parameters), `order` (0, 1, ... per student), `correct` (0/1) and `mastered` (the hidden
    state when answering: the ground truth a real log never has).
    """
    truth = random_ground_truth(skills, seed) if isinstance(skills, int) else dict(skills)
    if not truth or not all(isinstance(p, BKTParams) for p in truth.values()):
        raise ValueError("Give the ground truth as {skill name: BKTParams}, or a number of skills.")
    if students < 1:
        raise ValueError(f"Ask for at least one student, not {students}.")
    if isinstance(answers_per_skill, int):
        low = high = answers_per_skill
    else:
        low, high = answers_per_skill
    if not 1 <= low <= high:
        raise ValueError(
            f"answers_per_skill must be a positive number or a range (low, high) with "
            f"1 <= low <= high, not {answers_per_skill!r}."
        )
    if items_per_skill < 1:
        raise ValueError(f"items_per_skill must be at least 1, not {items_per_skill}.")
    rng = np.random.default_rng([seed, 1])  # another stream than random_ground_truth(seed)
    parts = []
    for name, params in truth.items():
        lengths = rng.integers(low, high + 1, size=students)
        state = rng.random(students) < params.prior
        for t in range(int(lengths.max())):
            who = np.flatnonzero(lengths > t)
            right = np.where(state[who], 1.0 - params.slip, params.guess)
            correct = rng.random(len(who)) < right
            parts.append(
                pd.DataFrame(
                    {
                        "student": who,
                        "skill": name,
                        "item": rng.integers(0, items_per_skill, size=len(who)),
                        # a time inside slot t of lengths[who] slots keeps each skill's order
                        "time": (t + rng.random(len(who))) / lengths[who],
                        "correct": correct.astype(np.int64),
                        "mastered": state[who].astype(np.int64),
                    }
                )
            )
            moved = rng.random(students)
            state = np.where(state, moved >= params.forget, moved < params.learn)
    frame = pd.concat(parts, ignore_index=True).sort_values(["student", "time"], kind="stable")
    frame["order"] = frame.groupby("student").cumcount()
    width = len(str(students))
    frame["student"] = [f"student {i:0{width}d}" for i in frame["student"]]
    frame["item"] = frame["skill"] + " item " + (frame["item"] + 1).astype(str)
    columns = ["student", "skill", "item", "order", "correct", "mastered"]
    return frame[columns].reset_index(drop=True)


# --- checked answer logs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Which columns of an answer log hold the student, the skill, correctness and the order."""

    student: str = "student"
    skill: str = "skill"
    correct: str = "correct"
    order: str = "order"


def _answers(frame: Any, cols: Columns) -> pd.DataFrame:
    """The log as student, skill, correct (0/1), order and row (its position in `frame`), sorted
    by student, order and row (ties keep the log's order), with the frame's index. Refuses what
    BKT cannot read."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"Answers must be a pandas DataFrame, not {type(frame).__name__}.")
    roles = asdict(cols)
    missing = [f"'{name}' ({role})" for role, name in roles.items() if name not in frame.columns]
    if missing:
        raise ValueError(
            f"The answers lack the column(s) {', '.join(missing)}; they have "
            f"{', '.join(map(str, frame.columns)) or 'none'}. Name yours with "
            "student=, skill=, correct= and order=."
        )
    if frame.empty:
        raise ValueError("There are no answers: give at least one row.")
    for role in ("student", "skill", "order"):
        empty = int(frame[roles[role]].isna().sum())
        if empty:
            raise ValueError(
                f"{empty} answer(s) have no {role} (column '{roles[role]}'): drop or fill them."
            )
    order = frame[cols.order]
    if not (pd.api.types.is_numeric_dtype(order) or pd.api.types.is_datetime64_any_dtype(order)):
        raise ValueError(
            f"The order column '{cols.order}' must hold numbers or timestamps, not {order.dtype}: "
            "convert it (pd.to_datetime or pd.to_numeric)."
        )
    correct = frame[cols.correct]
    numeric = pd.to_numeric(correct, errors="coerce") if correct.dtype != bool else correct
    bad = ~numeric.isin([0, 1])
    if bad.any():
        shown = ", ".join(repr(v) for v in pd.unique(correct[bad])[:5])
        raise ValueError(
            f"Correctness (column '{cols.correct}') must be 0 or 1 (or true/false); "
            f"{int(bad.sum())} answer(s) have {shown}. Turn scores into 0/1 first, e.g. "
            "(score >= 40)."
        )
    out = pd.DataFrame(
        {
            "student": frame[cols.student].astype(str),
            "skill": frame[cols.skill].astype(str),
            "correct": numeric.astype(np.int64),
            "order": order,
            "row": np.arange(len(frame)),
        },
        index=frame.index,
    )
    return out.sort_values(["student", "order", "row"], kind="stable")


def _check_trainable(answers: pd.DataFrame, min_answers: int) -> dict[str, dict[str, int]]:
    """Answers and students per skill; refuses skills BKT cannot be fitted on."""
    counts = answers.groupby("skill").agg(
        answers=("correct", "size"), students=("student", "nunique"), right=("correct", "sum")
    )
    few = counts[counts["answers"] < min_answers]
    if len(few):
        listed = ", ".join(f"'{s}' ({n} answers)" for s, n in few["answers"].items())
        raise ValueError(
            f"Too few answers to fit BKT (at least {min_answers} per skill): {listed}. Collect "
            "more answers, merge the skill into a broader one, drop it, or lower min_answers."
        )
    one_sided = counts[(counts["right"] == 0) | (counts["right"] == counts["answers"])]
    if len(one_sided):
        listed = ", ".join(
            f"'{s}' (all {'correct' if r else 'wrong'})" for s, r in one_sided["right"].items()
        )
        raise ValueError(
            f"Skills whose answers are all alike cannot be traced: {listed}. BKT needs both "
            "correct and wrong answers to tell guessing and slipping from mastery: drop them."
        )
    return {
        str(s): {"answers": int(row.answers), "students": int(row.students)}
        for s, row in counts.iterrows()
    }


# --- fitting with pyBKT --------------------------------------------------------------------------


@dataclass
class BKTModel:
    """Fitted BKT parameters per skill, as plain numbers: stored as JSON, served without pyBKT."""

    skills: dict[str, BKTParams]
    forgets: bool = False
    trained_on: dict[str, dict[str, int]] = field(default_factory=dict)  # answers, students
    info: dict[str, Any] = field(default_factory=dict)  # library, version, seed, num_fits ...

    def params(self, skill: str) -> BKTParams:
        """One skill's parameters; an unknown skill is refused with the list of known ones."""
        try:
            return self.skills[skill]
        except KeyError:
            raise ValueError(
                f"Unknown skill '{skill}': this model knows {_listing(self.skills)}."
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "bkt",
            "forgets": self.forgets,
            "skills": {name: p.to_dict() for name, p in self.skills.items()},
            "trained_on": self.trained_on,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BKTModel:
        if not isinstance(data, Mapping) or data.get("kind") != "bkt":
            raise ValueError('This is not a stored BKT model: it has no "kind": "bkt".')
        if data.get("format") != FORMAT:
            raise ValueError(
                f"Stored BKT model format {data.get('format')!r} is not {FORMAT}: refit the model."
            )
        skills = data.get("skills")
        if not isinstance(skills, Mapping) or not skills:
            raise ValueError('A stored BKT model needs "skills": {name: parameters}.')
        return cls(
            skills={str(k): BKTParams.from_dict(v) for k, v in skills.items()},
            forgets=bool(data.get("forgets", False)),
            trained_on={str(k): dict(v) for k, v in (data.get("trained_on") or {}).items()},
            info=dict(data.get("info") or {}),
        )


def _listing(names: Iterable[str], limit: int = 20) -> str:
    names = sorted(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def fit_bkt(
    frame: pd.DataFrame,
    *,
    student: str = "student",
    skill: str = "skill",
    correct: str = "correct",
    order: str = "order",
    forgets: bool = False,
    seed: int = 0,
    num_fits: int = 5,
    min_answers: int = 30,
    parallel: bool = False,
) -> BKTModel:
    """Fits BKT per skill with pyBKT and returns the parameters as a `BKTModel`: EM from
    `num_fits` random starts, the start with the best log-likelihood kept; `forgets=True` also
    fits a forget rate.

    Answers are ordered per student by `order`, ties in the log's row order. A skill needs
    `min_answers` answers, some correct and some wrong. `parallel` is pyBKT's own: it starts a
    process pool for every EM iteration, which costs more than it saves on small logs.

    The steps are pyBKT's own, driven one level below `pyBKT.models.Model.fit`, which cannot
    run here: with scikit-learn 1.9 `pyBKT.models` does not import (pyBKT 1.4.3 calls every
    scikit-learn function named *_loss, *_score or *_error on two lists at import, and the
    private `_log_loss` raises AttributeError where pyBKT expects TypeError), and with NumPy 2.4
    `EM_fit.EM_fit` fails storing its (1, 1) log-likelihood array as a scalar. So this
    function does what `Model.fit` does — pyBKT's data conversion, its random starts drawn from
    `RandomState(seed)`, the best of `num_fits` — and `_em` does what `EM_fit.EM_fit` does with
    pyBKT's E-step (`EM_fit.run`) and M-step (`M_step.run`).
    """
    from pyBKT.generate import random_model_uni
    from pyBKT.util import check_data

    if num_fits < 1:
        raise ValueError(f"num_fits must be at least 1, not {num_fits}.")
    answers = _answers(frame, Columns(student, skill, correct, order))
    trained_on = _check_trainable(answers, min_answers)
    started = time.perf_counter()
    rand = np.random.RandomState(seed)  # what Model(seed=seed) draws its starts from
    skills, likelihood = {}, {}
    for name, data in _pybkt_data(answers).items():
        check_data.check_data(data)
        best, best_ll = None, -math.inf
        for _ in range(num_fits):
            start = random_model_uni.random_model_uni(1, 1, rand=rand)
            if forgets:
                start["forgets"] = rand.uniform(size=start["forgets"].shape)
            fitted, log_likelihood = _em(start, data, parallel)
            if log_likelihood > best_ll:
                best, best_ll = fitted, log_likelihood
        found = {
            "prior": best["pi_0"][1][0],
            "learn": best["As"][0, 1, 0],
            "forget": best["As"][0, 0, 1],
            "guess": best["guesses"][0],
            "slip": best["slips"][0],
        }
        # EM's arithmetic can land a hair outside [0, 1]
        skills[name] = BKTParams(**{k: min(max(float(v), 0.0), 1.0) for k, v in found.items()})
        likelihood[name] = round(best_ll, 4)
    seconds = time.perf_counter() - started
    return BKTModel(
        skills={name: skills[name] for name in trained_on},
        forgets=forgets,
        trained_on=trained_on,
        info={
            "library": "pyBKT",
            "version": _version("pyBKT"),
            "seed": seed,
            "num_fits": num_fits,
            "answers": len(answers),
            "students": int(answers["student"].nunique()),
            "log_likelihood": {name: likelihood[name] for name in trained_on},
            "fit_seconds": round(seconds, 3),
        },
    )


def _em(
    model: dict[str, Any],
    data: dict[str, Any],
    parallel: bool,
    tol: float = 0.005,
    max_iter: int = 100,
) -> tuple[dict[str, Any], float]:
    """pyBKT's `EM_fit.EM_fit` with its defaults (stop when the log-likelihood moves by at most
    `tol`, after at least three E-steps): pyBKT's E-step and M-step, the log-likelihood read
    as a number."""
    from pyBKT.fit import EM_fit, M_step

    counts = {
        "all_trans_softcounts": np.zeros((1, 2, 2)),
        "all_emission_softcounts": np.zeros((1, 2, 2)),
        "all_initial_softcounts": np.zeros((2, 1)),
    }
    previous = log_likelihood = -math.inf
    for i in range(max_iter):
        counts = EM_fit.run(
            data,
            model,
            counts["all_trans_softcounts"],
            counts["all_emission_softcounts"],
            counts["all_initial_softcounts"],
            1,
            parallel,
            fixed={},
        )
        for key in ("all_trans_softcounts", "all_emission_softcounts"):
            counts[key][0] = counts[key][0].transpose()
        log_likelihood = float(np.asarray(counts["total_loglike"]).reshape(-1)[0])
        if i > 1 and abs(log_likelihood - previous) <= tol:
            break
        previous = log_likelihood
        model = M_step.run(
            model,
            counts["all_trans_softcounts"],
            counts["all_emission_softcounts"],
            counts["all_initial_softcounts"],
            fixed={},
        )
    return model, log_likelihood


def _pybkt_data(answers: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The checked answers as pyBKT's arrays per skill (its own `convert_data`), under its
    default column names. A unique integer order keeps ours: pyBKT sorts by order_id with an
    unstable sort, then by student."""
    from pyBKT.util import data_helper

    data = pd.DataFrame(
        {
            "user_id": answers["student"].to_numpy(),
            "skill_name": answers["skill"].to_numpy(),
            "correct": answers["correct"].to_numpy(),
            "order_id": np.arange(len(answers)),
        }
    )
    defaults = {name: name for name in data.columns}
    # convert_data sets a pandas option for good: the context puts it back
    with pd.option_context("mode.chained_assignment", "warn"):
        return data_helper.convert_data(data, ".*", defaults=defaults, model_type=[False] * 4)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# --- the forward filter --------------------------------------------------------------------------


def predict_answers(
    model: BKTModel,
    frame: pd.DataFrame,
    *,
    student: str = "student",
    skill: str = "skill",
    correct: str = "correct",
    order: str = "order",
) -> pd.DataFrame:
    """Each answer's prediction from the answers before it (same student and skill):
    `p_mastered`, P(mastered) just before the answer, and `p_correct` = P(mastered)(1 - slip) +
    (1 - P(mastered)) guess. The same numbers as pyBKT's `predict` (its `state_predictions` and
    `correct_predictions`). Returns student, skill, correct, order and the two predictions, in
    the frame's row order with its index."""
    answers = _answers(frame, Columns(student, skill, correct, order))
    unknown = sorted(set(answers["skill"]) - set(model.skills))
    if unknown:
        raise ValueError(
            f"The answers name skills this model was not trained on: {_listing(unknown)}. It "
            f"knows {_listing(model.skills)}: drop those answers or retrain with them."
        )
    p_mastered = np.empty(len(answers))
    for name, rows in answers.groupby("skill", sort=False).indices.items():
        part = answers.iloc[rows]
        sequence = part["student"].factorize()[0]
        step = part.groupby("student", sort=False).cumcount().to_numpy()
        p_mastered[rows] = _forward(model.skills[name], sequence, step, part["correct"].to_numpy())
    guess = answers["skill"].map({n: p.guess for n, p in model.skills.items()}).to_numpy()
    slip = answers["skill"].map({n: p.slip for n, p in model.skills.items()}).to_numpy()
    out = pd.DataFrame(
        {
            student: answers["student"],
            skill: answers["skill"],
            correct: answers["correct"],
            order: answers["order"],
            "p_mastered": p_mastered,
            "p_correct": p_mastered * (1.0 - slip) + (1.0 - p_mastered) * guess,
        },
        index=answers.index,
    )
    return out.iloc[np.argsort(answers["row"].to_numpy())]


def _forward(
    params: BKTParams, sequence: np.ndarray, step: np.ndarray, correct: np.ndarray
) -> np.ndarray:
    """P(mastered) before each answer of one skill: all students' t-th answers at once."""
    state = np.full(int(sequence.max()) + 1, params.prior)
    out = np.empty(len(sequence))
    by_step = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[by_step], np.arange(int(step.max()) + 2))
    for t in range(len(bounds) - 1):
        rows = by_step[bounds[t] : bounds[t + 1]]
        who = sequence[rows]
        known = state[who]
        out[rows] = known
        right = correct[rows] == 1
        p_right = known * (1.0 - params.slip) + (1.0 - known) * params.guess
        evidence = np.where(right, known * (1.0 - params.slip), known * params.slip)
        total = np.where(right, p_right, 1.0 - p_right)
        with np.errstate(divide="ignore", invalid="ignore"):
            posterior = np.where(total > 0.0, evidence / total, known)
        state[who] = posterior * (1.0 - params.forget) + (1.0 - posterior) * params.learn
    return out


# --- serving: mastery and the next skill ---------------------------------------------------------


def mastery(model: BKTModel, answers: Sequence[Any], *, threshold: float = 0.95) -> dict[str, Any]:
    """One student's mastery after `answers`, in the order given: pairs (skill, correct) or
    objects {"skill": ..., "correct": ...}, correct being 0/1 or true/false.

    Returns {"skills": {skill: {"p_mastered", "mastered", "answers", "p_correct_next"}},
    "threshold", "next_skill", "reason"}, every skill of the model included (an unanswered one
    at its prior). `mastered` is P(mastered) >= threshold (0.95, the usual mastery criterion of
    Cognitive Tutors).

    The next skill is the unmastered one where one more practice answer is expected to raise
    P(mastered) most: whatever the answer, P(mastered) after it averages to
    P + (1 - P) learn - P forget, so the expected gain is (1 - P) learn - P forget. Ties go to
    the lower P(mastered), then to the name. Skills with degenerate parameters (guess >=
    1 - slip: their answers cannot show mastery) are never suggested. None when no skill is
    left to suggest.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold}.")
    state = {name: p.prior for name, p in model.skills.items()}
    seen = dict.fromkeys(model.skills, 0)
    for position, answer in enumerate(answers, start=1):
        name, right = _answer(answer, position)
        params = model.params(name)
        state[name] = params.update(state[name], right)
        seen[name] += 1
    skills = {
        name: {
            "p_mastered": p,
            "mastered": p >= threshold,
            "answers": seen[name],
            "p_correct_next": model.skills[name].p_correct(p),
        }
        for name, p in state.items()
    }
    open_skills = [n for n, p in state.items() if p < threshold]
    candidates = sorted(
        (
            -((1.0 - state[n]) * model.skills[n].learn - state[n] * model.skills[n].forget),
            state[n],
            n,
        )
        for n in open_skills
        if not model.skills[n].degenerate
    )
    if not candidates:
        reason = f"Every skill is mastered (P(mastered) >= {threshold:g})."
        if open_skills:
            reason = (
                f"Every skill that answers can measure is mastered (P(mastered) >= "
                f"{threshold:g}); {_listing(open_skills)} have degenerate parameters (guess >= "
                "1 - slip) and are not suggested."
            )
        return {"skills": skills, "threshold": threshold, "next_skill": None, "reason": reason}
    minus_gain, p_best, best = candidates[0]
    return {
        "skills": skills,
        "threshold": threshold,
        "next_skill": best,
        "reason": (
            f"'{best}' is not mastered yet (P(mastered) {p_best:.2f} < {threshold:g}) and one "
            f"more answer there is expected to raise mastery most (+{-minus_gain:.3f})."
        ),
    }


def _answer(answer: Any, position: int) -> tuple[str, bool]:
    if isinstance(answer, Mapping):
        if "skill" not in answer or "correct" not in answer:
            raise ValueError(f'Answer {position} needs "skill" and "correct".')
        name, right = answer["skill"], answer["correct"]
    elif isinstance(answer, Sequence) and not isinstance(answer, str) and len(answer) == 2:
        name, right = answer
    else:
        raise ValueError(
            f"Answer {position} must be a pair (skill, correct) or "
            f'{{"skill": ..., "correct": ...}}, not {answer!r}.'
        )
    if not isinstance(right, bool | int | float) or right not in (0, 1):
        raise ValueError(
            f"Answer {position} ('{name}'): correct must be 0 or 1 (or true/false), not {right!r}."
        )
    return str(name), bool(right)
