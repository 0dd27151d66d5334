"""A cached bundle made ready to serve: verified again, loaded into ONNX Runtime through the same
serving core as the central API, timed on this device, and with the drift bins its telemetry is
counted on."""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from typing import Any

from edumlops.edge.store import BundleStore
from edumlops.ml import binning
from edumlops.ml.bundle_files import MODEL_FILE, BundleError
from edumlops.ml.manifest import Manifest
from edumlops.ml.runtime import OrtModel
from edumlops.ml.serving_core import ServingModel, feed

LATENCY_RUNS = 50
VECTOR_ROWS = 32  # from this many rows a request's bins are counted with numpy
PREDICTION = "__prediction__"  # the drift reference's bins of the predicted probability


class LoadError(Exception):
    """A verified bundle that ONNX Runtime (or the serving core) cannot serve."""


# the agent's runner: edumlops.ml.runtime.OrtModel reads the one-hot categories off the model's
# bytes (edumlops.ml.onnx_graph), without `onnx`, so the slim install gets them exactly too
EdgeOrtModel = OrtModel


class Bins:
    """The drift reference's bins (manifest.json → drift_reference), counted without pandas
    by edumlops.ml.binning — the bins of drift.FeatureReference.histogram."""

    def __init__(self, reference: dict[str, Any] | None) -> None:
        self.numeric: dict[str, list[float]] = {}
        self.categorical: dict[str, list[str]] = {}
        for name, ref in (reference or {}).items():
            if not isinstance(ref, dict):
                continue
            if ref.get("kind") == "numeric":
                self.numeric[name] = [float(e) for e in ref.get("edges") or []]
            elif ref.get("kind") == "categorical":
                self.categorical[name] = [str(c) for c in ref.get("categories") or []]

        # category → its bin, "other", "missing": as binning.categorical_bins
        self._index = {
            name: ({c: i for i, c in enumerate(cats)}, len(cats), len(cats) + 1)
            for name, cats in self.categorical.items()
        }

    def add(
        self, totals: dict[str, list[int]], rows: list[dict[str, Any]], probabilities: list[float]
    ) -> None:
        """Add the counts of these rows (and of their predicted probabilities) to `totals`, per
        feature and bin: the bins of `histograms`. A small request is counted row by row (a
        bisect per value costs less than numpy's call overhead), a large one with numpy."""
        if len(rows) >= VECTOR_ROWS:
            for name, counts in self.histograms(rows, probabilities).items():
                total = totals.setdefault(name, [0] * len(counts))
                for i, n in enumerate(counts):
                    total[i] += n
            return
        for name, edges in self.numeric.items():
            total = totals.get(name) or totals.setdefault(name, [0] * binning.size(edges))
            missing = len(edges) + 1
            values = probabilities if name == PREDICTION else [row.get(name) for row in rows]
            for value in values:
                x = _number(value)
                total[missing if x != x else bisect.bisect_right(edges, x)] += 1
        for name, (index, other, missing) in self._index.items():
            total = totals.get(name) or totals.setdefault(name, [0] * (missing + 1))
            for row in rows:
                value = row.get(name)
                total[missing if value is None else index.get(str(value), other)] += 1

    def sizes(self) -> dict[str, int]:
        return {n: binning.size(b) for n, b in {**self.numeric, **self.categorical}.items()}

    def histograms(
        self, rows: list[dict[str, Any]], probabilities: list[float]
    ) -> dict[str, list[int]]:
        """Counts per feature of these rows (and of their predicted probabilities)."""
        out = {}
        for name, edges in self.numeric.items():
            values = probabilities if name == PREDICTION else [row.get(name) for row in rows]
            bins = binning.numeric_bins(edges, [_number(v) for v in values])
            out[name] = binning.counts(bins, binning.size(edges)).tolist()
        for name, categories in self.categorical.items():
            bins = binning.categorical_bins(categories, [row.get(name) for row in rows])
            out[name] = binning.counts(bins, binning.size(categories)).tolist()
        return out


def _number(value: Any) -> float:
    """A value as a number for its bin; NaN (the missing bin) when it is none."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class ActiveModel:
    """A model this agent can serve."""

    version: int
    serving: ServingModel
    manifest: Manifest
    bins: Bins
    latency_p50_ms: float
    latency_p95_ms: float

    @property
    def label(self) -> str:
        return f"{self.serving.name} v{self.serving.version}"


def load(store: BundleStore, version: int) -> ActiveModel:
    """Verify the cached bundle again and load it. BundleError: it no longer verifies (damaged
    on disk); LoadError: it verifies but cannot be served here."""
    signed = store.verify(version)
    try:
        runner = EdgeOrtModel((store.path(version) / MODEL_FILE).read_bytes())
    except BundleError as exc:  # OrtModel's way of saying ONNX Runtime refused the model
        raise LoadError(str(exc)) from None
    except OSError as exc:
        raise BundleError(f"{MODEL_FILE} cannot be read: {exc}") from None
    try:
        manifest = Manifest.from_dict(signed)
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
        bins=Bins(manifest.drift_reference),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
    )


def synthetic_row(serving: ServingModel, manifest: Manifest) -> dict[str, Any]:
    """A plausible row from the manifest: each number at its middle reference edge, each
    category its first reference category."""
    reference = manifest.drift_reference or {}
    row: dict[str, Any] = {}
    for name in serving.numeric:
        edges = (reference.get(name) or {}).get("edges") or []
        row[name] = float(edges[len(edges) // 2]) if edges else 0.0
    for name in serving.categorical:
        cats = (reference.get(name) or {}).get("categories") or []
        row[name] = str(cats[0]) if cats else None
    return row


def measure(
    serving: ServingModel, manifest: Manifest, runs: int = LATENCY_RUNS
) -> tuple[float, float]:
    """ONNX Runtime latency p50/p95 (ms) of a one-row request on this device."""
    arrays = feed(serving, [synthetic_row(serving, manifest)])
    serving.onnx.predict_feed(arrays)  # warm-up: the first run allocates
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        serving.onnx.predict_feed(arrays)
        times.append((time.perf_counter() - started) * 1000)
    return round(percentile(times, 50), 4), round(percentile(times, 95), 4)


def percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile, without its first-call cost on the way to serving."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)
