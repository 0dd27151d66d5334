"""Exporting a model version to a signed ONNX bundle: take the ONNX file registered with the
version (the pipeline converted at training, what `mlflow.pyfunc` loads), check it gives
scikit-learn's probabilities, build its Manifest, sign it and keep it in MLflow. The Export ONNX
block calls `export_bundle`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.utils import timezone

from edumlops.ml import onnx_bundle, signing, tracking
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.serving_core import linear_terms
from edumlops.ml.training import FeatureSpec, prepare_frame
from edumlops.registry.models import ModelVersion


class ParityError(ValueError):
    """ONNX does not give scikit-learn's probabilities: nothing was written."""

    def __init__(self, message: str, parity: onnx_bundle.ParityResult) -> None:
        super().__init__(message)
        self.parity = parity


def export_bundle(
    model: ModelVersion,
    holdout: pd.DataFrame,
    parity_rows: int,
    progress: Callable[[str, float], None] = lambda stage, fraction: None,
) -> onnx_bundle.ParityResult:
    """Convert, check parity on the first `parity_rows` held-out rows, sign and keep the bundle
    (model.bundle records where, the manifest, the public key and the parity)."""
    spec = model.feature_spec()
    pipeline = model.pipeline()
    progress("converting to ONNX", 0.1)
    # the ONNX file registered in MLflow (inside the pyfunc model), so what MLflow loads is what
    # we serve, byte for byte; versions registered before it was there are converted now
    onnx_bytes = tracking.served_onnx(model.name, model.version) or onnx_bundle.to_onnx(
        pipeline, spec
    )
    rows = prepare_frame(holdout.head(parity_rows), spec)
    progress("checking parity", 0.5)
    parity = onnx_bundle.parity(pipeline, onnx_bundle.OnnxModel(onnx_bytes), rows)
    if not parity.ok:
        raise ParityError(
            f"ONNX does not match scikit-learn: {parity.describe()}; every row must be within "
            f"{parity.tolerance:g}. The bundle was not written. Try another algorithm or "
            "report this model to the EduMLOps team.",
            parity,
        )
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH))
    manifest = manifest_for(model, spec, pipeline, parity.max_abs_diff)
    progress("signing the bundle", 0.8)
    with tempfile.TemporaryDirectory(prefix="edumlops-bundle-") as tmp:
        final = onnx_bundle.write_bundle(Path(tmp) / "bundle", onnx_bytes, manifest, key)
        tracking.log_directory(model.run_id, Path(tmp) / "bundle", "bundle")
    model.bundle = {
        "artifact_path": "bundle",
        "manifest": final,
        "public_key": signing.public_key_pem(key.public_key()),
        "parity": {
            "max_abs_diff": parity.max_abs_diff,
            "rows": parity.rows,
            "share_within": parity.share_within,
            "decisions_agree": parity.decisions_agree,
        },
    }
    model.save(update_fields=["bundle"])
    return parity


def manifest_for(
    model: ModelVersion, spec: FeatureSpec, pipeline: Any, parity_max_abs_diff: float
) -> Manifest:
    return Manifest(
        model=ModelInfo(
            name=model.name,
            version=model.version,
            algorithm=model.algorithm,
            model_version_id=model.pk,
            run_id=model.run_id,
        ),
        numeric=list(spec.numeric),
        categorical=list(spec.categorical),
        feature_types={
            **{c: "float" for c in spec.numeric},
            **{c: "string" for c in spec.categorical},
        },
        dataset_sha256=model.dataset_sha256,
        metrics=(model.validation or {}).get("metrics", {}),
        thresholds={"decision": model.threshold},
        bias_outcome=model.bias_outcome or "not checked",
        parity_max_abs_diff=parity_max_abs_diff,
        drift_reference=model.drift_reference,
        created_at=timezone.now().isoformat(),
        # logistic regression: each feature's part of the log-odds, so servers without
        # scikit-learn (edge agents) explain the risk as the central API does
        explain=(
            linear_terms(pipeline, spec.numeric, spec.categorical)
            if model.algorithm == "logistic_regression"
            else None
        ),
    )
