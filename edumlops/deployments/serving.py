"""Serving: one ONNX Runtime session per model version, cached (bounded, thread-safe). Validating
rows, risk bands and explanations are in edumlops.ml.serving_core, shared with the edge agent.

Bundles come from the server's local copy (edumlops.registry.bundles, the one edge nodes download;
filled from the model's MLflow artifacts once per version) and are verified against this
server's own signing key before they are loaded: a bundle changed after export is refused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from django.conf import settings

from edumlops.ml import onnx_bundle, signing
from edumlops.ml.manifest import Manifest, ManifestError
from edumlops.ml.serving_core import (
    MAX_ROWS,
    RequestError,
    ServingModel,
    explain,
    explain_by_substitution,
    feed,
    known_categories,
    linear_terms,
    parse_rows,
    predict,
    refusal,
    unseen_categories,
    validate,
)
from edumlops.registry import bundles
from edumlops.registry.models import ModelVersion

__all__ = [
    "CACHE",
    "MAX_ROWS",
    "MAX_TEXT",
    "RowsError",
    "check_rows",
    "ModelCache",
    "RequestError",
    "explain",
    "explain_by_substitution",
    "feed",
    "linear_terms",
    "load",
    "parse_rows",
    "predict",
    "score",
    "unseen_categories",
    "validate",
]


class ModelCache:
    """At most `size` loaded models; the least recently used is dropped first."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._models: OrderedDict[int, ServingModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def get(self, model: ModelVersion) -> ServingModel:
        with self._lock:
            loaded = self._models.get(model.pk)
            if loaded is not None:
                self._models.move_to_end(model.pk)
                return loaded
            gate = self._loading.setdefault(model.pk, threading.Lock())
        with gate:  # one thread loads a version; the others wait for it
            with self._lock:
                loaded = self._models.get(model.pk)
            if loaded is None:
                loaded = load(model)
                with self._lock:
                    self._models[model.pk] = loaded
                    while len(self._models) > self.size:
                        self._models.popitem(last=False)
                    self._loading.pop(model.pk, None)
        return loaded

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def load(model: ModelVersion) -> ServingModel:
    if not (model.bundle or {}).get("manifest"):
        raise RequestError(f"{model} has no ONNX bundle: export it before serving.")
    try:
        folder = bundles.bundle_dir(model)
    except bundles.BundleUnavailable as exc:
        raise onnx_bundle.BundleError(str(exc)) from exc
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH)).public_key()
    manifest, onnx = onnx_bundle.load_bundle(folder, key)
    try:
        signed = Manifest.from_dict(manifest)
    except ManifestError as exc:
        raise onnx_bundle.BundleError(str(exc)) from None
    loaded = replace(  # named as the registry names it (older manifests lack the id)
        ServingModel.from_manifest(signed, onnx),
        model_version_id=model.pk,
        name=model.name,
        version=model.version,
        algorithm=model.algorithm,
    )
    if not loaded.terms and model.algorithm == "logistic_regression":
        # bundles exported before the terms were kept in the manifest
        loaded.terms = linear_terms(model.pipeline(), loaded.numeric, loaded.categorical)
    # the categories seen in training; the registry keeps the drift reference of bundles that
    # were exported without it
    loaded.categories = known_categories(
        loaded.categorical, loaded.terms, signed.drift_reference or model.drift_reference
    )
    return loaded


CACHE = ModelCache(getattr(settings, "SERVING_CACHE_SIZE", 8))


# --- the rows of a predict request, checked against the served model ---------------------------

MAX_TEXT = 256  # the longest text a categorical feature may hold


class RowsError(RequestError):
    """Rows that do not fit the model: each entry of `errors` names the row, the feature (as a
    dotted `field`, e.g. `rows.3.gpa`), the problem and its fix (`message`)."""


def check_rows(model: ServingModel, rows: list[dict], where: str = "rows") -> None:
    """Refuse the whole request if any row misses a feature, has one the model does not know, a
    value of the wrong type, a number that is not finite or a text longer than MAX_TEXT.
    `where` is how the request named its rows (`rows`, or `row` for one)."""
    try:
        validate(model, rows)
        problems: list[dict] = []
    except RequestError as exc:
        problems = list(exc.errors)
    categorical = set(model.categorical)
    for i, row in enumerate(rows):
        for name, value in row.items():
            if name in categorical and isinstance(value, str) and len(value) > MAX_TEXT:
                problems.append(
                    {"row": i, "field": name, "problem": f"text longer than {MAX_TEXT} characters"}
                )
    if not problems:
        return
    features = ", ".join(model.features)
    errors = []
    for p in sorted(problems, key=lambda p: (p["row"], p["field"])):
        feature, problem = p["field"], p["problem"]
        if len(problem) > 120:  # a value quoted in the problem is cut short
            problem = problem[:117] + "..."
        if problem == "missing":
            fix = f"send a value for {feature} (null if unknown)"
        elif problem == "unknown feature":
            fix = f"remove it; the model's features are {features}"
        elif problem.startswith("must be a number"):
            fix = "send a finite number, or null if unknown"
        elif problem.startswith("must be text"):
            fix = "send the category as text, or null if unknown"
        else:
            fix = f"shorten it to at most {MAX_TEXT} characters"
        field = f"row.{feature}" if where == "row" else f"rows.{p['row']}.{feature}"
        errors.append(
            {
                "field": field,
                "message": f"{problem}: {fix}.",
                "row": p["row"],
                "feature": feature,
                "problem": problem,
            }
        )
    raise RowsError(refusal(model, len(errors), [e["feature"] for e in errors]), errors)


def score(model: ServingModel, rows: list[dict], where: str = "rows") -> tuple[list, float, list]:
    """One door for every caller that scores rows (the predict API, the school page's "Try a
    student"): check the rows (RowsError names each fault), score them, and warn of categories
    never seen in training. Returns (answers, seconds, warnings); records nothing."""
    check_rows(model, rows, where)
    answers, seconds = predict(model, rows)
    return answers, seconds, unseen_categories(model, rows)
