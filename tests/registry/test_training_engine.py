"""Train → validate → bias gate → export → register through the engine: real Redis, a real
Celery worker process, a real MLflow store; everything read back through MLflow's own client."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from edumlops.datasets.models import ingest
from edumlops.ml import onnx_bundle, signing, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import wait_for
from workflows.models import Run
from workflows.training import TrainingRequest, start_training

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_training_run_registers_a_signed_model_readable_through_mlflow(
    ml_stores, worker, district, staff
):
    # one sensitive attribute with large groups: this test is about the pipeline, not about
    # the fairness verdict (test_bias_gate covers pass, fail and inconclusive)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["english_learner"], school="school")
    data = generate_district(4000, seed=0).to_csv(index=False).encode()
    version, _ = ingest(district=district, name="Riverside synthetic", data=data, roles=roles)
    request = TrainingRequest(
        dataset_version=version.pk,
        algorithm="hist_gradient_boosting",
        max_difference=0.5,
        min_group_size=20,
    )
    run = start_training(version, request, staff)

    def finished():
        run.refresh_from_db()
        return run.finished

    try:
        wait_for(finished, timeout=300, what=f"run {run.pk} to finish")
    finally:
        steps = {s.node_id: s for s in run.steps.all()}
        print({n: (s.status, s.reason) for n, s in steps.items()}, worker.output()[-4000:])
    assert steps["train"].logs, "the worker logged the training"
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    assert steps["train"].progress["stage"], "the worker reported training stages"
    assert any("Removed 'student_id'" in line["message"] for line in steps["minimise"].logs)

    model = ModelVersion.objects.get(workflow_run=run)
    mlflow_ready()  # this process reads the same store the worker wrote
    client = MlflowClient()
    registered = client.get_model_version(model.name, model.version)
    assert registered.run_id == model.run_id
    assert str(client.get_model_version_by_alias(model.name, "challenger").version) == model.version
    metrics = client.get_run(model.run_id).data.metrics
    assert metrics["test_auc"] == pytest.approx(model.validation["metrics"]["auc"])
    assert metrics["test_auc"] > 0.7

    bundle = tracking.download(model.run_id, "bundle")
    public_key = signing.load_public_key(model.bundle["public_key"])
    manifest, onnx_model = onnx_bundle.load_bundle(bundle, public_key)
    assert manifest["dataset_sha256"] == version.sha256
    assert manifest["model"]["version"] == model.version
    assert sorted(onnx_model.feature_names) == sorted(model.feature_spec().columns)
    card = json.loads((tracking.download(model.run_id, "model_card.json")).read_text())
    assert card["data"]["dataset_sha256"] == version.sha256
    assert card["fairness"]["outcome"] == model.bias_outcome
