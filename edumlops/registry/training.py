"""Training a model version: fit the pipeline on the training rows, fix the bins drift will be
measured on, log it to MLflow and register it. The Train model block (and any other door that
trains) decides the rows and features and calls `train_and_register`.

A differentially private algorithm (edumlops.ml.privacy) also trains the non-private model of
the same family on the same rows, compares both on the held-out rows for the card, and spends
its ε from the cohort's privacy budget in the transaction that registers the version: a refused
release leaves no model version (its MLflow version is deleted again), a failed fit spends
nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.db import transaction

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import drift, privacy, tracking
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
    # private algorithms only: ε, and the bounds the user gave ({feature: [lower, upper]})
    epsilon: float | None = None
    bounds: dict[str, Any] | None = None


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
    holdout: pd.DataFrame | None = None,
) -> Trained:
    X = prepare_frame(frame, spec)
    y = binary_target(frame[roles.label], roles.positive)
    if len(set(y.tolist())) < 2:
        raise TrainingError(
            "The training rows hold only one class of the label: use a larger dataset or "
            "another split."
        )
    private: dict[str, Any] | None = None
    if privacy.is_private(job.algorithm):
        pipeline, private = _fit_private(job, spec, X, y, roles, holdout, progress)
    else:
        pipeline = build_pipeline(spec, job.algorithm, balanced=job.balanced, seed=job.seed)
        fit(pipeline, X, y, progress=lambda stage, f: progress(stage, 0.05 + 0.8 * f))
    reference = drift_reference(frame, spec, pipeline.predict_proba(X)[:, 1])
    progress("logging to MLflow", 0.9)
    mlflow_ready()
    version = job.dataset_version
    training = provenance(frame, roles, version, y)
    if private is not None:
        training["privacy"] = private
    logged = tracking.log_trained_model(
        experiment=f"{job.district.slug}/{job.model_name}",
        model_name=f"{job.district.slug}-{job.model_name}",
        run_name=job.run_label,
        pipeline=pipeline,
        params={
            "algorithm": job.algorithm,
            "balanced": job.balanced and private is None,
            **({"epsilon": private["epsilon"], "delta": 0.0} if private else {}),
            "seed": job.seed,
            "features": spec.columns,
            "use_sensitive_attributes": job.use_sensitive_attributes,
            "dataset_sha256": version.sha256,
            "split": job.split,
        },
        metrics={"train_rows": float(len(frame)), "train_positives": float(y.sum())},
        # the training rows as read (whole-number columns stay integers): the registered
        # model's signature is typed from them; a private model gets made-up rows instead,
        # so no student's row travels with it
        input_example=(
            frame[spec.columns].head(5) if private is None else made_up_rows(frame, spec, private)
        ),
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
    fields = dict(
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
    if private is None:
        return Trained(ModelVersion.objects.create(**fields), logged.model_uri, len(frame))
    from edumlops.privacy import ledger

    try:
        with transaction.atomic():
            model = ModelVersion.objects.create(**fields)
            ledger.spend(
                district=job.district,
                dataset=version.dataset,
                epsilon=private["epsilon"],
                kind="training",
                what=f"model {logged.name} version {logged.version} "
                f"({privacy.DP_ALGORITHMS[job.algorithm]}) trained on {version}",
                actor=job.started_by,
                target=model,
                mechanism=private["mechanism"],
                details={
                    "algorithm": job.algorithm,
                    "rows": int(len(frame)),
                    "bounds_read_from_data": private["bounds_read_from_data"],
                    "workflow_run": job.workflow_run_id,
                },
            )
    except ledger.BudgetExceeded as exc:
        tracking.delete_version(logged.name, logged.version)
        raise TrainingError(f"The private model was not released: {exc}") from None
    return Trained(model, logged.model_uri, len(frame))


def _fit_private(
    job: TrainingJob,
    spec: FeatureSpec,
    X: pd.DataFrame,
    y: pd.Series,
    roles: Roles,
    holdout: pd.DataFrame | None,
    progress: Callable[[str, float], None],
) -> tuple[Any, dict[str, Any]]:
    """The private pipeline and what the card says about it (ε, mechanism, bounds and where
    they came from, accuracy against the non-private model of the same family)."""
    try:
        setup = privacy.resolve(
            spec, X, job.epsilon, job.bounds, schema_bounds(job.dataset_version)
        )
        _check_budget(job, setup.epsilon)
        progress(f"fitting with differential privacy (ε = {setup.epsilon:g})", 0.1)
        fitted = privacy.fit_private(spec, job.algorithm, setup, X, y, seed=job.seed)
        progress("fitting the non-private model for comparison", 0.6)
        public = privacy.fit_non_private(spec, job.algorithm, setup, X, y)
    except privacy.PrivacyError as exc:
        raise TrainingError(str(exc)) from None
    info: dict[str, Any] = {
        **setup.to_dict(),
        "algorithm": job.algorithm,
        "mechanism": privacy.MECHANISMS[job.algorithm],
        "epsilon_spent_in_fit": fitted.epsilon_spent,
        "non_private_algorithm": privacy.NON_PRIVATE[job.algorithm],
        "class_weighting": "not used: it would change the mechanism's sensitivity",
        "comparison": None,
    }
    if holdout is not None and len(holdout) and roles.label in holdout:
        yt = binary_target(holdout[roles.label], roles.positive)
        if len(set(yt.tolist())) == 2:
            rows = prepare_frame(holdout, spec)
            info["comparison"] = privacy.comparison(fitted.pipeline, public, rows, yt)
    progress("fitted", 0.85)
    return fitted.pipeline, info


def _check_budget(job: TrainingJob, epsilon: float) -> None:
    """Refuse before fitting when the cohort cannot afford ε (the spend at registration is the
    one that counts; this only spares a fit that could not be released)."""
    from edumlops.privacy import ledger

    try:
        ledger.check(job.district, job.dataset_version.dataset, epsilon)
    except ledger.BudgetExceeded as exc:
        raise TrainingError(f"The private model was not trained: {exc}") from None


def made_up_rows(frame: pd.DataFrame, spec: FeatureSpec, private: dict[str, Any]) -> pd.DataFrame:
    """Five rows typed like the training rows, with values spread over each number's bounds and
    the listed categories, none of them a student's: a private model's input example."""
    import numpy as np

    out = pd.DataFrame(index=range(5))
    for name in spec.numeric:
        low, high = private["bounds"][name]
        values = np.linspace(low, high, 5)
        dtype = frame[name].dtype
        out[name] = values.round().astype(dtype) if pd.api.types.is_integer_dtype(dtype) else values
    for name in spec.categorical:
        if pd.api.types.is_bool_dtype(frame[name].dtype):
            out[name] = [i % 2 == 0 for i in range(5)]
            continue
        cats = private["categories"].get(name) or ["missing"]
        out[name] = [cats[i % len(cats)] for i in range(5)]
    return out[spec.columns]


def schema_bounds(version: DatasetVersion | None) -> dict[str, tuple[float | None, float | None]]:
    """Each numeric column's min and max from the dataset version's profile."""
    out = {}
    for column in (version.schema if version is not None else None) or []:
        stats = column.get("stats") or {}
        if column.get("kind") == "numeric" and "min" in stats and "max" in stats:
            out[column["name"]] = (stats["min"], stats["max"])
    return out


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
