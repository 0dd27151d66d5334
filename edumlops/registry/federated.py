"""Registering a model trained across schools: the global model Flower's ServerApp returned
becomes a model version like any other — logged to MLflow with the rounds' metrics, registered,
and described on its card (trained federatedly, on which schools, with what privacy).

The district holds no rows of the schools that trained it. A dataset of the district with the
same columns (its schema sample, e.g. last year's file) gives the features, the outcome, the
sensitive attributes, MLflow's input example and the bins drift is measured on; the card says so.
Validation and the bias report come from the confusion counts the schools returned for their own
held-out rows (edumlops.ml.fairness.expand_counts): no row is needed for either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.db import transaction

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.training import FeatureSpec, prepare_frame
from edumlops.privacy import ledger
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.registry.training import Trained, drift_reference
from edumlops.schools.models import District


@dataclass(frozen=True)
class FederatedJob:
    district: District
    schema_version: DatasetVersion
    model_name: str
    params: dict[str, Any]  # the block's parameters, for MLflow and the card
    run_label: str
    workflow_run_id: int | None = None
    started_by: Any = None


def summary(result: Any) -> dict[str, Any]:
    """What the card and the run page say about the federated training (no parameters)."""
    rounds = [
        {
            "round": int(r.get("round", i + 1)),
            "schools": sorted(map(str, r.get("schools", []))),
            "dropped": sorted(map(str, r.get("dropped") or [])),
            **{
                k: r[k]
                for k in ("rows", "train_loss", "seconds")
                if isinstance(r.get(k), int | float)
            },
        }
        for i, r in enumerate(result.rounds)
    ]
    evaluation = result.evaluation or {}
    return {
        "rounds": rounds,
        "schools": sorted(map(str, result.schools)),
        "evaluation": {
            "overall": evaluation.get("counts") or {},
            "rows": evaluation.get("rows"),
            "schools": evaluation.get("schools"),
            "accuracy": evaluation.get("accuracy"),
            "groups": result.group_counts,
        },
        "dp": result.dp or None,
        "secagg": result.secagg,
        "seconds": result.seconds,
    }


def register(
    job: FederatedJob,
    result: Any,
    pipeline: Any,
    sample: pd.DataFrame,
    roles: Roles,
    spec: FeatureSpec,
) -> Trained:
    """Log and register the global model; charge its ε to the ledger when its updates were
    noised (in the same transaction as the model version: a refused release leaves no model)."""
    fed = summary(result)
    dp = fed["dp"]
    if dp and dp.get("epsilon"):
        ledger.check(job.district, job.schema_version.dataset, float(dp["epsilon"]))
    X = prepare_frame(sample, spec)
    reference = drift_reference(sample, spec, pipeline.predict_proba(X)[:, 1])
    mlflow_ready()
    version = job.schema_version
    rows = [r["rows"] for r in fed["rounds"] if isinstance(r.get("rows"), int | float)]
    training = {
        # the schools' training rows in the largest round (each school tells the server its
        # count, not its rows); positives stay at the schools
        "rows": int(max(rows)) if rows else None,
        "positives": None,
        "dataset": f"{version} (schema and drift bins only; the rows stayed at the schools)",
        "dataset_sha256": version.sha256,
        "label": roles.label,
        "positive": roles.positive,
        "sensitive": roles.sensitive,
        "schools": fed["schools"],
        "federated": fed,
    }
    logged = tracking.log_trained_model(
        experiment=f"{job.district.slug}/{job.model_name}",
        model_name=f"{job.district.slug}-{job.model_name}",
        run_name=job.run_label,
        pipeline=pipeline,
        params={**job.params, "features": spec.columns, "schema_sha256": version.sha256},
        metrics={"rounds": float(len(fed["rounds"])), "schools": float(len(fed["schools"]))},
        input_example=sample[spec.columns].head(5),
        tags={
            "district": job.district.slug,
            "dataset_sha256": version.sha256,
            "workflow_run": str(job.workflow_run_id),
            "training": "federated",
        },
        extra_json={
            "features.json": spec.to_dict(),
            "training.json": training,
            "federated.json": fed,
            "drift_reference.json": reference,
        },
    )
    for r in fed["rounds"]:
        numbers = {
            k: v for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        numbers.pop("round", None)
        numbers["schools"] = float(len(r["schools"]))
        tracking.log_metrics(logged.run_id, numbers, prefix="round_", step=r["round"])
    with transaction.atomic():
        model = ModelVersion.objects.create(
            district=job.district,
            name=logged.name,
            version=logged.version,
            run_id=logged.run_id,
            algorithm=f"federated_{job.params.get('family', 'logistic_regression')}",
            dataset_version=version,
            dataset_sha256=version.sha256,
            features=spec.to_dict(),
            roles=roles.to_dict(),
            training=training,
            drift_reference=reference,
            workflow_run_id=job.workflow_run_id,
            created_by=job.started_by,
        )
        if dp and dp.get("epsilon"):
            ledger.spend(
                district=job.district,
                dataset=version.dataset,
                epsilon=float(dp["epsilon"]),
                delta=float(dp.get("delta") or 0.0),
                kind="federated",
                what=f"{model}: noised updates over {len(fed['rounds'])} rounds",
                mechanism="Gaussian noise on clipped school updates (Flower, client-side "
                "fixed clipping)",
                actor=job.started_by,
                target=model,
                details={"schools": fed["schools"], **dp},
            )
    return Trained(model, logged.model_uri, 0)
