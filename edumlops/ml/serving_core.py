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
    warnings = []
    for i, row in enumerate(rows):
        for name in model.categorical:
            known, value = model.categories.get(name), row.get(name)
            if known is None or not isinstance(value, str) or value in known:
                continue
            listed = sorted(known)
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
    if errors:
        fields = sorted({e["field"] for e in errors})
        raise RequestError(
            f"{len(errors)} problem(s) with the features {', '.join(fields)}: send exactly the "
            f"model's features ({', '.join(model.features)}), numbers as numbers, categories as "
            "text (null for unknown).",
            errors,
        )


def feed(model: ServingModel, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
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
    result = []
    for row in rows:
        parts = {}
        for col, (median, mean, scale, w) in model.terms["numeric"].items():
            value = row[col]
            x = median if value is None else float(value)
            parts[col] = (x - mean) / scale * w
        for col, weights in model.terms["categorical"].items():
            value = row[col]
            parts[col] = weights.get("missing" if value is None else value, 0.0)
        ranked = sorted(parts.items(), key=lambda kv: -abs(kv[1]))[:top]
        result.append(
            [
                {
                    "feature": k,
                    "contribution": round(v, 4),
                    "direction": "raises risk" if v > 0 else "lowers risk",
                }
                for k, v in ranked
            ]
        )
    return result


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


def predict(model: ServingModel, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    validate(model, rows)
    started = time.perf_counter()
    probabilities = model.onnx.predict_feed(feed(model, rows))
    seconds = time.perf_counter() - started
    reasons = explain(model, rows)
    answers = [
        {
            "probability": round(float(p), 6),
            "risk_band": model.band(float(p)),
            "model": {"name": model.name, "version": model.version},
            **({"top_features": r} if model.terms is not None else {}),
        }
        for p, r in zip(probabilities, reasons, strict=True)
    ]
    return answers, seconds
