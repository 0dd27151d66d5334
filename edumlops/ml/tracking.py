"""MLflow: one place that logs training runs, registers model versions, moves aliases and reads
back models and artifacts. Aliases (`champion`, `challenger`), not the deprecated stages.

The tracking/registry store and the artifact root come from `configure()`; the Django settings
call it once per process with MLFLOW_TRACKING_URI and MLFLOW_ARTIFACT_ROOT.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ALIASES = ("champion", "challenger")
# The scikit-learn pipeline is logged beside the registered (pyfunc) model; this model-version
# tag holds its URI.
SKLEARN_MODEL = "sklearn-pipeline"
SKLEARN_TAG = "sklearn_model_uri"
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


def register_version(name: str, run: Any, artifact_dir: str, tags: dict[str, str]) -> LoggedModel:
    """Register the artifacts a run logged under `artifact_dir` as a new version of `name` (the
    registered model is made on first use, also when a parallel worker makes it meanwhile)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        try:
            mlflow_client.create_registered_model(name)
        except MlflowException:  # registered by a parallel worker in the meantime
            mlflow_client.get_registered_model(name)
    registered = mlflow_client.create_model_version(
        name, source=f"{run.info.artifact_uri}/{artifact_dir}", run_id=run.info.run_id, tags=tags
    )
    return LoggedModel(
        name=name,
        version=str(registered.version),
        run_id=run.info.run_id,
        model_uri=f"models:/{name}/{registered.version}",
    )


def log_trained_model(
    *,
    experiment: str,
    model_name: str,
    run_name: str,
    pipeline: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    input_example: Any,
    output_example: Any = None,
    tags: dict[str, str],
    extra_json: dict[str, Any] | None = None,
) -> LoggedModel:
    """One MLflow run: params, metrics and two logged models, the registered one being what the
    predict API serves.

    - `model` (registered as a new version of `model_name`): the pyfunc wrapper around the
      pipeline's ONNX file (edumlops.ml.pyfunc_model), whose probabilities are the served ones;
      its signature takes the features (typed from `input_example`, the training rows' own
      columns) and gives `probability`.
    - `sklearn-pipeline`: the fitted scikit-learn pipeline (what validation, export and the
      performance checks load through `load_pipeline`), named on the version by the tag
      `sklearn_model_uri`.

    `output_example` is ignored (kept for callers written before the pyfunc was registered)."""
    import mlflow
    from mlflow.models import infer_signature

    from edumlops.ml import onnx_bundle, pyfunc_model
    from edumlops.ml.training import prepare_frame

    spec = spec_of(pipeline)
    raw = input_example if isinstance(input_example, pd.DataFrame) else None
    onnx_bytes = onnx_bundle.to_onnx(pipeline, spec)
    exp = experiment_id(experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer-column hints about missing values
        with mlflow.start_run(experiment_id=exp, run_name=run_name) as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            if metrics:
                mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for name, payload in (extra_json or {}).items():
                mlflow.log_dict(payload, name)
            prepared = prepare_frame(raw, spec) if raw is not None else input_example
            sklearn_info = mlflow.sklearn.log_model(
                pipeline,
                name=SKLEARN_MODEL,
                signature=infer_signature(prepared, pipeline.predict_proba(prepared)),
                input_example=prepared,
                pip_requirements=PIP_REQUIREMENTS,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
            info = pyfunc_model.log(
                name="model",
                onnx_bytes=onnx_bytes,
                numeric=spec.numeric,
                categorical=spec.categorical,
                example=raw,
            )
            version = mlflow.register_model(
                info.model_uri,
                model_name,
                tags={**tags, SKLEARN_TAG: sklearn_info.model_uri},
            )
    return LoggedModel(
        name=model_name,
        version=str(version.version),
        run_id=run.info.run_id,
        model_uri=f"models:/{model_name}/{version.version}",
    )


def spec_of(pipeline: Any) -> Any:
    """The FeatureSpec a fitted pipeline (training.build_pipeline) was built for, read off its
    column transformer."""
    from edumlops.ml.training import FeatureSpec

    columns = {
        name: list(cols)
        for name, _, cols in pipeline.named_steps["prepare"].transformers_
        if name in ("numeric", "categorical")
    }
    return FeatureSpec(columns.get("numeric", []), columns.get("categorical", []))


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def log_metrics(
    run_id: str, metrics: dict[str, float], prefix: str = "", step: int | None = None
) -> None:
    c = client()
    for key, value in metrics.items():
        if value is None:
            continue
        c.log_metric(run_id, f"{prefix}{key}", float(value), step=step or 0)


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


def delete_version(name: str, version: str) -> None:
    """Take a registered version back out of the registry (a release the ledger refused)."""
    client().delete_model_version(name, str(version))


def version_with_alias(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def aliases_of(name: str, version: str) -> list[str]:
    return list(client().get_model_version(name, str(version)).aliases)


def load_pipeline(name: str, version: str) -> Any:
    """The fitted scikit-learn pipeline of a registered version: the model its `sklearn_model_uri`
    tag names (versions registered before the pyfunc wrapper are the pipeline itself)."""
    import mlflow

    tags = client().get_model_version(name, str(version)).tags or {}
    return mlflow.sklearn.load_model(tags.get(SKLEARN_TAG) or f"models:/{name}/{version}")


def served_onnx(name: str, version: str) -> bytes | None:
    """The ONNX file inside a registered version's pyfunc model (what MLflow users load), or
    None for versions registered before it was there."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from edumlops.ml.pyfunc_model import ONNX_ARTIFACT

    target = tempfile.mkdtemp(prefix="edumlops-artifact-")
    try:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/artifacts/{ONNX_ARTIFACT}",
                dst_path=target,
            )
        except (MlflowException, OSError):
            return None
        return Path(local).read_bytes()
    finally:
        shutil.rmtree(target, ignore_errors=True)


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
