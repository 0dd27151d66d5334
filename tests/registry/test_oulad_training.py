"""The real Open University data (OULAD studentInfo.csv, as shipped: unquoted, with the
spreadsheet-mangled imd_band) uploads through the API and trains end to end with imd_band and
disability as the sensitive attributes."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.ml import oulad
from edumlops.registry.models import ModelVersion
from tests.registry.conftest import run_here, steps_of
from workflows.models import Run

pytestmark = pytest.mark.django_db

PATH = oulad.default_path()


@pytest.mark.skipif(
    not PATH.exists(), reason=f"OULAD studentInfo.csv is not at {PATH} (see data/oulad/README.md)"
)
def test_oulad_uploads_and_trains_end_to_end_with_imd_band_and_disability(
    ml_stores, district, staff
):
    client = APIClient()
    client.force_authenticate(staff)
    with PATH.open("rb") as fh:
        response = client.post(
            "/api/datasets/", {"file": fh, "name": "OULAD studentInfo"}, format="multipart"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["rows"] == 32_593
    kinds = {c["name"]: c["kind"] for c in body["schema"]}
    assert kinds["id_student"] == "identifier"
    assert kinds["imd_band"] == "categorical" and kinds["studied_credits"] == "numeric"

    response = client.patch(
        f"/api/dataset-versions/{body['id']}/",
        {
            "label": "final_result",
            "positive": ["Fail", "Withdrawn"],
            "sensitive": ["imd_band", "disability"],
            "time": "code_presentation",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()

    response = client.post(
        "/api/models/train/",
        {
            "dataset_version": body["id"],
            "model_name": "oulad-risk",
            "algorithm": "hist_gradient_boosting",
            "min_auc": 0.6,
            "if_inconclusive": "ask_approval",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["run"])
    status = run_here(run)
    steps = steps_of(run)
    assert steps["train"].status == "succeeded", steps["train"].reason
    assert steps["validate"].status == "succeeded", steps["validate"].reason
    model = ModelVersion.objects.get(workflow_run=run)
    assert "id_student" not in model.feature_spec().columns
    assert not {"imd_band", "disability"} & set(model.feature_spec().columns)
    attributes = {c["attribute"] for c in model.bias_report["checks"]}
    assert {"imd_band", "disability"} <= attributes
    assert model.bias_outcome in ("pass", "fail", "inconclusive")
    assert status in ("succeeded", "failed", "waiting_approval")
    if model.bias_outcome == "pass":
        assert status == "succeeded" and model.bundle["manifest"]["files"]["model.onnx"]
