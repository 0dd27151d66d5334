"""MLflow reproduces serving: a model trained, registered, exported and deployed through the
product (real PostgreSQL, real MLflow store, real ONNX Runtime), then loaded with MLflow's own
`mlflow.pyfunc.load_model("models:/<name>@champion")`, gives the predict API's probabilities on
the training CSV's own rows (whole numbers included) — in this process and in a fresh one that
has no Django — and its signature says what it takes and gives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from edumlops.datasets.models import ingest
from edumlops.deployments import services
from edumlops.ml import tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.ml.training import infer_features
from edumlops.registry import export
from edumlops.registry.models import mlflow_ready
from edumlops.registry.training import TrainingJob, train_and_register
from tests.deployments.conftest import EXCLUDE, fresh_cache  # noqa: F401  (serving cache)

pytestmark = pytest.mark.django_db

ROWS = 500


def deployed_model(district, staff, algorithm: str, csv: bytes):
    """Ingest the CSV, train on it, export, set the champion alias and roll out to the district,
    with the functions the Train model, Export ONNX and Register / set alias blocks and the
    deployments API call."""
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["sex"], school="school")
    version, _ = ingest(district=district, name="Round trip", data=csv, roles=roles)
    frame = version.frame()
    spec = infer_features(frame, exclude=EXCLUDE)
    job = TrainingJob(
        district=district,
        dataset_version=version,
        model_name="at-risk",
        algorithm=algorithm,
        balanced=True,
        seed=0,
        use_sensitive_attributes=False,
        split={"kind": "all rows"},
        run_label=f"round trip {algorithm}",
    )
    model = train_and_register(job, frame, roles, spec).model
    export.export_bundle(model, frame, parity_rows=200)
    model.set_alias("champion", actor=staff)
    services.roll_out(model, scope="district", user=staff)
    return model, spec


def api_probabilities(user, school, frame: pd.DataFrame) -> np.ndarray:
    rows = [
        {k: (None if v != v else v) for k, v in record.items()}  # NaN → null, as JSON has it
        for record in frame.to_dict("records")
    ]
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(f"/api/schools/{school.pk}/predict/", {"rows": rows}, format="json")
    assert response.status_code == 200, response.json()
    return np.array([p["probability"] for p in response.json()["predictions"]])


@pytest.mark.parametrize("algorithm", ["hist_gradient_boosting", "logistic_regression"])
def test_pyfunc_gives_the_predict_apis_probabilities_on_the_training_csv(
    ml_stores, district, school_a, staff, algorithm, tmp_path
):
    csv = generate_district(2500, seed=5).to_csv(index=False).encode()
    model, spec = deployed_model(district, staff, algorithm, csv)
    rows = pd.read_csv(io.BytesIO(csv)).head(ROWS)  # the CSV as anyone reads it
    assert pd.api.types.is_integer_dtype(rows["grade"]) and "grade" in spec.numeric
    assert rows[spec.numeric].isna().any().any(), "gaps in the numbers are part of the test"

    served = api_probabilities(staff, school_a, rows[spec.columns])

    mlflow_ready()
    uri = f"models:/{model.name}@champion"
    loaded = mlflow.pyfunc.load_model(uri)
    got = loaded.predict(rows)  # every column of the CSV; the model takes its own
    assert list(got.columns) == ["probability"]
    assert len(got) == ROWS
    np.testing.assert_allclose(got["probability"].to_numpy(), served, rtol=0, atol=1e-6)
    assert served.std() > 0.05, "the rows get different probabilities"

    # the signature tells the truth: each feature with its type, and what comes out
    signature = loaded.metadata.signature
    inputs = {c["name"]: c["type"] for c in signature.inputs.to_dict()}
    assert list(inputs) == spec.columns
    assert inputs["grade"] == "long"  # whole numbers in the CSV
    assert {inputs[c] for c in spec.numeric if c != "grade"} == {"double"}
    assert {inputs[c] for c in spec.categorical} == {"string"}
    assert all(c["required"] for c in signature.inputs.to_dict())
    assert signature.outputs.to_dict() == [
        {"name": "probability", "type": "double", "required": True}
    ]

    # what MLflow loads is the file the bundle serves; the scikit-learn pipeline stays loadable
    bundle = tracking.download(model.run_id, "bundle")
    assert tracking.served_onnx(model.name, model.version) == (bundle / "model.onnx").read_bytes()
    assert model.pipeline().predict_proba(rows[spec.columns].head(3)).shape == (3, 2)

    # a fresh Python without Django or the project on its path loads it from the model's code
    rows.to_csv(tmp_path / "rows.csv", index=False)
    script = textwrap.dedent(
        f"""
        import json, sys
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({settings.MLFLOW_TRACKING_URI!r})
        model = mlflow.pyfunc.load_model({uri!r})
        out = model.predict(pd.read_csv({str(tmp_path / "rows.csv")!r}))
        print(json.dumps({{
            "p": out["probability"].tolist(),
            "django": "django" in sys.modules,
            "code": sys.modules["edumlops.ml.serving_core"].__file__,
        }}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert not fresh["django"]
    assert "/artifacts/code/edumlops/ml/" in fresh["code"]
    np.testing.assert_allclose(fresh["p"], served, rtol=0, atol=1e-6)


def test_pyfunc_refuses_rows_the_predict_api_refuses(ml_stores, district, staff):
    csv = generate_district(800, seed=6).to_csv(index=False).encode()
    model, spec = deployed_model(district, staff, "logistic_regression", csv)
    rows = pd.read_csv(io.BytesIO(csv)).head(3)
    mlflow_ready()
    loaded = mlflow.pyfunc.load_model(f"models:/{model.name}@champion")
    with pytest.raises(Exception, match="grade"):  # MLflow's schema check names the column
        loaded.predict(rows.drop(columns=["grade"]))
    rows.loc[1, "quiz_average"] = float("inf")
    with pytest.raises(ValueError, match="quiz_average: must be a number"):
        loaded.predict(rows)
