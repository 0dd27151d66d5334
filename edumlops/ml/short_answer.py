"""Short-answer scoring checked against human raters: the scorer, its ONNX export, its validation
the way e-rater is validated, and its monitors.

The scorer. Answers are normalized first (`normalize_text`: accents dropped, lower case, anything
but a-z and 0-9 made a space, spaces collapsed), by the same function before scikit-learn and
before ONNX Runtime, so both see the same characters. A scikit-learn Pipeline then joins two
TF-IDF vectorizers in a FeatureUnion, word n-grams (tokens `[a-z0-9]+`) and character n-grams
(`analyzer="char"`, spaces included: misspelt key words still share most of their characters),
and a multinomial logistic regression over the score points seen in training. The TF-IDF rows
are not length-normalized (`norm=None`): points add up with each key concept named, and dividing
by the answer's length would let filler words dilute them (on the generator's answers this lifts
QWK against the true score from about 0.75 to 0.83). The predicted
score is the point with the highest probability; the expected score (the probability-weighted
mean of the points) is reported beside it.

What the export needs (skl2onnx 1.20 with ONNX Runtime 1.32, checked by the parity test):

- `analyzer="char_wb"` has no converter; `"char"` has.
- `sublinear_tf=True` is converted as log(1 + tf) where scikit-learn computes 1 + log(tf): the
  scores drift apart on repeated words, so the scorer keeps raw term counts.
- `lowercase=True` adds a StringNormalizer node whose locale (en_US.UTF-8) many servers lack, and
  the session then fails to load; lower-casing happens in `normalize_text` instead.
- the word tokenizer is given to ONNX Runtime's Tokenizer as `tokenexp` (an re2 expression); the
  class `[a-z0-9]+` means the same in Python's re and in re2.

The export fails unless ONNX Runtime and scikit-learn agree on held-out answers: the same score
on every one, and probabilities within a tolerance (1e-4).

Validation (Williamson, Xi & Breyer 2012, "A framework for evaluation and use of automated
scoring", Educational Measurement: Issues and Practice 31(1)): quadratic weighted kappa (QWK),
exact and adjacent agreement and the correlation between machine and human scores; the same
between two human raters where both rated an answer (the ceiling); and standardized mean score
differences (SMD) overall and per sensitive group. `scoring_gate` applies their thresholds.

Monitors: answer length drift and vocabulary drift against the training answers, and the share
of answers the model is unsure about (top two score probabilities close), routed to a human.

scikit-learn, skl2onnx and onnxruntime are imported inside the functions that need them: importing
this module loads numpy and pandas only.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from edumlops.ml.drift import psi

NORMALIZATION = "ascii-lower-alnum-v1"
TOKEN_PATTERN = r"[a-z0-9]+"
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_TOKEN = re.compile(TOKEN_PATTERN)


class ScoringError(ValueError):
    """Bad input to the scorer, its export or its validation; the message says how to fix it."""


class ParityError(ScoringError):
    """ONNX Runtime and scikit-learn disagree on the exported scorer."""


def normalize_text(text: Any) -> str:
    """The answer as both scikit-learn and ONNX Runtime read it: accents dropped, lower case,
    every run of characters other than a-z and 0-9 made one space, no space at either end."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    plain = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALNUM.sub(" ", plain.lower()).strip()


def tokens(text: str) -> list[str]:
    """The word tokens of a (normalized) answer."""
    return _TOKEN.findall(normalize_text(text))


# --- input -------------------------------------------------------------------------------------
@dataclass
class Answers:
    """Validated answers: normalized texts, whole-point scores, the scale (lowest, highest) and,
    when asked for, the second rater's scores (NaN where there is none) and the groups."""

    texts: list[str]
    scores: np.ndarray
    scale: tuple[int, int]
    frame: pd.DataFrame
    second_scores: np.ndarray | None = None
    groups: np.ndarray | None = None


def _whole_points(values: pd.Series, column: str, allow_missing: bool) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        example = values[bad].iloc[0]
        raise ScoringError(
            f"Column {column!r} has {int(bad.sum())} value(s) that are not numbers (e.g. "
            f"{example!r}): scores must be whole points such as 0, 1, 2."
        )
    if not allow_missing and numbers.isna().any():
        raise ScoringError(
            f"Column {column!r} is empty in {int(numbers.isna().sum())} row(s): every answer "
            "needs a human score; drop the unrated answers or score them first."
        )
    array = numbers.to_numpy(dtype=float, na_value=np.nan)
    fractional = ~np.isnan(array) & (array != np.round(array))
    if fractional.any():
        raise ScoringError(
            f"Column {column!r} has {int(fractional.sum())} score(s) that are not whole points "
            f"(e.g. {array[fractional][0]:g}): round or re-rate them to whole points."
        )
    return array


def prepare_answers(
    frame: pd.DataFrame,
    text: str = "text",
    score: str = "score_1",
    *,
    scale: tuple[int, int] | None = None,
    second_score: str | None = None,
    group: str | None = None,
) -> Answers:
    """Check a frame of rated answers and normalize its texts. `scale` is the lowest and highest
    score point (default: the lowest and highest score seen). Raises ScoringError naming the
    problem and the fix: a missing column, an empty answer, a score that is not a whole point
    or outside the scale, fewer than two different scores."""
    if not isinstance(frame, pd.DataFrame):
        raise ScoringError(f"prepare_answers needs a pandas DataFrame, not {type(frame).__name__}.")
    needed = [c for c in (text, score, second_score, group) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ScoringError(
            f"The answers have no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(map(str, frame.columns))}): name the answer text and score columns."
        )
    if len(frame) == 0:
        raise ScoringError("There are no answers: the frame has no rows.")
    frame = frame.reset_index(drop=True)
    texts = [normalize_text(t) for t in frame[text]]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise ScoringError(
            f"{len(empty)} answer(s) in column {text!r} are empty or have no letters or digits "
            f"(first at row {empty[0]}): drop them, or score them 0 outside the model."
        )
    scores = _whole_points(frame[score], score, allow_missing=False).astype(np.int64)
    second = None
    if second_score is not None:
        second = _whole_points(frame[second_score], second_score, allow_missing=True)
    if scale is None:
        low, high = int(scores.min()), int(scores.max())
        if second is not None and (~np.isnan(second)).any():
            low, high = min(low, int(np.nanmin(second))), max(high, int(np.nanmax(second)))
    else:
        low, high = (int(scale[0]), int(scale[1]))
        if low >= high:
            raise ScoringError(f"scale must be (lowest, highest) with lowest < highest: {scale}.")
        for name, values in ((score, scores), (second_score, second)):
            if values is None:
                continue
            outside = ~np.isnan(values.astype(float)) & ((values < low) | (values > high))
            if outside.any():
                raise ScoringError(
                    f"Column {name!r} has {int(outside.sum())} score(s) outside the scale "
                    f"{low}..{high} (e.g. {values[outside][0]:g}): fix them or widen the scale."
                )
    if len(np.unique(scores)) < 2:
        raise ScoringError(
            f"Every answer in column {score!r} has the score {scores[0]}: a scorer needs answers "
            "with at least two different scores."
        )
    groups = None if group is None else frame[group].astype(str).to_numpy()
    return Answers(texts, scores, (low, high), frame, second, groups)


# --- the scorer --------------------------------------------------------------------------------
@dataclass
class Scores:
    """Scores of a list of answers: `scores` the most likely point, `expected` the
    probability-weighted mean point, `probabilities` one column per point in `points`."""

    scores: np.ndarray
    expected: np.ndarray
    probabilities: np.ndarray
    points: np.ndarray


def _scores(probabilities: np.ndarray, points: np.ndarray) -> Scores:
    probabilities = np.asarray(probabilities, dtype=float)
    return Scores(
        scores=points[probabilities.argmax(axis=1)],
        expected=probabilities @ points.astype(float),
        probabilities=probabilities,
        points=points,
    )


def _texts(texts: Iterable[Any]) -> list[str]:
    if isinstance(texts, str):
        raise ScoringError("Pass a list of answers, not one string: e.g. [answer].")
    return [normalize_text(t) for t in texts]


@dataclass
class Scorer:
    """A trained scorer: the scikit-learn pipeline, the scale, the points it can give (those seen
    in training), its word vocabulary, the training answers' lengths (in words) and the seconds
    the fit took."""

    pipeline: Any
    scale: tuple[int, int]
    points: np.ndarray
    vocabulary: frozenset[str]
    train_lengths: np.ndarray
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    def score(self, texts: Iterable[Any]) -> Scores:
        return _scores(self.pipeline.predict_proba(_texts(texts)), self.points)

    def predict_proba(self, texts: Iterable[Any]) -> np.ndarray:
        return self.pipeline.predict_proba(_texts(texts))


def build_pipeline(
    *,
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] = (2, 4),
    min_df: int = 2,
    c: float = 1.0,
    max_iter: int = 300,
) -> Any:
    """The untrained pipeline: FeatureUnion of word and character TF-IDF, then a multinomial
    logistic regression (one softmax over all points). Its solver is newton-cg: on unnormalized
    TF-IDF lbfgs needs ten times the iterations and the time for the same fit (2,000 answers:
    about 1 s against 9 s on the CI machine, same held-out QWK)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    common = {
        "lowercase": False,
        "sublinear_tf": False,
        "norm": None,
        "min_df": min_df,
        "dtype": np.float32,
    }
    features = FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=word_ngrams, **common),
            ),
            ("chars", TfidfVectorizer(analyzer="char", ngram_range=char_ngrams, **common)),
        ]
    )
    model = LogisticRegression(C=c, max_iter=max_iter, solver="newton-cg")
    return Pipeline([("features", features), ("model", model)])


def train_scorer(
    texts: Sequence[Any],
    scores: Sequence[int] | np.ndarray,
    *,
    scale: tuple[int, int] | None = None,
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] = (2, 4),
    min_df: int = 2,
    c: float = 1.0,
    max_iter: int = 300,
) -> Scorer:
    """Fit the scorer on answers and their human scores (whole points; `prepare_answers` checks
    a frame). `c` is the inverse regularization strength of the logistic regression."""
    texts = _texts(texts)
    y = np.asarray(scores)
    if len(texts) != len(y):
        raise ScoringError(f"{len(texts)} answers but {len(y)} scores: give one score per answer.")
    if len(texts) == 0:
        raise ScoringError("There are no answers to train on.")
    if not np.issubdtype(y.dtype, np.integer):
        as_float = y.astype(float)
        if np.isnan(as_float).any() or (as_float != np.round(as_float)).any():
            raise ScoringError("Scores must be whole points (0, 1, 2 ...): use prepare_answers.")
        y = as_float.astype(np.int64)
    if any(not t for t in texts):
        raise ScoringError("Some answers are empty after normalization: use prepare_answers.")
    if len(np.unique(y)) < 2:
        raise ScoringError("All answers have the same score: a scorer needs two or more points.")
    for name, (low, high) in (("word_ngrams", word_ngrams), ("char_ngrams", char_ngrams)):
        if not 1 <= low <= high:
            raise ScoringError(
                f"{name} must be (low, high) with 1 <= low <= high, not {(low, high)}."
            )
    if scale is None:
        scale = (int(y.min()), int(y.max()))
    params = {"word_ngrams": word_ngrams, "char_ngrams": char_ngrams, "min_df": min_df, "c": c}
    pipeline = build_pipeline(
        word_ngrams=word_ngrams, char_ngrams=char_ngrams, min_df=min_df, c=c, max_iter=max_iter
    )
    start = time.perf_counter()
    try:
        pipeline.fit(texts, y)
    except ValueError as exc:
        if "no terms remain" in str(exc) or "empty vocabulary" in str(exc):
            raise ScoringError(
                f"No word or character n-gram occurs in {min_df} or more answers: give more "
                "answers or lower min_df."
            ) from None
        raise
    seconds = time.perf_counter() - start
    words = pipeline.named_steps["features"].transformer_list[0][1].vocabulary_
    return Scorer(
        pipeline=pipeline,
        scale=(int(scale[0]), int(scale[1])),
        points=np.asarray(pipeline.named_steps["model"].classes_, dtype=np.int64),
        vocabulary=frozenset(w for w in words if " " not in w),
        train_lengths=np.array([len(t.split()) for t in texts]),
        seconds=seconds,
        params=params,
    )


# --- ONNX --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoringParity:
    rows: int
    disagreeing_scores: int
    max_prob_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.disagreeing_scores == 0 and self.max_prob_diff <= self.tolerance

    def describe(self) -> str:
        return (
            f"ONNX Runtime and scikit-learn give a different score on {self.disagreeing_scores} "
            f"of {self.rows} answers; the largest probability difference is "
            f"{self.max_prob_diff:.2e} (tolerance {self.tolerance:g})."
        )


class OnnxScorer:
    """An ONNX Runtime session over an exported scorer: `score(texts)` normalizes the answers
    the way training did and gives the same Scores as `Scorer.score`. The points and the
    normalization are read from the model's metadata."""

    def __init__(self, model_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                model_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ScoringError(f"ONNX Runtime cannot load the scorer: {exc}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("edumlops_normalization") != NORMALIZATION or "edumlops_points" not in meta:
            raise ScoringError(
                "This ONNX model is not a short-answer scorer from export_scorer_onnx (its "
                "metadata has no points or normalization): export it with export_scorer_onnx."
            )
        self.points = np.asarray(json.loads(meta["edumlops_points"]), dtype=np.int64)
        self.scale = tuple(json.loads(meta["edumlops_scale"]))
        self.input = self.session.get_inputs()[0].name
        self._proba = next(o.name for o in self.session.get_outputs() if "prob" in o.name)

    def feed(self, texts: Iterable[Any]) -> dict[str, np.ndarray]:
        return {self.input: np.array(_texts(texts), dtype=object).reshape(-1, 1)}

    def predict_proba(self, texts: Iterable[Any]) -> np.ndarray:
        (proba,) = self.session.run([self._proba], self.feed(texts))
        return np.asarray(proba)

    def score(self, texts: Iterable[Any]) -> Scores:
        return _scores(self.predict_proba(texts), self.points)


@dataclass
class ScorerExport:
    model_bytes: bytes
    parity: ScoringParity


def scorer_parity(
    scorer: Scorer, onnx: OnnxScorer, texts: Sequence[Any], tolerance: float = 1e-4
) -> ScoringParity:
    """Score the same answers with scikit-learn and ONNX Runtime and compare."""
    texts = _texts(texts)
    if not texts:
        raise ScoringError("Parity needs at least one answer.")
    expected = scorer.pipeline.predict_proba(texts)
    got = onnx.predict_proba(texts)
    return ScoringParity(
        rows=len(texts),
        disagreeing_scores=int((expected.argmax(axis=1) != got.argmax(axis=1)).sum()),
        max_prob_diff=float(np.abs(expected - got).max()),
        tolerance=tolerance,
    )


def export_scorer_onnx(
    scorer: Scorer, check_texts: Sequence[Any], *, tolerance: float = 1e-4
) -> ScorerExport:
    """The scorer as ONNX bytes (one string input `text`, shape (n, 1); outputs `label` and
    `probabilities`), checked on `check_texts` (held-out answers): raises ParityError when any
    score differs or a probability differs by more than `tolerance`."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    if not isinstance(scorer, Scorer):
        raise ScoringError(
            f"export_scorer_onnx needs a Scorer from train_scorer, not {type(scorer).__name__}."
        )
    pipeline = scorer.pipeline
    vectorizers = pipeline.named_steps["features"].transformer_list
    for name, vec in vectorizers:
        if vec.analyzer == "char_wb" or vec.sublinear_tf or vec.lowercase:
            raise ScoringError(
                f"The {name} vectorizer uses analyzer={vec.analyzer!r}, sublinear_tf="
                f"{vec.sublinear_tf}, lowercase={vec.lowercase}: skl2onnx converts only "
                "analyzer 'word' or 'char' with sublinear_tf=False and lowercase=False; train "
                "with build_pipeline's vectorizers."
            )
    options: dict[int, dict[str, Any]] = {id(pipeline.named_steps["model"]): {"zipmap": False}}
    for _, vec in vectorizers:
        if vec.analyzer == "word":
            options[id(vec)] = {"tokenexp": vec.token_pattern}
    with warnings.catch_warnings():
        # skl2onnx warns that analyzer="char" "may not work"; the parity check below decides
        warnings.simplefilter("ignore", UserWarning)
        model = convert_sklearn(
            pipeline,
            initial_types=[("text", StringTensorType([None, 1]))],
            options=options,
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    onnx.helper.set_model_props(
        model,
        {
            "edumlops_normalization": NORMALIZATION,
            "edumlops_points": json.dumps([int(p) for p in scorer.points]),
            "edumlops_scale": json.dumps(list(scorer.scale)),
        },
    )
    model_bytes = model.SerializeToString()
    result = scorer_parity(scorer, OnnxScorer(model_bytes), check_texts, tolerance)
    if not result.ok:
        raise ParityError(
            f"The ONNX scorer does not match scikit-learn: {result.describe()} Do not deploy "
            "it; check the vectorizer settings against the list in edumlops.ml.short_answer."
        )
    return ScorerExport(model_bytes, result)


# --- validation against human raters ----------------------------------------------------------
@dataclass
class Agreement:
    """Agreement of two sets of whole-point scores on the same answers."""

    n: int
    qwk: float
    exact: float  # share with the same score
    adjacent: float  # share within one point
    correlation: float  # Pearson; NaN when either side is constant
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numbers(values: Any, name: str) -> np.ndarray:
    raw = pd.Series(np.asarray(values, dtype=object))
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = numbers.isna() & raw.notna() & ~raw.map(lambda v: v is pd.NA)
    if bad.any():
        raise ScoringError(
            f"{name} has {int(bad.sum())} value(s) that are not numbers (e.g. "
            f"{raw[bad].iloc[0]!r}): scores must be whole points, missing ones left empty."
        )
    return numbers.to_numpy(dtype=float, na_value=np.nan)


def _pairs(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides as whole points where both exist, and the mask of those answers."""
    x, y = _numbers(a, names[0]), _numbers(b, names[1])
    if len(x) != len(y):
        raise ScoringError(
            f"{names[0]} has {len(x)} scores and {names[1]} {len(y)}: give one of each per answer."
        )
    both = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[both], y[both]
    for name, v in zip(names, (x, y), strict=True):
        if (v != np.round(v)).any():
            raise ScoringError(f"{name} has scores that are not whole points: round them first.")
    return x.astype(np.int64), y.astype(np.int64), both


def _agreement(x: np.ndarray, y: np.ndarray, scale: tuple[int, int] | None) -> Agreement:
    from sklearn.metrics import cohen_kappa_score

    if len(x) == 0:
        raise ScoringError("No answer has both scores: agreement needs at least one pair.")
    low, high = scale if scale is not None else (min(x.min(), y.min()), max(x.max(), y.max()))
    labels = list(range(int(low), int(high) + 1))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        qwk = float(cohen_kappa_score(x, y, labels=labels, weights="quadratic"))
        corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
    gap = np.abs(x - y)
    return Agreement(
        n=int(len(x)),
        qwk=qwk,
        exact=float((gap == 0).mean()),
        adjacent=float((gap <= 1).mean()),
        correlation=corr,
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        sd_a=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        sd_b=float(y.std(ddof=1)) if len(y) > 1 else 0.0,
    )


def agreement(human: Any, machine: Any, scale: tuple[int, int] | None = None) -> Agreement:
    """Machine against human scores (a: human, b: machine) on the answers that have both:
    quadratic weighted kappa over the points of `scale`, exact and adjacent agreement and the
    Pearson correlation."""
    x, y, _ = _pairs(human, machine, ("human", "machine"))
    return _agreement(x, y, scale)


def human_ceiling(
    score_1: Any, score_2: Any, scale: tuple[int, int] | None = None
) -> Agreement | None:
    """Human–human agreement on the answers both raters scored (None when none were)."""
    x, y, _ = _pairs(score_1, score_2, ("score_1", "score_2"))
    return _agreement(x, y, scale) if len(x) else None


@dataclass
class GroupSMD:
    """Standardized mean differences, machine minus human. Overall: divided by the pooled SD
    sqrt((sd_machine^2 + sd_human^2) / 2); per group: divided by the SD of all the human scores,
    so groups are on one ruler. Groups with fewer than `min_size` answers are reported with
    `enough=False` and are not gated."""

    overall: float
    human_sd: float
    min_size: int
    groups: list[dict[str, Any]]  # group, n, machine_mean, human_mean, smd, enough


def group_smd(machine: Any, human: Any, groups: Any = None, *, min_size: int = 20) -> GroupSMD:
    """Standardized mean score difference (machine - human) overall and per group (None: the
    overall one only). Answers missing either score are left out."""
    m, h, both = _pairs(machine, human, ("machine", "human"))
    labels = (
        np.full(len(both), None, dtype=object) if groups is None else np.asarray(groups, object)
    )
    if len(labels) != len(both):
        raise ScoringError(
            f"groups has {len(labels)} values for {len(both)} scores: give one group per answer."
        )
    labels = labels[both]
    if len(m) < 2:
        raise ScoringError("group_smd needs at least two answers with both scores.")
    human_sd = float(h.std(ddof=1))
    pooled = float(np.sqrt((m.var(ddof=1) + h.var(ddof=1)) / 2))
    diff = float(m.mean() - h.mean())
    overall = diff / pooled if pooled > 0 else (0.0 if diff == 0 else float("inf"))
    rows = []
    for name in [] if groups is None else sorted(set(labels.tolist()), key=str):
        inside = labels == name
        gap = float(m[inside].mean() - h[inside].mean())
        smd = gap / human_sd if human_sd > 0 else (0.0 if gap == 0 else float("inf"))
        rows.append(
            {
                "group": str(name),
                "n": int(inside.sum()),
                "machine_mean": float(m[inside].mean()),
                "human_mean": float(h[inside].mean()),
                "smd": smd,
                "enough": bool(inside.sum() >= min_size),
            }
        )
    return GroupSMD(overall=overall, human_sd=human_sd, min_size=min_size, groups=rows)


@dataclass
class ScoringGateResult:
    passed: bool
    reasons: list[str]  # one sentence per check, failing ones first
    failures: list[str]  # the sentences of the failing checks
    agreement: Agreement
    ceiling: Agreement | None
    smd: GroupSMD
    thresholds: dict[str, float]

    @property
    def reason(self) -> str:
        return " ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scoring_gate(
    human: Any,
    machine: Any,
    *,
    second_human: Any = None,
    groups: Any = None,
    scale: tuple[int, int] | None = None,
    min_qwk: float = 0.7,
    max_qwk_drop: float = 0.10,
    max_smd: float = 0.15,
    max_group_smd: float = 0.10,
    min_group_size: int = 20,
    min_ceiling_pairs: int = 20,
) -> ScoringGateResult:
    """Pass a scorer for use when, on held-out answers (thresholds of Williamson, Xi & Breyer
    2012, the e-rater criteria):

    - machine–human QWK is at least `min_qwk` (0.70);
    - machine–human QWK is no more than `max_qwk_drop` (0.10) below the human–human QWK, when a
      second rater scored at least `min_ceiling_pairs` answers;
    - the overall standardized mean difference is within ±`max_smd` (0.15);
    - in every sensitive group of at least `min_group_size` answers, the SMD is within
      ±`max_group_smd` (0.10).

    The reasons are sentences, failing checks first."""
    agree = agreement(human, machine, scale)
    ceiling = None
    if second_human is not None:
        ceiling = human_ceiling(human, second_human, scale)
    smd = group_smd(machine, human, groups, min_size=min_group_size)
    failing: list[str] = []
    passing: list[str] = []

    def check(ok: bool, sentence: str) -> None:
        (passing if ok else failing).append(sentence)

    qwk_ok = bool(np.isfinite(agree.qwk) and agree.qwk >= min_qwk)
    check(
        qwk_ok,
        f"Machine–human QWK is {agree.qwk:.3f} on {agree.n} answers "
        + ("(at least" if qwk_ok else "(below")
        + f" the {min_qwk:.2f} required); exact agreement {agree.exact:.0%}, adjacent "
        f"{agree.adjacent:.0%}, correlation {agree.correlation:.3f}.",
    )
    if ceiling is not None and ceiling.n >= min_ceiling_pairs:
        drop = ceiling.qwk - agree.qwk
        ok = bool(np.isfinite(drop) and drop <= max_qwk_drop)
        check(
            ok,
            f"Human–human QWK is {ceiling.qwk:.3f} on {ceiling.n} double-scored answers; the "
            f"machine's is {abs(drop):.3f} {'below' if drop > 0 else 'above'} it (allowed: "
            f"{max_qwk_drop:.2f} below).",
        )
    elif second_human is not None:
        n = 0 if ceiling is None else ceiling.n
        passing.append(
            f"Only {n} answers have a second human score (fewer than {min_ceiling_pairs}): "
            "the human–human ceiling is not checked."
        )
    over_ok = bool(abs(smd.overall) <= max_smd)
    check(
        over_ok,
        f"Overall the machine scores {smd.overall:+.3f} SD from the human scores (allowed: "
        f"±{max_smd:.2f}).",
    )
    for row in smd.groups:
        if not row["enough"]:
            passing.append(
                f"Group {row['group']} has {row['n']} answers (fewer than {min_group_size}): "
                "insufficient data, its SMD is not gated."
            )
            continue
        ok = bool(abs(row["smd"]) <= max_group_smd)
        direction = "above" if row["smd"] > 0 else "below"
        sentence = (
            f"In group {row['group']} ({row['n']} answers) the machine scores "
            f"{abs(row['smd']):.3f} SD {direction} the human scores (mean "
            f"{row['machine_mean']:.2f} against {row['human_mean']:.2f}; allowed: "
            f"±{max_group_smd:.2f})."
        )
        if not ok:
            sentence += (
                " Either the model or the human ratings treat this group differently: "
                "re-check the human scores of this group before retraining."
            )
        check(ok, sentence)
    return ScoringGateResult(
        passed=not failing,
        reasons=failing + passing,
        failures=failing,
        agreement=agree,
        ceiling=ceiling,
        smd=smd,
        thresholds={
            "min_qwk": min_qwk,
            "max_qwk_drop": max_qwk_drop,
            "max_smd": max_smd,
            "max_group_smd": max_group_smd,
        },
    )


# --- monitors ----------------------------------------------------------------------------------
@dataclass
class TextDrift:
    kind: str  # "length" or "vocabulary"
    statistic: float  # PSI of lengths; rise in the out-of-vocabulary share
    threshold: float
    drifted: bool
    reference: dict[str, Any]
    current: dict[str, Any]
    message: str


def _lengths(texts: Iterable[Any]) -> np.ndarray:
    return np.array([len(tokens(t)) for t in texts], dtype=float)


def length_drift(
    reference_texts: Iterable[Any],
    current_texts: Iterable[Any],
    *,
    bins: int = 10,
    threshold: float = 0.2,
    min_answers: int = 30,
    reference_lengths: Iterable[int] | None = None,
) -> TextDrift:
    """Drift of answer length (in words): PSI over the reference's decile bins (0.2 is the
    common "significant shift" line). Fewer than `min_answers` on either side: not judged.
    `reference_lengths` (the words per reference answer, as kept at training) stands in for
    `reference_texts` when given."""
    ref = (
        np.asarray(list(reference_lengths), dtype=float)
        if reference_lengths is not None
        else _lengths(reference_texts)
    )
    cur = _lengths(current_texts)
    summary = {
        "reference": {"answers": len(ref), "mean_words": float(ref.mean()) if len(ref) else None},
        "current": {"answers": len(cur), "mean_words": float(cur.mean()) if len(cur) else None},
    }
    if min(len(ref), len(cur)) < min_answers:
        return TextDrift(
            "length",
            float("nan"),
            threshold,
            False,
            summary["reference"],
            summary["current"],
            f"Insufficient data: {len(ref)} reference and {len(cur)} current "
            f"answers (at least {min_answers} each are needed).",
        )
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    value = psi(
        np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1),
        np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1),
    )
    drifted = value > threshold
    message = (
        f"Answer length PSI is {value:.3f} ("
        + ("above" if drifted else "within")
        + f" {threshold:g}): answers average {summary['current']['mean_words']:.1f} words "
        f"against {summary['reference']['mean_words']:.1f} in the reference answers."
    )
    return TextDrift(
        "length", value, threshold, bool(drifted), summary["reference"], summary["current"], message
    )


def _oov(texts: Iterable[Any], vocabulary: frozenset[str] | set[str]) -> tuple[float, Counter, int]:
    counts: Counter[str] = Counter()
    total = 0
    for t in texts:
        words = tokens(t)
        total += len(words)
        counts.update(w for w in words if w not in vocabulary)
    return (sum(counts.values()) / total if total else 0.0), counts, total


def vocabulary_drift(
    reference_texts: Iterable[Any],
    current_texts: Iterable[Any],
    *,
    vocabulary: Iterable[str] | None = None,
    threshold: float = 0.10,
    top: int = 10,
    reference_share: tuple[float, int] | None = None,
) -> TextDrift:
    """The share of current answer words outside the training vocabulary (`vocabulary`, e.g.
    `Scorer.vocabulary`; default: the words of the reference answers), compared with that share
    in the reference answers. Drifted when it rises by more than `threshold`; the most frequent
    new words are listed. `reference_share` (the reference answers' out-of-vocabulary share and
    word count, as kept at training) stands in for `reference_texts` when given."""
    reference_texts = list(reference_texts)
    vocab = (
        frozenset(vocabulary)
        if vocabulary is not None
        else frozenset(w for t in reference_texts for w in tokens(t))
    )
    if not vocab:
        raise ScoringError("The vocabulary is empty: give the training answers or a vocabulary.")
    if reference_share is not None:
        ref_share, ref_words = float(reference_share[0]), int(reference_share[1])
    else:
        ref_share, _, ref_words = _oov(reference_texts, vocab)
    cur_share, new, cur_words = _oov(current_texts, vocab)
    rise = cur_share - ref_share
    drifted = bool(rise > threshold)
    frequent = [w for w, _ in new.most_common(top)]
    message = (
        f"{cur_share:.1%} of the words in current answers are outside the training vocabulary "
        f"against {ref_share:.1%} in the reference answers (a rise of {rise:+.1%}; allowed "
        f"{threshold:.0%})"
        + (f"; most frequent new words: {', '.join(frequent)}." if frequent else ".")
    )
    reference = {"words": ref_words, "oov_share": ref_share, "vocabulary": len(vocab)}
    current = {"words": cur_words, "oov_share": cur_share, "new_words": frequent}
    return TextDrift("vocabulary", rise, threshold, drifted, reference, current, message)


@dataclass
class Unsure:
    share: float
    count: int
    answers: int
    margin: float
    indexes: list[int]  # rows to route to a human rater
    message: str


def unsure_share(probabilities: Any, *, margin: float = 0.2) -> Unsure:
    """Answers whose two most likely scores are within `margin` of each other in probability:
    their share, and their row indexes, to route to human rating."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ScoringError(
            "probabilities must be a table with one column per score point "
            "(at least two), e.g. Scores.probabilities."
        )
    if not 0 <= margin <= 1:
        raise ScoringError(f"margin must be a probability difference in [0, 1], not {margin}.")
    if len(p) == 0:
        return Unsure(0.0, 0, 0, margin, [], "No answers to check.")
    top2 = np.sort(p, axis=1)[:, -2:]
    close = np.flatnonzero(top2[:, 1] - top2[:, 0] < margin)
    share = len(close) / len(p)
    message = (
        f"The model is unsure about {len(close)} of {len(p)} answers ({share:.1%}): their two "
        f"most likely scores are within {margin:g} in probability; route them to a human rater."
    )
    return Unsure(float(share), int(len(close)), int(len(p)), margin, close.tolist(), message)
