"""Central serving loads a model version's bundle from the server's local copy
(edumlops.registry.bundles, the one edge nodes download), not from MLflow on every cache miss."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from rest_framework.test import APIClient

from edumlops.deployments import services, serving
from edumlops.registry import bundles
from tests.deployments.conftest import make_model, rows_for

pytestmark = pytest.mark.django_db


def _predict(user, school, rows):
    client = APIClient()
    client.force_authenticate(user)
    return client.post(f"/api/schools/{school.pk}/predict/", {"rows": rows}, format="json")


def test_a_cache_miss_loads_the_local_copy_without_mlflow(
    ml_stores, settings, district, school_a, staff
):
    settings.VAR_DIR = ml_stores / "var"
    forest = make_model(district, algorithm="random_forest")  # no linear terms to read
    services.roll_out(forest, scope="district", user=staff)
    rows = rows_for(4)
    expected = forest.predict_proba(pd.DataFrame(rows))  # the pipeline, from MLflow
    folder = bundles.bundle_dir(forest)  # the local copy, filled from MLflow once
    assert folder == ml_stores / "var" / "edge-bundles" / str(forest.pk)

    # MLflow is now a real but empty store: a download from it cannot succeed
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{ml_stores / 'empty.db'}"
    settings.MLFLOW_ARTIFACT_ROOT = (ml_stores / "empty-artifacts").as_uri()
    serving.CACHE.clear()
    response = _predict(staff, school_a, rows)
    assert response.status_code == 200, response.json()
    for answer, p in zip(response.json()["predictions"], expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)

    # without the local copy the empty store is asked, and has nothing to give
    shutil.rmtree(folder)
    serving.CACHE.clear()
    response = _predict(staff, school_a, rows)
    assert response.status_code == 503
    assert "cannot be fetched from the model store" in response.json()["detail"]
