"""MLflow: one place that logs training runs, registers model versions, moves aliases and reads
back models and artifacts. Aliases (`champion`, `challenger`), not the deprecated stages.

The tracking/registry store and the artifact root come from `configure()`; the Django settings
call it once per process with MLFLOW_TRACKING_URI and MLFLOW_ARTIFACT_ROOT.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALIASES = ("champion", "challenger")
_configured: tuple[str, str] | None = None

# A model logged here is served through ONNX or re-loaded by this code, whose dependencies are
# pinned by the project: naming them saves MLflow's slow requirement inference (a subprocess).
PIP_REQUIREMENTS = ["scikit-learn", "pandas", "numpy"]
# MLflow 3 saves scikit-learn models with skops (no pickle) and refuses types it was not told
# to trust: a fitted ColumnTransformer/OneHotEncoder keeps numpy dtype objects, and histogram
# gradient boosting its TreePredictor (skops distrusts its raw node indices in files from
# strangers; these files are written by our own workers into the district's own store).
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",  # random forests
]


def configure(tracking_uri: str, artifact_root: str) -> None:
    """Point MLflow at the store (idempotent, cheap to call before every use)."""
    global _configured
    if _configured == (tracking_uri, artifact_root):
        return
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _configured = (tracking_uri, artifact_root)


def client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def experiment_id(name: str) -> str:
    assert _configured, "call tracking.configure() first"
    c = client()
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = _configured[1]
    location = root.rstrip("/") + "/" + _slug(name) if root else None
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created by a parallel worker in the meantime
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name.lower()).strip("-")


@dataclass(frozen=True)
class LoggedModel:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/<name>/<version>

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
        }


def log_trained_model(
    *,
    experiment: str,
    model_name: str,
    run_name: str,
    pipeline: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    input_example: Any,
    output_example: Any,
    tags: dict[str, str],
    extra_json: dict[str, Any] | None = None,
) -> LoggedModel:
    """One MLflow run: params, metrics, the fitted pipeline with its signature and an input
    example, registered as a new version of `model_name`."""
    import mlflow
    from mlflow.models import infer_signature

    exp = experiment_id(experiment)
    signature = infer_signature(input_example, output_example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer-column hints about missing values
        with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            if metrics:
                mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for name, payload in (extra_json or {}).items():
                mlflow.log_dict(payload, name)
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=input_example,
                pip_requirements=PIP_REQUIREMENTS,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
            version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    return LoggedModel(
        name=model_name,
        version=str(version.version),
        run_id=run.info.run_id,
        model_uri=f"models:/{model_name}/{version.version}",
    )


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def log_metrics(run_id: str, metrics: dict[str, float], prefix: str = "") -> None:
    c = client()
    for key, value in metrics.items():
        if value is None:
            continue
        c.log_metric(run_id, f"{prefix}{key}", float(value))


def log_json(run_id: str, artifact_file: str, payload: dict[str, Any]) -> None:
    client().log_dict(run_id, payload, artifact_file)


def log_text(run_id: str, artifact_file: str, text: str) -> None:
    client().log_text(run_id, text, artifact_file)


def log_directory(run_id: str, local_dir: Path, artifact_path: str) -> None:
    client().log_artifacts(run_id, str(local_dir), artifact_path)


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)


def set_alias(name: str, alias: str, version: str) -> None:
    if alias not in ALIASES:
        raise ValueError(f"Unknown alias '{alias}': use one of {', '.join(ALIASES)}.")
    client().set_registered_model_alias(name, alias, str(version))


def version_with_alias(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def aliases_of(name: str, version: str) -> list[str]:
    return list(client().get_model_version(name, str(version)).aliases)


def load_pipeline(name: str, version: str) -> Any:
    import mlflow

    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def download(run_id: str, artifact_path: str) -> Path:
    """A local copy of a run's artifact (file or directory)."""
    import mlflow

    target = tempfile.mkdtemp(prefix="edumlops-artifact-")
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=target
        )
    )


def read_json(run_id: str, artifact_file: str) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException

    try:
        path = download(run_id, artifact_file)
    except (MlflowException, OSError):
        return None
    return json.loads(path.read_text())
