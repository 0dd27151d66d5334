"""Rated short answers per prompt, from a known scoring rubric, for the short-answer scorer
(edumlops.ml.short_answer), its validation against human raters and its tests.

Each prompt has key concepts (each with a few ways to say it), a scale of 0..k whole points and
some words of the topic that earn nothing (misconceptions and restatements of the question). An
answer's true score is drawn first; the answer then names that many distinct key concepts
(k may be below the number of concepts: naming more than k still earns k), mixed with topic
words and filler, in a shuffled order, with some words misspelt. So the words carry the score
and TF-IDF on words and characters can learn it, misspellings included.

Human raters see the true score through noise: each rater is off by one point (up or down,
clipped to the scale) with probability `rater_error`. Rater 1 rates every answer; a second
rater rates a share of them (`second_rater_share`), else `score_2` is missing, as in e-rater
validation designs where a sample is double-scored.

A sensitive group column (`group`, home language by default) is drawn independently of the
true score and of the words: a model reading the text cannot tell the groups apart. A planted
`RaterBias(group, shift)` moves both human scores of that group's answers by `shift` points
(clipped to the scale), while `true_score` stays unbiased; a model trained on the biased human
scores cannot learn the bias from the text, so its scores differ from the human ones in that
group, which is what the standardized mean difference per group finds.

Everything is drawn from one `numpy.random.Generator` seeded with `seed`: the same arguments give
the same frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Prompt:
    """A short-answer question and its rubric: one point per distinct key concept, up to
    `points`. `concepts` lists each concept's ways of saying it (one or more words each)."""

    prompt_id: str
    question: str
    concepts: tuple[tuple[str, ...], ...]
    topic_words: tuple[str, ...]
    points: int = 3

    def __post_init__(self) -> None:
        if self.points < 1:
            raise ValueError(f"Prompt {self.prompt_id!r}: points must be 1 or more.")
        if len(self.concepts) < self.points:
            raise ValueError(
                f"Prompt {self.prompt_id!r} has {len(self.concepts)} key concept(s) for "
                f"{self.points} points: give at least as many concepts as points."
            )


@dataclass(frozen=True)
class RaterBias:
    """Human scores of `group`'s answers moved by `shift` whole points (negative: harsher),
    clipped to the scale, on a `share` of that group's answers (1.0: all of them)."""

    group: str
    shift: int = -1
    share: float = 1.0

    def __post_init__(self) -> None:
        if int(self.shift) != self.shift or self.shift == 0:
            raise ValueError(
                f"RaterBias shift must be a whole number of points other than 0, "
                f"not {self.shift!r}."
            )
        if not 0 < self.share <= 1:
            raise ValueError(f"RaterBias share must be in (0, 1], not {self.share!r}.")


PROMPTS: dict[str, Prompt] = {
    p.prompt_id: p
    for p in (
        Prompt(
            "photosynthesis",
            "Explain how a plant makes its food.",
            (
                ("sunlight", "light energy", "energy from the sun"),
                ("chlorophyll", "green pigment"),
                ("carbon dioxide", "co2"),
                ("water", "water from the roots"),
                ("glucose", "sugar"),
                ("oxygen released", "gives off oxygen"),
            ),
            ("plant", "leaf", "leaves", "food", "soil", "grow", "makes", "eats", "nutrients"),
        ),
        Prompt(
            "water_cycle",
            "Describe how water moves through the water cycle.",
            (
                ("evaporation", "evaporates"),
                ("condensation", "condenses", "clouds form"),
                ("precipitation", "rain", "snow"),
                ("collection", "runoff", "rivers and oceans"),
                ("heat from the sun", "sun heats"),
                ("transpiration", "plants release vapour"),
            ),
            ("water", "cycle", "sky", "ground", "goes", "up", "down", "weather", "wet"),
        ),
        Prompt(
            "fractions",
            "Why is one half bigger than one third?",
            (
                ("equal parts", "same size pieces"),
                ("denominator", "bottom number"),
                ("fewer pieces", "less parts"),
                ("each piece is bigger", "larger pieces"),
                ("same whole", "same size whole"),
                ("numerator", "top number"),
            ),
            ("half", "third", "bigger", "number", "fraction", "pizza", "cut", "more", "two"),
        ),
        Prompt(
            "democracy",
            "What makes a country a democracy?",
            (
                ("elections", "people vote", "voting"),
                ("representatives", "elected leaders"),
                ("rule of law", "laws apply to everyone"),
                ("free speech", "freedom of expression"),
                ("rights protected", "human rights"),
                ("peaceful transfer", "leaders can be replaced"),
            ),
            ("country", "government", "king", "power", "people", "rules", "nation", "state"),
        ),
    )
}

FILLER = (
    "i", "think", "the", "a", "it", "is", "because", "and", "so", "they", "that", "this",
    "when", "then", "also", "of", "in", "to", "we", "learned", "really", "some", "very", "like",
    "basically", "which", "there", "are", "be", "can", "has", "with", "from", "what",
)  # fmt: skip
DEFAULT_GROUPS: dict[str, float] = {"english": 0.7, "other_language": 0.3}


def _misspell(word: str, rng: np.random.Generator) -> str:
    """One typo: two letters swapped, a letter dropped or a letter doubled."""
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _prompts(prompts: int | Sequence[str | Prompt]) -> list[Prompt]:
    if isinstance(prompts, int):
        if not 1 <= prompts <= len(PROMPTS):
            raise ValueError(
                f"prompts must be between 1 and {len(PROMPTS)} built-in prompts, or a list of "
                f"prompt ids ({', '.join(PROMPTS)}) or Prompt objects; got {prompts}."
            )
        return list(PROMPTS.values())[:prompts]
    chosen = []
    for p in prompts:
        if isinstance(p, Prompt):
            chosen.append(p)
        elif p in PROMPTS:
            chosen.append(PROMPTS[p])
        else:
            raise ValueError(
                f"Unknown prompt {p!r}: use one of {', '.join(PROMPTS)} or pass a Prompt."
            )
    if not chosen:
        raise ValueError("prompts is empty: name at least one prompt.")
    return chosen


def simulate_answers(
    prompts: int | Sequence[str | Prompt] = 2,
    answers_per_prompt: int = 300,
    seed: int = 0,
    rater_bias: RaterBias | None = None,
    second_rater_share: float = 0.3,
    *,
    groups: Mapping[str, float] | None = None,
    rater_error: float = 0.25,
    misspell_rate: float = 0.08,
    filler: tuple[int, int] = (3, 10),
    score_weights: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Rated short answers: one row per answer with answer_id, student_id, prompt_id, text,
    group, true_score, score_1 (human rater 1), score_2 (a second rater, or missing: pandas
    Int64 with NA), points (the prompt's top score).

    `filler` is the range of filler words per answer (raise it to make answers longer);
    `score_weights` the chances of the true scores 0..k (uniform by default)."""
    chosen = _prompts(prompts)
    groups = dict(DEFAULT_GROUPS if groups is None else groups)
    if answers_per_prompt < 1:
        raise ValueError(f"answers_per_prompt must be 1 or more, not {answers_per_prompt}.")
    if not 0 <= second_rater_share <= 1:
        raise ValueError(f"second_rater_share must be in [0, 1], not {second_rater_share}.")
    if not 0 <= rater_error <= 1 or not 0 <= misspell_rate <= 1:
        raise ValueError("rater_error and misspell_rate are chances: keep them in [0, 1].")
    if not groups or any(w < 0 for w in groups.values()) or sum(groups.values()) <= 0:
        raise ValueError(
            "groups must map each group name to a positive share, e.g. "
            "{'english': 0.7, 'other_language': 0.3}."
        )
    if rater_bias is not None and rater_bias.group not in groups:
        raise ValueError(
            f"RaterBias names the group {rater_bias.group!r}, which is not one of the groups "
            f"({', '.join(groups)}): name one of them."
        )
    low, high = filler
    if not 0 <= low <= high:
        raise ValueError(f"filler must be a range (low, high) with 0 <= low <= high, not {filler}.")

    rng = np.random.default_rng(seed)
    names = list(groups)
    shares = np.array([groups[g] for g in names], dtype=float)
    shares /= shares.sum()
    rows = []
    student = 0
    for prompt in chosen:
        k = prompt.points
        weights = np.ones(k + 1) if score_weights is None else np.asarray(score_weights, float)
        if len(weights) != k + 1 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"score_weights needs {k + 1} non-negative chances (scores 0..{k}).")
        weights = weights / weights.sum()
        for _ in range(answers_per_prompt):
            true = int(rng.choice(k + 1, p=weights))
            # a full-marks answer may name an extra concept; the score stays k
            named = true + int(true == k and len(prompt.concepts) > k and rng.random() < 0.3)
            which = rng.choice(len(prompt.concepts), size=named, replace=False)
            pieces = [prompt.concepts[c][int(rng.integers(len(prompt.concepts[c])))] for c in which]
            pieces += list(rng.choice(prompt.topic_words, size=int(rng.integers(1, 4))))
            pieces += list(rng.choice(FILLER, size=int(rng.integers(low, high + 1))))
            rng.shuffle(pieces)
            words = " ".join(pieces).split()
            words = [
                _misspell(w, rng) if len(w) >= 4 and rng.random() < misspell_rate else w
                for w in words
            ]
            group = names[int(rng.choice(len(names), p=shares))]
            rows.append(
                {
                    "answer_id": f"{prompt.prompt_id}-{len(rows):05d}",
                    "student_id": f"s{student:05d}",
                    "prompt_id": prompt.prompt_id,
                    "text": " ".join(words),
                    "group": group,
                    "true_score": true,
                    "points": k,
                }
            )
            student += 1
    frame = pd.DataFrame(rows)
    n = len(frame)
    true = frame["true_score"].to_numpy()
    top = frame["points"].to_numpy()

    def rate() -> np.ndarray:
        off = rng.random(n) < rater_error
        step = np.where(rng.random(n) < 0.5, -1, 1)
        return np.clip(true + off * step, 0, top)

    score_1, score_2 = rate(), rate()
    double = rng.random(n) < second_rater_share
    if rater_bias is not None:
        hit = (frame["group"].to_numpy() == rater_bias.group) & (rng.random(n) < rater_bias.share)
        score_1 = np.where(hit, np.clip(score_1 + rater_bias.shift, 0, top), score_1)
        score_2 = np.where(hit, np.clip(score_2 + rater_bias.shift, 0, top), score_2)
    frame["score_1"] = score_1.astype(np.int64)
    frame["score_2"] = pd.array(np.where(double, score_2, 0), dtype="Int64")
    frame.loc[~double, "score_2"] = pd.NA
    return frame[
        [
            "answer_id", "student_id", "prompt_id", "text", "group",
            "true_score", "score_1", "score_2", "points",
        ]
    ]  # fmt: skip
