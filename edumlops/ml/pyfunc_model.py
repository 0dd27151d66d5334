"""The model MLflow registers: a pyfunc wrapper around the very ONNX file and the very input
handling the predict API serves, so that

    mlflow.pyfunc.load_model("models:/<name>@champion").predict(frame)

gives the probabilities `POST /api/schools/{id}/predict/` answers (the API rounds them to six
decimals). A plain scikit-learn load does not: ONNX Runtime reads numbers as float32 and tree
ensembles keep float32 split thresholds, so float64 inputs near a split land on the other side.

The wrapper needs only this package's Django-free modules (copied into the MLflow model as its
code, see `code_package`), onnxruntime, numpy and pandas. Its signature says what it takes and
gives: one column per feature — `long` for a number the training data held as whole numbers,
`double` for other numbers, `string` (or `boolean`) for a category — and one output column,
`probability`, the positive class's probability.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from edumlops.ml.runtime import OrtModel
from edumlops.ml.serving_core import RequestError, ServingModel, feed, validate

ONNX_ARTIFACT = "model.onnx"
OUTPUT = "probability"
# What the wrapper needs to run where EduMLOps is not installed (MLflow's pip requirements).
PIP_REQUIREMENTS = ["mlflow", "onnxruntime", "numpy", "pandas"]


class ServedModel(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame (one column per feature, in any order; other columns are ignored) the
    way the predict API scores its JSON rows."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self._model: ServingModel | None = None

    def load_context(self, context: Any) -> None:
        self._model = serving_model(
            Path(context.artifacts[ONNX_ARTIFACT]).read_bytes(), self.numeric, self.categorical
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        if self._model is None:
            self.load_context(context)
        assert self._model is not None
        return pd.DataFrame({OUTPUT: probabilities(self._model, model_input)})


def serving_model(onnx_bytes: bytes, numeric: list[str], categorical: list[str]) -> ServingModel:
    """A ServingModel over an ONNX file, as the predict API builds one from a bundle (without the
    bundle's thresholds and explanations: MLflow gets the probability only)."""
    return ServingModel(
        model_version_id=0,
        name="",
        version="",
        algorithm="",
        onnx=OrtModel(onnx_bytes),
        numeric=list(numeric),
        categorical=list(categorical),
        thresholds={},
    )


def rows_of(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> list[dict]:
    """The frame's rows as the JSON rows a client of the predict API sends: numbers as Python
    numbers, categories as text (true/false as "True"/"False", the way training reads them), and
    null for a gap."""
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"The rows lack the feature(s) {', '.join(missing)}: send one column per feature "
            f"({', '.join([*numeric, *categorical])})."
        )
    columns: dict[str, list[Any]] = {}
    for name in numeric:
        columns[name] = [_number(v) for v in frame[name].tolist()]
    for name in categorical:
        columns[name] = [_category(v) for v in frame[name].tolist()]
    return [{name: columns[name][i] for name in columns} for i in range(len(frame))]


def _number(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return value  # refused by validate, as the API refuses it
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _category(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    return value


def probabilities(model: ServingModel, frame: pd.DataFrame) -> np.ndarray:
    """The positive class's probability per row: the predict API's validation, input arrays and
    ONNX session (serving_core), unrounded."""
    rows = rows_of(frame, model.numeric, model.categorical)
    if not rows:
        return np.zeros(0, dtype=np.float64)
    try:
        validate(model, rows)
    except RequestError as exc:
        shown = "; ".join(f"row {e['row']} {e['field']}: {e['problem']}" for e in exc.errors[:5])
        raise ValueError(f"{exc} ({shown})") from None
    return np.asarray(model.onnx.predict_feed(feed(model, rows)), dtype=np.float64)


def signature(numeric: list[str], categorical: list[str], example: pd.DataFrame | None) -> Any:
    """Inputs: one required column per feature, typed from the training rows' own columns
    (`example`): `long` for whole-number columns, `double` for other numbers, `boolean` for a
    true/false category, `string` for other categories. Output: `probability` (double)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    def dtype(name: str) -> Any:
        return example[name].dtype if example is not None and name in example else None

    inputs = []
    for name in numeric:
        kind = dtype(name)
        integral = kind is not None and pd.api.types.is_integer_dtype(kind)
        inputs.append(ColSpec("long" if integral else "double", name))
    for name in categorical:
        kind = dtype(name)
        boolean = kind is not None and pd.api.types.is_bool_dtype(kind)
        inputs.append(ColSpec("boolean" if boolean else "string", name))
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", OUTPUT)]))


def code_package(target: Path) -> Path:
    """A copy of the Django-free part of EduMLOps (`edumlops/__init__.py` and `edumlops/ml/`)
    under `target`, for MLflow's `code_paths`: a pyfunc load puts it on sys.path, so the model
    loads where EduMLOps is not installed."""
    here = Path(__file__).resolve().parent
    package = Path(target) / "edumlops"
    (package / "ml").mkdir(parents=True)
    shutil.copyfile(here.parent / "__init__.py", package / "__init__.py")
    for source in here.glob("*.py"):
        shutil.copyfile(source, package / "ml" / source.name)
    return package


def log(
    *,
    name: str,
    onnx_bytes: bytes,
    numeric: list[str],
    categorical: list[str],
    example: pd.DataFrame | None,
) -> Any:
    """Log the wrapper, its ONNX file and its code in the active MLflow run; MLflow's ModelInfo."""
    with tempfile.TemporaryDirectory(prefix="edumlops-pyfunc-") as tmp:
        onnx_path = Path(tmp) / ONNX_ARTIFACT
        onnx_path.write_bytes(onnx_bytes)
        code = code_package(Path(tmp) / "code")
        input_example = None
        if example is not None and len(example):
            input_example = example[[*numeric, *categorical]].head(5)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ServedModel(numeric, categorical),
            artifacts={ONNX_ARTIFACT: str(onnx_path)},
            code_paths=[str(code)],
            signature=signature(numeric, categorical, example),
            input_example=input_example,
            pip_requirements=PIP_REQUIREMENTS,
        )
