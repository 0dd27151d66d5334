"""Serving a model to one request, with numpy only (no Django, pandas or scikit-learn): strict
validation of each row against the bundle's feature schema, the input arrays, risk bands, and
for logistic regression the features that pushed the risk up or down most. The central predict
API (edumlops.deployments.serving) and the edge agent (edumlops.edge) both answer with this, so
their requests, answers and errors are the same.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edumlops.ml.manifest import Manifest


class Runner(Protocol):
    def predict_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray: ...


MAX_ROWS = 1000


class RequestError(ValueError):
    """The request is malformed; `errors` names each row and field at fault."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass
class ServingModel:
    model_version_id: int
    name: str
    version: str
    algorithm: str
    onnx: Runner
    numeric: list[str]
    categorical: list[str]
    thresholds: dict[str, float]
    terms: dict[str, Any] | None = None  # logistic regression: per-feature terms to explain
    # categorical feature → the categories seen in training, for the features where that is
    # known for sure (see known_categories); a value outside them is scored, with a warning
    categories: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest | dict[str, Any], runner: Runner) -> ServingModel:
        """From a bundle's signed manifest (`explain` holds the linear terms, when exported); a
        dict is read as a Manifest (ManifestError names a missing or bad field)."""
        if not isinstance(manifest, Manifest):
            manifest = Manifest.from_dict(manifest)
        return cls(
            model_version_id=manifest.model.model_version_id or 0,
            name=manifest.model.name,
            version=manifest.model.version,
            algorithm=manifest.model.algorithm or "",
            onnx=runner,
            numeric=list(manifest.numeric),
            categorical=list(manifest.categorical),
            thresholds={k: float(v) for k, v in manifest.thresholds.items()},
            terms=manifest.explain,
            categories={
                **known_categories(
                    manifest.categorical, manifest.explain, manifest.drift_reference
                ),
                # exact for any model: what the ONNX graph's one-hot encoders learnt
                **{
                    name: cats
                    for name, cats in (getattr(runner, "categories", None) or {}).items()
                    if name in manifest.categorical
                },
            },
        )

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def band(self, p: float) -> str:
        high = self.thresholds.get("high", self.thresholds.get("decision", 0.5))
        medium = self.thresholds.get("medium", high / 2)
        return "high" if p >= high else "medium" if p >= medium else "low"


def known_categories(
    categorical: list[str],
    terms: dict[str, Any] | None,
    reference: dict[str, Any] | None,
) -> dict[str, frozenset[str]]:
    """The categories each categorical feature took in the training rows, where that is known
    for sure: a linear model's terms hold every category its one-hot encoder learnt; otherwise
    the drift reference (drift.FeatureReference.to_dict) lists the most frequent categories and
    counts the rest in its "other" bin — when that bin was empty in training, the list is all
    of them. A feature with neither is left out (its values are never flagged)."""
    out: dict[str, frozenset[str]] = {}
    linear = (terms or {}).get("categorical") or {}
    for name in categorical:
        if isinstance(linear.get(name), dict):
            out[name] = frozenset(str(c) for c in linear[name])
            continue
        ref = (reference or {}).get(name)
        if not isinstance(ref, dict) or ref.get("kind") != "categorical":
            continue
        cats, counts = list(ref.get("categories") or []), list(ref.get("counts") or [])
        if cats and len(counts) == len(cats) + 2 and counts[len(cats)] == 0:
            out[name] = frozenset(str(c) for c in cats)
    return out


UNSEEN = "unseen_category"


def unseen_categories(model: ServingModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A warning per row and categorical feature whose value the model never saw in training.
    Such a row is still scored: the one-hot encoder ignores an unknown category, so the model
    answers as if that feature told it nothing."""
    found: list[tuple[int, int, str, Any]] = []
    for order, name in enumerate(model.categorical):
        known = model.categories.get(name)
        if known is None:
            continue
        for i, row in enumerate(rows):  # one set lookup per value: a batch costs little
            value = row.get(name)
            if isinstance(value, str) and value not in known:
                found.append((i, order, name, value))
    warnings = []
    for i, _, name, value in sorted(found, key=lambda f: (f[0], f[1])):
        listed = sorted(model.categories[name])
        shown = ", ".join(listed[:12]) + (
            f" and {len(listed) - 12} more" if len(listed) > 12 else ""
        )
        warnings.append(
            {
                "row": i,
                "field": name,
                "code": UNSEEN,
                "message": f"{name} = {value!r} never occurred in the training data "
                f"(it knew {shown}). The row was still scored, with this value counting as "
                "none of the known ones: check the spelling, or retrain on data with such "
                "students before trusting this answer.",
            }
        )
    return warnings


def parse_rows(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "rows" in body:
        rows = body["rows"]
    elif isinstance(body, dict) and "row" in body:
        rows = [body["row"]]
    else:
        raise RequestError(
            'Send {"rows": [{feature: value, ...}, ...]} or {"row": {feature: value, ...}}.'
        )
    if not isinstance(rows, list) or not rows:
        raise RequestError('"rows" must be a non-empty list of objects.')
    if len(rows) > MAX_ROWS:
        raise RequestError(f"At most {MAX_ROWS} rows per request; this one has {len(rows)}.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"Row {i} is not an object of feature: value.")
    return rows


def validate(model: ServingModel, rows: list[dict[str, Any]]) -> None:
    """Refuse the rows (RequestError, each row and feature named) unless each holds exactly the
    model's features, numbers as finite numbers and categories as text (None for unknown)."""
    columns(model, rows)


def _problems(model: ServingModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every fault of every row, in row order (the slow path, taken only when a row is wrong)."""
    errors: list[dict[str, Any]] = []
    known = set(model.features)
    for i, row in enumerate(rows):
        for name in model.features:
            if name not in row:
                errors.append({"row": i, "field": name, "problem": "missing"})
        for name, value in row.items():
            if name not in known:
                errors.append({"row": i, "field": name, "problem": "unknown feature"})
            elif value is None:
                continue
            elif name in model.numeric and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                errors.append(
                    {"row": i, "field": name, "problem": f"must be a number, got {value!r}"}
                )
            elif name in model.categorical and not isinstance(value, str):
                errors.append({"row": i, "field": name, "problem": f"must be text, got {value!r}"})
    return errors


def refusal(model: ServingModel, problems: int, features: list[str]) -> str:
    """The message of a refused batch: how many problems, with which features, and the fix."""
    return (
        f"{problems} problem(s) with the features {', '.join(sorted(set(features)))}: send "
        f"exactly the model's features ({', '.join(model.features)}), numbers as numbers, "
        "categories as text (null for unknown)."
    )


def _refuse(model: ServingModel, rows: list[dict[str, Any]]) -> RequestError:
    errors = _problems(model, rows)
    return RequestError(refusal(model, len(errors), [e["field"] for e in errors]), errors)


_NUMBER_TYPES = frozenset({float, int, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


@dataclass
class Columns:
    """The rows of a request, checked: the numbers as one (rows x numeric features) float64
    matrix (NaN for unknown), the categories as one list of texts per feature ("missing" for
    unknown)."""

    rows: int
    names: list[str]  # the numeric features, in the matrix's column order
    matrix: np.ndarray
    categorical: dict[str, list[str]]

    @property
    def numeric(self) -> dict[str, np.ndarray]:
        return {name: self.matrix[:, j] for j, name in enumerate(self.names)}

    def feed(self) -> dict[str, np.ndarray]:
        """ONNX Runtime's inputs: one (n, 1) array per feature (column slices of one float32
        copy in column order, each contiguous)."""
        single = np.asfortranarray(self.matrix, dtype=np.float32)
        arrays: dict[str, np.ndarray] = {
            name: single[:, j : j + 1] for j, name in enumerate(self.names)
        }
        for name, texts in self.categorical.items():
            arrays[name] = np.array(texts, dtype=object).reshape(-1, 1)
        return arrays


def columns(model: ServingModel, rows: list[dict[str, Any]]) -> Columns:
    """Check the rows (as `validate`) and turn them into columns: the keys of each row are
    compared as a set, the types of all numbers (and of each categorical feature) as a set, and
    finiteness on the array, so a good batch costs no Python work per value beyond reading it.
    A fault anywhere refuses the whole batch with every fault named (RequestError)."""
    keys = model.__dict__.get("_keys")
    if keys is None:
        keys = model.__dict__["_keys"] = frozenset(model.features)
    for row in rows:
        if row.keys() != keys:
            raise _refuse(model, rows)
    names = model.numeric
    values = [row[name] for row in rows for name in names]
    if not _NUMBER_TYPES.issuperset(map(type, values)) and any(
        v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in values
    ):
        raise _refuse(model, rows)
    unknown = values.count(None)
    matrix = np.array(
        values if not unknown else [math.nan if v is None else v for v in values],
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    if matrix.size - int(np.isfinite(matrix).sum()) != unknown:  # a NaN or an infinity
        raise _refuse(model, rows)
    categorical: dict[str, list[str]] = {}
    for name in model.categorical:
        texts = [row[name] for row in rows]
        if not _TEXT_TYPES.issuperset(map(type, texts)):
            if any(v is not None and not isinstance(v, str) for v in texts):
                raise _refuse(model, rows)
            texts = [None if v is None else str(v) for v in texts]  # str subclasses
        categorical[name] = ["missing" if v is None else v for v in texts]
    return Columns(len(rows), list(names), matrix, categorical)


def feed(model: ServingModel, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """ONNX Runtime's inputs for rows already checked: one (n, 1) array per feature."""
    arrays = {}
    for name in model.numeric:
        values = [row[name] for row in rows]
        arrays[name] = np.array(
            [np.nan if v is None else v for v in values], dtype=np.float32
        ).reshape(-1, 1)
    for name in model.categorical:
        arrays[name] = np.array(
            ["missing" if row[name] is None else row[name] for row in rows], dtype=object
        ).reshape(-1, 1)
    return arrays


def linear_terms(pipeline: Any, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """What a fitted logistic-regression pipeline does to each feature, read off it once: for a
    number (value - impute median → scale) x coefficient; for a category the coefficient of its
    one-hot column (0 for a category never seen in training)."""
    pre, coef = pipeline[:-1][0], pipeline[-1].coef_[0]
    names = list(pre.get_feature_names_out())
    weight = dict(zip(names, coef, strict=True))
    terms: dict[str, Any] = {"numeric": {}, "categorical": {}}
    if numeric:
        steps = pre.named_transformers_["numeric"].named_steps
        medians, scaler = steps["impute"].statistics_, steps.get("scale")
        for i, col in enumerate(numeric):
            mean = float(scaler.mean_[i]) if scaler is not None else 0.0
            scale = float(scaler.scale_[i]) if scaler is not None else 1.0
            terms["numeric"][col] = (
                float(medians[i]),
                mean,
                scale,
                float(weight[f"numeric__{col}"]),
            )
    if categorical:
        encoder = pre.named_transformers_["categorical"]
        for col, cats in zip(categorical, encoder.categories_, strict=True):
            terms["categorical"][col] = {
                str(c): float(weight[f"categorical__{col}_{c}"]) for c in cats
            }
    return terms


def explain(model: ServingModel, rows: list[dict[str, Any]], top: int = 3) -> list[list[dict]]:
    """For logistic regression: each feature's part of the log-odds, the `top` largest by size
    (computed from the coefficients read at load time; no pandas on the request path)."""
    if model.terms is None:
        return [[] for _ in rows]
    return explain_columns(model, columns(model, rows), top)


def _round(value: float, places: int) -> float:
    """numpy's rounding (scale, round half to even, unscale) for one Python float, so a single
    row and a batch round alike."""
    scale = 10.0**places
    return round(value * scale) / scale


def _linear(model: ServingModel, cols: Columns) -> tuple[list[str], list[int], np.ndarray]:
    """The features a linear model explains (numbers in its terms' order, then categories), the
    matrix columns of those numbers, and their (median, mean, scale, weight) rows; read once."""
    kept = model.__dict__.get("_linear")
    if kept is None or kept[0] != cols.names:
        numeric = list(model.terms["numeric"])
        where = {name: j for j, name in enumerate(cols.names)}
        kept = model.__dict__["_linear"] = (
            list(cols.names),
            numeric + list(model.terms["categorical"]),
            np.array([model.terms["numeric"][n] for n in numeric], dtype=float).reshape(-1, 4),
            [where[n] for n in numeric],
        )
    _, names, params, index = kept
    return names, index, params


def explain_columns(model: ServingModel, cols: Columns, top: int = 3) -> list[list[dict]]:
    """`explain` on checked columns, for the whole batch at once: one (rows x features) array
    of log-odds parts, ranked by size per row (ties keep the features' order). A batch of a few
    rows takes the same arithmetic in plain Python, which is quicker there than numpy's calls."""
    if model.terms is None:
        return [[] for _ in range(cols.rows)]
    names, index, params = _linear(model, cols)
    categorical = model.terms["categorical"]
    if cols.rows <= 4:
        out = []
        numeric = list(zip(params.tolist(), index, strict=True))
        for i in range(cols.rows):
            parts = []
            for (median, mean, scale, w), j in numeric:
                x = cols.matrix[i, j].item()
                parts.append(((median if x != x else x) - mean) / scale * w)
            for col, weights in categorical.items():
                parts.append(weights.get(cols.categorical[col][i], 0.0))
            ranked = sorted(range(len(parts)), key=lambda k: -abs(parts[k]))[:top]
            out.append(
                [
                    {
                        "feature": names[k],
                        "contribution": _round(parts[k], 4),
                        "direction": "raises risk" if parts[k] > 0 else "lowers risk",
                    }
                    for k in ranked
                ]
            )
        return out
    numbers = cols.matrix[:, index]
    numbers = np.where(np.isnan(numbers), params[:, 0], numbers)
    table = np.column_stack(
        [
            (numbers - params[:, 1]) / params[:, 2] * params[:, 3],
            *(
                np.array([weights.get(v, 0.0) for v in cols.categorical[col]], dtype=float)
                for col, weights in categorical.items()
            ),
        ]
    )
    order = np.argsort(-np.abs(table), axis=1, kind="stable")[:, :top]
    ranked = np.take_along_axis(table, order, axis=1)
    rounded = np.round(ranked, 4).tolist()
    up = (ranked > 0).tolist()
    return [
        [
            {
                "feature": names[j],
                "contribution": v,
                "direction": "raises risk" if u else "lowers risk",
            }
            for j, v, u in zip(js, vs, us, strict=True)
        ]
        for js, vs, us in zip(order.tolist(), rounded, up, strict=True)
    ]


def explain_by_substitution(
    model: ServingModel, row: dict[str, Any], top: int = 3
) -> list[dict[str, Any]]:
    """For any kind of model, one row: how much each feature moves this student's probability,
    measured by scoring the row again with that feature unknown (what the model assumes when a
    value is missing: the training median for a number, no known category for a category). One
    ONNX call scores the row and all its variants; features that move nothing are left out."""
    names = list(model.numeric) + list(model.categorical)
    rows = [row] + [{**row, name: None} for name in names if row.get(name) is not None]
    changed = [name for name in names if row.get(name) is not None]
    if not changed:
        return []
    probabilities = model.onnx.predict_feed(feed(model, rows))
    base = float(probabilities[0])
    parts = {n: base - float(p) for n, p in zip(changed, probabilities[1:], strict=True)}
    ranked = sorted((kv for kv in parts.items() if abs(kv[1]) >= 5e-4), key=lambda kv: -abs(kv[1]))
    return [
        {
            "feature": k,
            "contribution": round(v, 4),
            "direction": "raises risk" if v > 0 else "lowers risk",
            "points": round(100 * abs(v), 1),
        }
        for k, v in ranked[:top]
    ]


def bands(model: ServingModel, probabilities: np.ndarray) -> list[str]:
    """`ServingModel.band` for a whole batch."""
    if len(probabilities) <= 4:
        return [model.band(p) for p in probabilities.tolist()]
    high = model.thresholds.get("high", model.thresholds.get("decision", 0.5))
    medium = model.thresholds.get("medium", high / 2)
    return np.where(
        probabilities >= high, "high", np.where(probabilities >= medium, "medium", "low")
    ).tolist()


def predict(model: ServingModel, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Check and score the rows with one ONNX Runtime run: each answer's probability, risk band,
    the version and (linear models) the features that moved it most; and the seconds the model
    itself took. RequestError names every fault of a bad batch."""
    return score_columns(model, columns(model, rows))


def score_columns(model: ServingModel, cols: Columns) -> tuple[list[dict[str, Any]], float]:
    """`predict` on rows already turned into checked columns."""
    started = time.perf_counter()
    probabilities = np.asarray(model.onnx.predict_feed(cols.feed()), dtype=np.float64)
    seconds = time.perf_counter() - started
    labels = bands(model, probabilities)
    shown = np.round(probabilities, 6).tolist()
    ref = {"name": model.name, "version": model.version}
    if model.terms is None:
        answers = [
            {"probability": p, "risk_band": b, "model": dict(ref)}
            for p, b in zip(shown, labels, strict=True)
        ]
    else:
        answers = [
            {"probability": p, "risk_band": b, "model": dict(ref), "top_features": r}
            for p, b, r in zip(shown, labels, explain_columns(model, cols), strict=True)
        ]
    return answers, seconds
