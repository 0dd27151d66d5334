"""Training: which columns are features, the scikit-learn pipeline, and fitting it with progress.

The pipeline is one `Pipeline(ColumnTransformer → classifier)`: numeric columns are imputed with
the median (and scaled for logistic regression), categorical ones one-hot encoded (unknown
categories ignored). Inputs go through `prepare_frame` first — numbers as float64 values that
float32 represents exactly (so ONNX Runtime, which reads float32, sees the same numbers) and
categories as strings with "missing" for gaps — both when training and when scoring.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ALGORITHMS = {
    "logistic_regression": "Logistic regression",
    "random_forest": "Random forest",
    "hist_gradient_boosting": "Histogram gradient boosting",
}
MISSING = "missing"
# A text column with more distinct values than this is not a useful category (ids, notes).
MAX_CATEGORIES = 60
# A random forest is grown in chunks of trees (warm_start; no extra cost, trees are independent)
# so the worker can say how far it is. Histogram gradient boosting is not: each warm start costs
# a good share of a whole fit (100k rows: 4.4 s in one go, 16.5 s in three chunks), so its
# rounds are counted from its own verbose output instead, at no cost.
FOREST_CHUNKS = 10
ROUND = re.compile(r"\[(\d+)/(\d+)\]")


class _RoundCounter(io.TextIOBase):
    """Stands in for stdout while histogram gradient boosting fits with verbose=2, and turns its
    "[12/150]" lines into progress reports."""

    def __init__(self, on_round: Callable[[int, int], None]) -> None:
        self.on_round = on_round

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for match in ROUND.finditer(text):
            self.on_round(int(match.group(1)), int(match.group(2)))
        return len(text)


Progress = Callable[[str, float], None]


class FeatureError(ValueError):
    """The rows do not have the features a model needs."""


@dataclass(frozen=True)
class FeatureSpec:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, list[str]]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(list(data.get("numeric", [])), list(data.get("categorical", [])))


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).iloc[:200]
    if sample.empty:
        return False
    return bool(sample.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?").mean() >= 0.95)


def infer_features(frame: pd.DataFrame, exclude: Iterable[str | None] = ()) -> FeatureSpec:
    """Numeric columns, and text/boolean columns with few enough values to one-hot encode.
    Dates, identifiers and free text (too many distinct values) are left out."""
    skip = {c for c in exclude if c}
    numeric, categorical = [], []
    for col in frame.columns:
        if col in skip:
            continue
        series = frame[col]
        if series.notna().sum() == 0:
            continue
        if pd.api.types.is_bool_dtype(series):
            categorical.append(col)
        elif pd.api.types.is_numeric_dtype(series):
            if series.nunique(dropna=True) > 1:
                numeric.append(col)
        elif 1 < series.nunique(dropna=True) <= MAX_CATEGORIES and not _looks_like_dates(series):
            categorical.append(col)
    return FeatureSpec(numeric, categorical)


def prepare_frame(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's input columns, typed the way training and ONNX both expect."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise FeatureError(
            f"The rows lack the feature(s) {', '.join(missing)} the model was trained on: "
            "add those columns."
        )
    out = pd.DataFrame(index=frame.index)
    for col in spec.numeric:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            example = frame.loc[bad, col].iloc[0]
            raise FeatureError(
                f"'{col}' must be a number, but {int(bad.sum())} row(s) hold text such as "
                f"{example!r}: fix those values."
            )
        out[col] = values.astype(np.float32).astype(np.float64)
    for col in spec.categorical:
        values = frame[col]
        text = values.astype(str)
        if pd.api.types.is_float_dtype(values):  # 1.0 and 1 are the same category
            text = values.map(lambda v: f"{v:g}" if pd.notna(v) else None)
        out[col] = text.where(values.notna(), MISSING).astype(object)
    return out


def binary_target(series: pd.Series, positive: Iterable[str]) -> pd.Series:
    """1 where the label is one of the positive values (compared as text), else 0."""
    wanted = {str(v) for v in positive}
    if not wanted:
        raise FeatureError("No positive class is marked for the label: mark it on the dataset.")
    return series.astype(str).isin(wanted).astype(int)


def build_pipeline(spec: FeatureSpec, algorithm: str, *, balanced: bool, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if algorithm not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm '{algorithm}': use one of {', '.join(ALGORITHMS)}.")
    parts = []
    if spec.numeric:
        # Trees need no scaling, and a scaler before them costs ONNX parity: ONNX Runtime scales
        # in float32, which moves values across split thresholds (10k rows: 17% of rows off by
        # more than 1e-4 with the scaler, none without).
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if algorithm == "logistic_regression":
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), list(spec.numeric)))
    if spec.categorical:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", onehot, list(spec.categorical)))
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    weight = "balanced" if balanced else None
    if algorithm == "logistic_regression":
        model: Any = LogisticRegression(max_iter=2000, class_weight=weight)
    elif algorithm == "random_forest":
        model = RandomForestClassifier(
            n_estimators=100,
            max_depth=12,
            min_samples_leaf=5,
            class_weight=weight,
            random_state=seed,
            n_jobs=1,
        )
    else:
        model = HistGradientBoostingClassifier(
            max_iter=150,
            learning_rate=0.1,
            early_stopping=False,
            class_weight=weight,
            random_state=seed,
        )
    return Pipeline([("prepare", pre), ("model", model)])


def fit(pipeline: Any, X: pd.DataFrame, y: pd.Series, progress: Progress | None = None) -> Any:
    """Fit the pipeline, reporting stages: the preprocessing, then the classifier ('60 of 100
    trees', '75 of 150 boosting rounds')."""
    report = progress or (lambda stage, fraction: None)
    pre, model = pipeline.named_steps["prepare"], pipeline.named_steps["model"]
    report("preparing features", 0.0)
    Xt = pre.fit_transform(X, y)
    report("preparing features", 0.1)
    target = np.asarray(y)
    name = type(model).__name__
    if name == "HistGradientBoostingClassifier":

        def on_round(done: int, total: int) -> None:
            report(f"fitting: {done} of {total} boosting rounds", 0.1 + 0.9 * done / total)

        verbose = model.verbose
        model.set_params(verbose=2)
        try:
            with contextlib.redirect_stdout(_RoundCounter(on_round)):
                model.fit(Xt, target)
        finally:
            model.set_params(verbose=verbose)
    elif name == "RandomForestClassifier":
        total = model.n_estimators
        unit = "trees"
        step = max(1, -(-total // FOREST_CHUNKS))
        model.set_params(warm_start=True)
        done = 0
        with warnings.catch_warnings():
            # the forest warns that "balanced" weights and warm_start disagree when the data
            # changes between calls; here every call sees the same rows.
            warnings.filterwarnings("ignore", message=".*warm_start.*", category=UserWarning)
            while done < total:
                done = min(total, done + step)
                model.set_params(n_estimators=done)
                model.fit(Xt, target)
                report(f"fitting: {done} of {total} {unit}", 0.1 + 0.9 * done / total)
        model.set_params(warm_start=False)
    else:
        report("fitting logistic regression", 0.15)
        model.fit(Xt, target)
    report("fitted", 1.0)
    return pipeline
