"""A cached bundle made ready to serve: verified again, loaded into ONNX Runtime through the same
serving core as the central API, timed on this device, and with the drift bins its telemetry is
counted on."""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np

from edumlops.edge.store import BundleStore
from edumlops.ml.bundle_files import MODEL_FILE, BundleError
from edumlops.ml.runtime import OrtModel
from edumlops.ml.serving_core import ServingModel, feed

LATENCY_RUNS = 50
PREDICTION = "__prediction__"  # the drift reference's bins of the predicted probability


class LoadError(Exception):
    """A verified bundle that ONNX Runtime (or the serving core) cannot serve."""


class Bins:
    """The drift reference's bins (manifest.json → drift_reference), counted without pandas:
    numbers into bisect_right(edges, x) with a last bin for missing values; categories into
    their index, then "other", then "missing" — the bins of drift.FeatureReference.histogram."""

    def __init__(self, reference: dict[str, Any] | None) -> None:
        self.numeric: dict[str, list[float]] = {}
        self.categorical: dict[str, dict[str, int]] = {}
        for name, ref in (reference or {}).items():
            if not isinstance(ref, dict):
                continue
            if ref.get("kind") == "numeric":
                self.numeric[name] = [float(e) for e in ref.get("edges") or []]
            elif ref.get("kind") == "categorical":
                cats = [str(c) for c in ref.get("categories") or []]
                self.categorical[name] = {c: i for i, c in enumerate(cats)}

    def sizes(self) -> dict[str, int]:
        return {
            **{n: len(e) + 2 for n, e in self.numeric.items()},
            **{n: len(c) + 2 for n, c in self.categorical.items()},
        }

    def index(self, name: str, value: Any) -> int:
        if name in self.numeric:
            edges = self.numeric[name]
            try:
                x = float(value) if value is not None and not isinstance(value, bool) else None
            except (TypeError, ValueError):
                x = None
            if x is None or x != x:
                return len(edges) + 1
            return bisect_right(edges, x)
        cats = self.categorical[name]
        if value is None:
            return len(cats) + 1
        return cats.get(str(value), len(cats))

    def histograms(
        self, rows: list[dict[str, Any]], probabilities: list[float]
    ) -> dict[str, list[int]]:
        """Counts per feature of these rows (and of their predicted probabilities)."""
        out = {}
        for name, size in self.sizes().items():
            counts = [0] * size
            if name == PREDICTION:
                values: list[Any] = list(probabilities)
            else:
                values = [row.get(name) for row in rows]
            for value in values:
                counts[self.index(name, value)] += 1
            out[name] = counts
        return out


@dataclass
class ActiveModel:
    """A model this agent can serve."""

    version: int
    serving: ServingModel
    manifest: dict[str, Any]
    bins: Bins
    latency_p50_ms: float
    latency_p95_ms: float

    @property
    def label(self) -> str:
        return f"{self.serving.name} v{self.serving.version}"


def load(store: BundleStore, version: int) -> ActiveModel:
    """Verify the cached bundle again and load it. BundleError: it no longer verifies (damaged
    on disk); LoadError: it verifies but cannot be served here."""
    manifest = store.verify(version)
    try:
        runner = OrtModel((store.path(version) / MODEL_FILE).read_bytes())
    except BundleError as exc:  # OrtModel's way of saying ONNX Runtime refused the model
        raise LoadError(str(exc)) from None
    except OSError as exc:
        raise BundleError(f"{MODEL_FILE} cannot be read: {exc}") from None
    try:
        serving = ServingModel.from_manifest(manifest, runner)
    except (TypeError, ValueError, AttributeError) as exc:
        raise LoadError(f"the manifest cannot be read as a model: {exc!r}") from None
    if not serving.features:
        raise LoadError("the manifest lists no features")
    if set(serving.features) != set(runner.feature_names):
        raise LoadError(
            f"the model's inputs ({', '.join(runner.feature_names)}) are not the manifest's "
            f"features ({', '.join(serving.features)})"
        )
    try:
        p50, p95 = measure(serving, manifest)
    except Exception as exc:  # ONNX Runtime's own errors on a real row
        raise LoadError(f"ONNX Runtime cannot run the model on a test row: {exc}") from None
    return ActiveModel(
        version=int(version),
        serving=serving,
        manifest=manifest,
        bins=Bins(manifest.get("drift_reference")),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
    )


def synthetic_row(serving: ServingModel, manifest: dict[str, Any]) -> dict[str, Any]:
    """A plausible row from the manifest: each number at its middle reference edge, each
    category its first reference category."""
    reference = manifest.get("drift_reference") or {}
    row: dict[str, Any] = {}
    for name in serving.numeric:
        edges = (reference.get(name) or {}).get("edges") or []
        row[name] = float(edges[len(edges) // 2]) if edges else 0.0
    for name in serving.categorical:
        cats = (reference.get(name) or {}).get("categories") or []
        row[name] = str(cats[0]) if cats else None
    return row


def measure(
    serving: ServingModel, manifest: dict[str, Any], runs: int = LATENCY_RUNS
) -> tuple[float, float]:
    """ONNX Runtime latency p50/p95 (ms) of a one-row request on this device."""
    arrays = feed(serving, [synthetic_row(serving, manifest)])
    serving.onnx.predict_feed(arrays)  # warm-up: the first run allocates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        serving.onnx.predict_feed(arrays)
        times.append((time.perf_counter() - started) * 1000)
    return (
        round(float(np.percentile(times, 50)), 4),
        round(float(np.percentile(times, 95)), 4),
    )
