"""Registering an enrollment forecast: the forecast rows (one per school, grade and future term,
with the interval) and the configuration that made them become a model version of task type
"forecast", like any other version in MLflow and in the mirror.

A forecast has no pipeline to serve: what is served is the table it fitted. It is logged as
MLflow artifacts of the training run (`forecast/forecast.json`: the configuration and the rows;
`forecast/history.json`: what the history held) and the registered version's source is that
`forecast/` folder, so `models:/<name>/<version>/forecast.json` is the table. `load_forecast`
reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.forecast import LABELS, forecast
from edumlops.ml.task_types import TaskType
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import District

ARTIFACT_DIR = "forecast"
TABLE = "forecast.json"
FORMAT = 1  # of forecast.json: bump when its shape changes
COLUMNS = (
    "school", "grade", "year", "term", "period", "step",
    "point", "lower", "upper", "level", "method", "reason",
)  # fmt: skip


class ForecastError(ValueError):
    """The history cannot be forecast, or a stored forecast cannot be read; the message says why
    and what to change."""


@dataclass(frozen=True)
class ForecastJob:
    district: District
    dataset_version: DatasetVersion
    model_name: str  # without the district's prefix
    method: str  # seasonal_naive, ets or gbm
    horizon: int | None  # terms ahead; None = one school year
    level: float  # of the prediction interval, e.g. 0.8
    by: str  # "grade" (a series per school and grade) or "school"
    run_label: str
    workflow_run_id: int | None = None
    started_by: Any = None
    calibrate: int = 0  # past origins the intervals are calibrated on (0: the model's own)


@dataclass(frozen=True)
class Trained:
    model: ModelVersion
    model_uri: str
    rows: pd.DataFrame  # the forecast


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def describe_history(history: pd.DataFrame, by: str) -> dict[str, Any]:
    """What the model card and the run say about the history a forecast was fitted on."""
    keys = ["school", "grade"] if by == "grade" else ["school"]
    periods = history.drop_duplicates(["year", "term"])
    first, last = periods.iloc[0], periods.iloc[-1]
    return {
        "rows": int(len(history)),
        "series": int(history.groupby(keys).ngroups),
        "schools": sorted(map(str, history["school"].unique()))[:200],
        "terms": int(len(periods)),
        "period": {
            "from": str(first.get("period", f"{first['year']} {first['term']}")),
            "to": str(last.get("period", f"{last['year']} {last['term']}")),
        },
        "students_last_term": int(
            history[(history["year"] == last["year"]) & (history["term"] == last["term"])][
                "enrollment"
            ].sum()
        ),
    }


def train_and_register(
    job: ForecastJob,
    history: pd.DataFrame,
    roles: Roles,
    progress: Callable[[str, float], None] = lambda stage, fraction: None,
) -> Trained:
    """Fit the forecast on the whole history, log it to MLflow and register it."""
    progress(f"forecasting with {LABELS[job.method]}", 0.1)
    try:
        rows = forecast(
            history,
            method=job.method,
            horizon=job.horizon,
            level=job.level,
            by=job.by,
            calibrate=job.calibrate,
        )
    except ValueError as exc:
        raise ForecastError(str(exc)) from None
    calibration = rows.attrs.get("calibration")
    rows = rows[[c for c in COLUMNS if c in rows.columns]]
    version = job.dataset_version
    horizon = int(rows["step"].max())
    fallbacks = rows[(rows["step"] == 1) & (rows["reason"] != "")]
    config = {
        "format": FORMAT,
        "method": job.method,
        "horizon": horizon,
        "level": job.level,
        "by": job.by,
        "calibrate": job.calibrate,
        "dataset": str(version),
        "dataset_sha256": version.sha256,
        "first_period": str(rows["period"].iloc[0]),
        "last_period": str(rows["period"].iloc[horizon - 1]),
    }
    training = {
        **describe_history(history, job.by),
        "dataset": str(version),
        "dataset_sha256": version.sha256,
        "forecast": {
            **config,
            "series": int(len(rows) // horizon),
            "fallbacks": int(len(fallbacks)),
            "fallback_reasons": sorted(set(fallbacks["reason"]))[:20],
            "fallback_series": [
                " grade ".join(str(v) for v in key)
                for key in fallbacks[[c for c in ("school", "grade") if c in fallbacks]]
                .itertuples(index=False, name=None)
            ][:20],
            "total_next_term": float(rows.loc[rows["step"] == 1, "point"].sum()),
            "calibration": calibration,
        },
    }
    progress("logging to MLflow", 0.8)
    mlflow_ready()
    logged = _log(job, config, rows, training)
    model = ModelVersion.objects.create(
        district=job.district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=job.method,
        task_type=TaskType.FORECAST.value,
        dataset_version=version,
        dataset_sha256=version.sha256,
        features={},
        roles=roles.to_dict(),
        training=training,
        workflow_run_id=job.workflow_run_id,
        created_by=job.started_by,
    )
    return Trained(model, logged.model_uri, rows)


def _log(
    job: ForecastJob, config: dict[str, Any], rows: pd.DataFrame, training: dict[str, Any]
) -> tracking.LoggedModel:
    import mlflow

    name = f"{job.district.slug}-{job.model_name}"
    tags = {
        "district": job.district.slug,
        "dataset_sha256": job.dataset_version.sha256,
        "workflow_run": str(job.workflow_run_id),
        "task_type": TaskType.FORECAST.value,
    }
    experiment = tracking.experiment_id(f"{job.district.slug}/{job.model_name}")
    with mlflow.start_run(experiment_id=experiment, run_name=job.run_label) as run:
        mlflow.log_params(
            {
                "method": job.method,
                "horizon": config["horizon"],
                "level": job.level,
                "by": job.by,
                "dataset_sha256": job.dataset_version.sha256,
            }
        )
        mlflow.log_metrics(
            {
                "history_rows": float(training["rows"]),
                "series": float(training["forecast"]["series"]),
                "fallbacks": float(training["forecast"]["fallbacks"]),
                "total_next_term": training["forecast"]["total_next_term"],
            }
        )
        mlflow.set_tags(tags)
        mlflow.log_dict({"config": config, "rows": _records(rows)}, f"{ARTIFACT_DIR}/{TABLE}")
        mlflow.log_dict(training, f"{ARTIFACT_DIR}/history.json")
        mlflow.log_dict(training, "training.json")
    return tracking.register_version(name, run, ARTIFACT_DIR, tags)


def load_forecast(model_version: ModelVersion) -> pd.DataFrame:
    """The forecast rows of a forecast model version, read back from MLflow: one row per series
    and future term with school, grade (per-grade forecasts), year, term, period, step, point,
    lower, upper, level, the method used and the reason for a fallback. The configuration
    (method, horizon, level, dataset) is in `.attrs["config"]`."""
    if model_version.task_type != TaskType.FORECAST.value:
        raise ForecastError(
            f"{model_version} is not a forecast (its task type is "
            f"{model_version.task_type}): only a version made by Train enrollment forecast has "
            "forecast rows."
        )
    from mlflow.exceptions import MlflowException

    mlflow_ready()
    uri = f"models:/{model_version.name}/{model_version.version}/{TABLE}"
    try:
        import mlflow

        payload = mlflow.artifacts.load_dict(uri)
    except (MlflowException, OSError) as exc:
        raise ForecastError(
            f"The forecast of {model_version} cannot be read from MLflow ({uri}): {exc}. Is "
            "MLFLOW_TRACKING_URI the store it was trained with? Otherwise train it again."
        ) from None
    config = payload.get("config") or {}
    if config.get("format") != FORMAT:
        raise ForecastError(
            f"The forecast of {model_version} is stored in format {config.get('format')}, and "
            f"this version of EduMLOps reads format {FORMAT}: train it again."
        )
    rows = pd.DataFrame(payload.get("rows") or [])
    rows = rows[[c for c in COLUMNS if c in rows.columns]]
    for column in ("lower", "upper"):
        rows[column] = rows[column].astype(float)
    rows.attrs["config"] = config
    return rows
