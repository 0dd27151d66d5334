"""Real model versions for deployment tests: a scikit-learn pipeline trained on generated rows,
logged and registered in a real MLflow store, exported to a signed ONNX bundle kept as its
artifacts — the same calls the Train model and Export ONNX blocks make, without the workflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from edumlops.deployments import serving
from edumlops.ml import drift, onnx_bundle, signing, tracking
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.synth import generate_district
from edumlops.ml.training import (
    binary_target,
    build_pipeline,
    fit,
    infer_features,
    prepare_frame,
)
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import broker_url, worker  # noqa: F401

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


def rows_for(n: int = 5, seed: int = 9) -> list[dict]:
    frame = generate_district(n, seed=seed)
    spec = infer_features(generate_district(500, seed=0), exclude=EXCLUDE)
    out = []
    for record in frame[spec.columns].to_dict("records"):
        out.append({k: (None if v != v else v) for k, v in record.items()})  # NaN → null
    return out


def train_and_log(
    district, algorithm: str, seed: int, *, experiment: str = "test", trees: int | None = None
):
    """A pipeline trained on generated rows, logged and registered in MLflow: (frame, spec,
    pipeline, logged)."""
    frame = generate_district(1500, seed=seed)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = build_pipeline(spec, algorithm, balanced=True, seed=seed)
    if trees is not None:
        pipeline.set_params(model__n_estimators=trees, model__max_depth=None)
    pipeline = fit(pipeline, X, y)
    mlflow_ready()
    logged = tracking.log_trained_model(
        experiment=f"{district.slug}/{experiment}",
        model_name=f"{district.slug}-at-risk",
        run_name=f"seed {seed}",
        pipeline=pipeline,
        params={"algorithm": algorithm},
        metrics={},
        input_example=X.head(3),
        output_example=pipeline.predict_proba(X.head(3)),
        tags={},
    )
    return frame, spec, pipeline, logged


def make_model(district, algorithm: str = "logistic_regression", seed: int = 0) -> ModelVersion:
    frame, spec, pipeline, logged = train_and_log(district, algorithm, seed)
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH))
    manifest = Manifest(
        model=ModelInfo(logged.name, logged.version),
        numeric=spec.numeric,
        categorical=spec.categorical,
        thresholds={"decision": 0.5},
    )
    with tempfile.TemporaryDirectory() as tmp:
        final = onnx_bundle.write_bundle(
            Path(tmp) / "bundle", onnx_bundle.to_onnx(pipeline, spec), manifest, key
        )
        tracking.log_directory(logged.run_id, Path(tmp) / "bundle", "bundle")
    reference = {
        name: ref.to_dict()
        for name, ref in drift.build_reference(frame, spec.numeric, spec.categorical).items()
    }
    return ModelVersion.objects.create(
        district=district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=algorithm,
        dataset_sha256="0" * 64,
        features=spec.to_dict(),
        validation={"threshold": 0.5},
        bundle={"artifact_path": "bundle", "manifest": final},
        drift_reference=reference,
    )


@pytest.fixture(autouse=True)
def fresh_cache():
    serving.CACHE.clear()
    yield
    serving.CACHE.clear()


@pytest.fixture
def two_models(ml_stores, district):
    return make_model(district, seed=0), make_model(district, seed=1)
