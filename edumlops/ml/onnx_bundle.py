"""ONNX export and signed bundles (writing them; checking them is in bundle_files, light enough
for the edge agent).

A bundle is a folder: `model.onnx` (the whole pipeline, preprocessing included, one input per
feature column), `manifest.json` (model, features and their types, thresholds, metrics, the
SHA-256 of every file, the signing key's id) and `manifest.sig` (Ed25519 over the manifest's exact
bytes). Verifying checks the signature first, then every file's digest; nothing is loaded from a
bundle that fails either.

Parity: ONNX Runtime computes in float32 and tree ensembles store split thresholds as float32,
so float64 inputs near a threshold can fall on the other side (FACTS.md: one row in 100k off by
2.8e-2 for histogram gradient boosting). training.prepare_frame therefore gives scikit-learn
float64 values that float32 holds exactly, and tree pipelines have no scaler; then every family
agrees within 1e-6 and the check can be strict: the largest difference must be under the
tolerance (1e-4), else the export fails and says by how much.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edumlops.ml import signing
from edumlops.ml.bundle_files import (
    BUNDLE_FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    BundleError,
    manifest_bytes,
    sha256_file,
    verify_bundle,
)
from edumlops.ml.manifest import Manifest
from edumlops.ml.runtime import OrtModel
from edumlops.ml.training import FeatureSpec

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SIGNATURE_FILE",
    "BundleError",
    "OnnxModel",
    "load_bundle",
    "manifest_bytes",
    "parity",
    "sha256_file",
    "to_onnx",
    "verify_bundle",
    "write_bundle",
]


def to_onnx(pipeline: Any, spec: FeatureSpec) -> bytes:
    """Convert a fitted pipeline (from training.build_pipeline) to ONNX bytes."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [(c, FloatTensorType([None, 1])) for c in spec.numeric]
    inputs += [(c, StringTensorType([None, 1])) for c in spec.categorical]
    classifier = pipeline.steps[-1][1]
    model = convert_sklearn(
        pipeline,
        initial_types=inputs,
        options={id(classifier): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return model.SerializeToString()


class OnnxModel(OrtModel):
    """An ONNX Runtime session over a model from `to_onnx`, fed from a prepared DataFrame too."""

    def feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        missing = [c for c in self.inputs if c not in frame.columns]
        if missing:
            raise BundleError(f"The rows lack the feature(s) {', '.join(missing)}.")
        feed = {}
        for name, kind in self.inputs.items():
            column = frame[name]
            if kind == "tensor(string)":
                feed[name] = column.astype(str).to_numpy(dtype=object).reshape(-1, 1)
            else:
                feed[name] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
        return feed

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for each row of a prepared frame."""
        return self.predict_feed(self.feed(frame))


@dataclass(frozen=True)
class ParityResult:
    max_abs_diff: float
    rows: int
    tolerance: float
    share_within: float
    decisions_agree: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        return (
            f"{self.share_within:.2%} of {self.rows} rows within {self.tolerance:g} "
            f"(largest difference {self.max_abs_diff:.2e}); decisions at 0.5 agree on "
            f"{self.decisions_agree:.2%}"
        )


def parity(
    pipeline: Any,
    model: OnnxModel,
    frame: pd.DataFrame,
    tolerance: float = 1e-4,
) -> ParityResult:
    """Compare ONNX Runtime with scikit-learn on the same prepared rows."""
    if len(frame) == 0:
        raise BundleError("Parity needs at least one row.")
    expected = pipeline.predict_proba(frame)[:, 1]
    got = model.predict_proba(frame)
    diff = np.abs(expected - got)
    return ParityResult(
        max_abs_diff=float(diff.max()),
        rows=int(len(frame)),
        tolerance=tolerance,
        share_within=float((diff <= tolerance).mean()),
        decisions_agree=float(((expected >= 0.5) == (got >= 0.5)).mean()),
    )


def write_bundle(
    directory: Path, model_bytes: bytes, manifest: Manifest | dict[str, Any], private_key: Any
) -> dict[str, Any]:
    """Write model.onnx, manifest.json and manifest.sig into `directory` (created; it must not
    exist). Written in a temporary folder beside it and renamed, so a half bundle never appears.
    A manifest given as a dict is read as a Manifest first (ManifestError names a missing or bad
    field), so nothing serving could not read is signed. Returns the final manifest as JSON (with
    format, files and signing_key_id)."""
    directory = Path(directory)
    if directory.exists():
        raise BundleError(f"{directory} already exists: bundles are never overwritten.")
    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_dict(manifest)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=directory.parent))
    try:
        (tmp / MODEL_FILE).write_bytes(model_bytes)
        final = replace(
            manifest,
            format=BUNDLE_FORMAT,
            files={MODEL_FILE: sha256_file(tmp / MODEL_FILE)},
            signing_key_id=signing.key_id(private_key.public_key()),
        ).to_dict()
        body = manifest_bytes(final)
        (tmp / MANIFEST_FILE).write_bytes(body)
        (tmp / SIGNATURE_FILE).write_text(signing.sign(private_key, body) + "\n")
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_bundle(directory: Path, public_key: Any) -> tuple[dict[str, Any], OnnxModel]:
    manifest = verify_bundle(directory, public_key)
    return manifest, OnnxModel((Path(directory) / MODEL_FILE).read_bytes())
