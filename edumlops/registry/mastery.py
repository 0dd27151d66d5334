"""Registering a knowledge-tracing model: the BKT parameters fitted per skill on an answer log
(edumlops.ml.knowledge_tracing) become a model version of task type "mastery", like any other
version in MLflow and in the mirror.

A BKT model has no pipeline to serve: it is five probabilities per skill. They are logged as
MLflow parameters of the training run (`<skill>.learn`, `<skill>.guess` ...) to compare runs, and
as the artifact `mastery/model.json` (`BKTModel.to_dict()` with the configuration that made it);
the registered version's source is that `mastery/` folder, so
`models:/<name>/<version>/model.json` is the model. `load_mastery_model` reads it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from edumlops.datasets.models import DatasetVersion
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.knowledge_tracing import PARAMETERS, BKTModel, fit_bkt
from edumlops.ml.task_types import TaskType
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import District

ARTIFACT_DIR = "mastery"
MODEL_FILE = "model.json"
FORMAT = 1  # of model.json around BKTModel.to_dict(): bump when its shape changes
ALGORITHM = "bkt"


class MasteryError(ValueError):
    """The answers cannot be traced, or a stored model cannot be read; the message says why and
    what to change."""


@dataclass(frozen=True)
class MasteryJob:
    district: District
    dataset_version: DatasetVersion
    model_name: str  # without the district's prefix
    columns: Mapping[str, str]  # student, skill, correct, order: the answer log's column names
    forgets: bool
    num_fits: int
    min_answers: int
    seed: int
    run_label: str
    workflow_run_id: int | None = None
    started_by: Any = None

    @property
    def fit(self) -> dict[str, Any]:
        """What fit_bkt was given besides the answers: validation refits with the same."""
        return {
            "forgets": self.forgets,
            "num_fits": self.num_fits,
            "min_answers": self.min_answers,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Trained:
    model: ModelVersion
    model_uri: str
    bkt: BKTModel


def train_and_register(
    job: MasteryJob,
    answers: pd.DataFrame,
    roles: Roles,
    progress: Callable[[str, float], None] = lambda stage, fraction: None,
) -> Trained:
    """Fit BKT per skill on the whole answer log, log it to MLflow and register it."""
    progress("fitting BKT per skill with pyBKT", 0.1)
    try:
        bkt = fit_bkt(answers, **dict(job.columns), **job.fit)
    except ValueError as exc:
        raise MasteryError(str(exc)) from None
    version = job.dataset_version
    training = {
        "answers": int(bkt.info["answers"]),
        "students": int(bkt.info["students"]),
        "skills": bkt.trained_on,
        "columns": dict(job.columns),
        "fit": job.fit,
        "parameters": {name: p.to_dict() for name, p in bkt.skills.items()},
        "log_likelihood": bkt.info.get("log_likelihood", {}),
        "fit_seconds": bkt.info.get("fit_seconds"),
        "library": {"name": bkt.info.get("library"), "version": bkt.info.get("version")},
        "dataset": str(version),
        "dataset_sha256": version.sha256,
    }
    progress("logging to MLflow", 0.8)
    mlflow_ready()
    logged = _log(job, bkt, training)
    model = ModelVersion.objects.create(
        district=job.district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=ALGORITHM,
        task_type=TaskType.MASTERY.value,
        dataset_version=version,
        dataset_sha256=version.sha256,
        features={},
        roles=roles.to_dict(),
        training=training,
        workflow_run_id=job.workflow_run_id,
        created_by=job.started_by,
    )
    return Trained(model, logged.model_uri, bkt)


def parameter_keys(skills: list[str]) -> dict[str, str]:
    """An MLflow parameter prefix per skill: its name with what MLflow refuses in a key (only
    letters, digits, _ - . and spaces pass here) replaced by _, numbered when two collide."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for name in skills:
        key = re.sub(r"[^\w\-. ]", "_", name).strip(" .")[:200] or "skill"
        base, n = key, 2
        while key in taken:
            key, n = f"{base}_{n}", n + 1
        taken.add(key)
        keys[name] = key
    return keys


def _log(job: MasteryJob, bkt: BKTModel, training: dict[str, Any]) -> tracking.LoggedModel:
    import mlflow

    name = f"{job.district.slug}-{job.model_name}"
    tags = {
        "district": job.district.slug,
        "dataset_sha256": job.dataset_version.sha256,
        "workflow_run": str(job.workflow_run_id),
        "task_type": TaskType.MASTERY.value,
    }
    keys = parameter_keys(list(bkt.skills))
    params: dict[str, Any] = {
        "algorithm": ALGORITHM,
        **{f"fit.{k}": v for k, v in job.fit.items()},
        **{f"column.{k}": v for k, v in job.columns.items()},
        "dataset_sha256": job.dataset_version.sha256,
    }
    for skill, p in bkt.skills.items():
        for parameter in PARAMETERS:
            params[f"{keys[skill]}.{parameter}"] = round(getattr(p, parameter), 6)
    experiment = tracking.experiment_id(f"{job.district.slug}/{job.model_name}")
    with mlflow.start_run(experiment_id=experiment, run_name=job.run_label) as run:
        mlflow.log_params(params)  # the client sends them in batches of 100
        mlflow.log_metrics(
            {
                "answers": float(training["answers"]),
                "students": float(training["students"]),
                "skills": float(len(bkt.skills)),
            }
        )
        mlflow.set_tags(tags)
        payload = {"format": FORMAT, "fit": job.fit, "columns": dict(job.columns)}
        mlflow.log_dict({**payload, "model": bkt.to_dict()}, f"{ARTIFACT_DIR}/{MODEL_FILE}")
        mlflow.log_dict(training, "training.json")
    return tracking.register_version(name, run, ARTIFACT_DIR, tags)


def load_mastery_model(model_version: ModelVersion) -> BKTModel:
    """The BKT parameters of a mastery model version, read back from MLflow; what made them
    (fit settings and column names) is in `.info["registry"]`."""
    if model_version.task_type != TaskType.MASTERY.value:
        raise MasteryError(
            f"{model_version} is not a knowledge-tracing model (its task type is "
            f"{model_version.task_type}): only a version made by Train mastery (BKT) has BKT "
            "parameters."
        )
    from mlflow.exceptions import MlflowException

    mlflow_ready()
    uri = f"models:/{model_version.name}/{model_version.version}/{MODEL_FILE}"
    try:
        import mlflow

        payload = mlflow.artifacts.load_dict(uri)
    except (MlflowException, OSError) as exc:
        raise MasteryError(
            f"The BKT parameters of {model_version} cannot be read from MLflow ({uri}): {exc}. "
            "Is MLFLOW_TRACKING_URI the store it was trained with? Otherwise train it again."
        ) from None
    if payload.get("format") != FORMAT:
        raise MasteryError(
            f"The BKT parameters of {model_version} are stored in format "
            f"{payload.get('format')}, and this version of EduMLOps reads format {FORMAT}: "
            "train it again."
        )
    try:
        model = BKTModel.from_dict(payload.get("model") or {})
    except ValueError as exc:
        raise MasteryError(f"The BKT parameters of {model_version} are damaged: {exc}") from None
    model.info["registry"] = {"fit": payload.get("fit"), "columns": payload.get("columns")}
    return model
