"""Training a model version: fit the pipeline on the training rows, fix the bins drift will be
measured on, log it to MLflow and register it. The Train model block (and any other door that
trains) decides the rows and features and calls `train_and_register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import drift, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.training import FeatureSpec, binary_target, build_pipeline, fit, prepare_frame
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import District


class TrainingError(ValueError):
    """The rows cannot train a model; the message says why and what to change."""


@dataclass(frozen=True)
class TrainingJob:
    district: District
    dataset_version: DatasetVersion
    model_name: str  # without the district's prefix
    algorithm: str
    balanced: bool
    seed: int
    use_sensitive_attributes: bool
    split: Any  # how the rows were split, for the MLflow parameters
    run_label: str  # the MLflow run's name
    workflow_run_id: int | None = None
    started_by: Any = None


@dataclass(frozen=True)
class Trained:
    model: ModelVersion
    model_uri: str
    rows: int


def train_and_register(
    job: TrainingJob,
    frame: pd.DataFrame,
    roles: Roles,
    spec: FeatureSpec,
    progress: Callable[[str, float], None] = lambda stage, fraction: None,
) -> Trained:
    X = prepare_frame(frame, spec)
    y = binary_target(frame[roles.label], roles.positive)
    if len(set(y.tolist())) < 2:
        raise TrainingError(
            "The training rows hold only one class of the label: use a larger dataset or "
            "another split."
        )
    pipeline = build_pipeline(spec, job.algorithm, balanced=job.balanced, seed=job.seed)
    fit(pipeline, X, y, progress=lambda stage, f: progress(stage, 0.05 + 0.8 * f))
    reference = drift_reference(frame, spec, pipeline.predict_proba(X)[:, 1])
    progress("logging to MLflow", 0.9)
    mlflow_ready()
    version = job.dataset_version
    training = provenance(frame, roles, version, y)
    logged = tracking.log_trained_model(
        experiment=f"{job.district.slug}/{job.model_name}",
        model_name=f"{job.district.slug}-{job.model_name}",
        run_name=job.run_label,
        pipeline=pipeline,
        params={
            "algorithm": job.algorithm,
            "balanced": job.balanced,
            "seed": job.seed,
            "features": spec.columns,
            "use_sensitive_attributes": job.use_sensitive_attributes,
            "dataset_sha256": version.sha256,
            "split": job.split,
        },
        metrics={"train_rows": float(len(frame)), "train_positives": float(y.sum())},
        # the training rows as read (whole-number columns stay integers): the registered
        # model's signature is typed from them
        input_example=frame[spec.columns].head(5),
        tags={
            "district": job.district.slug,
            "dataset_sha256": version.sha256,
            "workflow_run": str(job.workflow_run_id),
        },
        extra_json={
            "features.json": spec.to_dict(),
            "training.json": training,
            "drift_reference.json": reference,
        },
    )
    model = ModelVersion.objects.create(
        district=job.district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=job.algorithm,
        dataset_version=version,
        dataset_sha256=version.sha256,
        features=spec.to_dict(),
        roles=roles.to_dict(),
        training=training,
        drift_reference=reference,
        workflow_run_id=job.workflow_run_id,
        created_by=job.started_by,
    )
    return Trained(model, logged.model_uri, len(frame))


def drift_reference(frame: pd.DataFrame, spec: FeatureSpec, proba: Any) -> dict[str, Any]:
    """The bins drift is measured on, fixed now on the training rows and their predictions."""
    reference = {
        name: ref.to_dict()
        for name, ref in drift.build_reference(frame, spec.numeric, spec.categorical).items()
    }
    reference["__prediction__"] = drift.build_reference(
        pd.DataFrame({"__prediction__": proba}), ["__prediction__"], []
    )["__prediction__"].to_dict()
    return reference


def provenance(frame: Any, roles: Roles, version: Any, y: Any) -> dict[str, Any]:
    """What the model card says about the training rows."""
    training: dict[str, Any] = {
        "rows": int(len(frame)),
        "positives": int(y.sum()),
        "dataset": str(version),
        "dataset_sha256": version.sha256,
        "label": roles.label,
        "positive": roles.positive,
        "sensitive": roles.sensitive,
    }
    if roles.outcome is not None and roles.label == roles.outcome.name:
        training["outcome"] = {
            **roles.outcome.definition(),
            "rule": roles.outcome.rule,
            "excluded": roles.outcome.excluded,
        }
    if roles.school and roles.school in frame:
        training["schools"] = sorted(map(str, frame[roles.school].dropna().unique()))[:200]
    if roles.time and roles.time in frame:
        periods = sorted(map(str, frame[roles.time].dropna().unique()))
        training["period"] = {"from": periods[0], "to": periods[-1]} if periods else {}
    return training
