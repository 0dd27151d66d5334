"""edumlops.ml.tracking and pyfunc_model without Django: a real MLflow store in a temporary
folder, real skl2onnx and ONNX Runtime. The registered model is the pyfunc wrapper (ONNX
probabilities, typed signature), the scikit-learn pipeline stays loadable, and versions registered
before the wrapper still load."""

from __future__ import annotations

import io

import mlflow
import numpy as np
import pandas as pd
import pytest

from edumlops.ml import onnx_bundle, pyfunc_model, tracking
from edumlops.ml.synth import generate_district
from edumlops.ml.training import (
    FeatureSpec,
    binary_target,
    build_pipeline,
    fit,
    infer_features,
    prepare_frame,
)

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


@pytest.fixture
def store(tmp_path):
    tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "art").as_uri())
    yield tmp_path
    tracking._configured = None


def trained(algorithm: str = "hist_gradient_boosting", rows: int = 1200, seed: int = 1):
    raw = pd.read_csv(io.StringIO(generate_district(rows, seed=seed).to_csv(index=False)))
    spec = infer_features(raw, exclude=EXCLUDE)
    X, y = prepare_frame(raw, spec), binary_target(raw["at_risk"], ["yes"])
    return raw, spec, fit(build_pipeline(spec, algorithm, balanced=True, seed=seed), X, y)


def log(raw, pipeline, name: str = "d-at-risk") -> tracking.LoggedModel:
    return tracking.log_trained_model(
        experiment="d/at-risk",
        model_name=name,
        run_name="test",
        pipeline=pipeline,
        params={"algorithm": "x"},
        metrics={},
        input_example=raw.head(5),
        tags={"district": "d"},
    )


def test_the_registered_pyfunc_gives_onnx_probabilities_on_raw_rows(store):
    raw, spec, pipeline = trained()
    logged = log(raw[spec.columns], pipeline)
    assert tracking.spec_of(pipeline) == spec
    tracking.set_alias(logged.name, "challenger", logged.version)

    model = mlflow.pyfunc.load_model(f"models:/{logged.name}@challenger")
    got = model.predict(raw.head(300))["probability"].to_numpy()
    onnx = onnx_bundle.OnnxModel(tracking.served_onnx(logged.name, logged.version))
    expected = onnx.predict_proba(prepare_frame(raw.head(300), spec))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)

    # the scikit-learn pipeline (validation, export, the monitors) loads from the tag
    pipe = tracking.load_pipeline(logged.name, logged.version)
    assert type(pipe).__name__ == "Pipeline"
    assert pipe.predict_proba(prepare_frame(raw.head(5), spec)).shape == (5, 2)
    tags = tracking.client().get_model_version(logged.name, logged.version).tags
    assert tags["district"] == "d" and tags[tracking.SKLEARN_TAG].startswith("models:/")


def test_the_signature_types_features_from_the_training_rows():
    raw = pd.DataFrame(
        {
            "grade": [9, 10],
            "gpa": [2.5, None],
            "school": ["a", None],
            "online": [True, False],
        }
    )
    sig = pyfunc_model.signature(["grade", "gpa"], ["school", "online"], raw)
    assert [(c["name"], c["type"]) for c in sig.inputs.to_dict()] == [
        ("grade", "long"),
        ("gpa", "double"),
        ("school", "string"),
        ("online", "boolean"),
    ]
    assert [c["name"] for c in sig.outputs.to_dict()] == ["probability"]
    # without an example (or from a prepared frame) every number is a double
    untyped = pyfunc_model.signature(["grade"], ["school"], None)
    assert [c["type"] for c in untyped.inputs.to_dict()] == ["double", "string"]


def test_rows_are_sent_to_serving_as_json_rows_would_be():
    frame = pd.DataFrame(
        {
            "grade": np.array([9, 10], dtype=np.int64),
            "gpa": [np.nan, 3.25],
            "school": ["a", np.nan],
            "online": [True, False],
            "ignored": ["x", "y"],
        }
    )
    rows = pyfunc_model.rows_of(frame, ["grade", "gpa"], ["school", "online"])
    assert rows == [
        {"grade": 9, "gpa": None, "school": "a", "online": "True"},
        {"grade": 10, "gpa": 3.25, "school": None, "online": "False"},
    ]
    assert type(rows[0]["grade"]) is int
    with pytest.raises(ValueError, match="lack the feature"):
        pyfunc_model.rows_of(frame, ["age"], [])


def test_bad_values_are_refused_as_the_predict_api_refuses_them():
    raw, spec, pipeline = trained("logistic_regression", rows=400)
    onnx = onnx_bundle.to_onnx(pipeline, spec)
    model = pyfunc_model.serving_model(onnx, spec.numeric, spec.categorical)
    frame = raw[spec.columns].head(3).copy()
    assert len(pyfunc_model.probabilities(model, frame)) == 3
    frame["prior_gpa"] = frame["prior_gpa"].astype(object)
    frame.loc[frame.index[1], "prior_gpa"] = "high"
    with pytest.raises(ValueError, match="row 1 prior_gpa: must be a number"):
        pyfunc_model.probabilities(model, frame)


def test_the_model_carries_the_django_free_code(tmp_path):
    package = pyfunc_model.code_package(tmp_path)
    names = {p.name for p in (package / "ml").glob("*.py")}
    assert {"pyfunc_model.py", "serving_core.py", "runtime.py", "manifest.py"} <= names
    for source in package.rglob("*.py"):
        lines = source.read_text().splitlines()
        assert not [x for x in lines if x.lstrip().startswith(("import django", "from django"))]


def test_a_version_registered_before_the_wrapper_still_loads(store):
    """Older versions are the scikit-learn model itself, with no ONNX inside: the pipeline loads
    from the version, and export converts it (served_onnx answers None)."""
    raw, spec, pipeline = trained("logistic_regression", rows=400)
    X = prepare_frame(raw, spec)
    with mlflow.start_run(experiment_id=tracking.experiment_id("old")):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            skops_trusted_types=tracking.SKOPS_TRUSTED_TYPES,
            pip_requirements=tracking.PIP_REQUIREMENTS,
        )
        version = mlflow.register_model(info.model_uri, "d-old")
    pipe = tracking.load_pipeline("d-old", str(version.version))
    np.testing.assert_allclose(pipe.predict_proba(X.head(5)), pipeline.predict_proba(X.head(5)))
    assert tracking.served_onnx("d-old", str(version.version)) is None


def test_spec_of_reads_a_numeric_only_pipeline():
    raw, _, _ = trained("logistic_regression", rows=300)
    spec = FeatureSpec(["attendance_rate", "prior_gpa"], [])
    pipeline = fit(
        build_pipeline(spec, "logistic_regression", balanced=False, seed=0),
        prepare_frame(raw, spec),
        binary_target(raw["at_risk"], ["yes"]),
    )
    assert tracking.spec_of(pipeline) == spec
