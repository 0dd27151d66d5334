"""Private training end to end: the ready-made training workflow with a private algorithm on a
real worker (Redis, Celery process, MLflow store), its ε charged to the cohort's ledger with the
model version, exported, served by the predict API; refusals over budget leave no model version
and a failed training spends nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow import MlflowClient
from rest_framework.test import APIClient

from edumlops.datasets.models import ingest
from edumlops.deployments import services
from edumlops.ml import onnx_bundle, signing, tracking
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.ml.training import infer_features
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyRelease
from edumlops.registry import training
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import wait_for
from workflows.models import Run
from workflows.training import TrainingRequest, start_training

ROLES = Roles(label="at_risk", positive=["yes"], sensitive=["english_learner"], school="school")
EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


def _version(district, n: int = 3000, seed: int = 0):
    data = generate_district(n, seed=seed).to_csv(index=False).encode()
    version, _ = ingest(district=district, name="Riverside synthetic", data=data, roles=ROLES)
    return version


@pytest.mark.django_db(transaction=True)
def test_a_private_model_trains_on_a_worker_exports_and_serves(
    ml_stores, worker, district, school_a, staff
):
    version = _version(district, 6000)
    request = TrainingRequest(
        dataset_version=version.pk,
        algorithm="dp_logistic_regression",
        epsilon=2.0,
        bounds="attendance_rate: 0..1\nprior_gpa: 0..4",
        min_auc=0.5,  # this test is about the path, not the price in accuracy (bench_dp)
        max_difference=0.9,
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
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    logs = " ".join(line["message"] for line in steps["train"].logs)
    assert "Differential privacy: ε = 2" in logs and "non-private" in logs

    model = ModelVersion.objects.get(workflow_run=run)
    assert model.algorithm == "dp_logistic_regression"
    info = model.training["privacy"]
    assert info["epsilon"] == 2.0 and info["epsilon_spent_in_fit"] == pytest.approx(2.0)
    assert info["bounds"]["attendance_rate"] == [0.0, 1.0]
    assert info["bounds_from"]["attendance_rate"] == "given"
    assert info["bounds_from"]["quiz_average"] == "dataset profile"
    assert "quiz_average" in info["bounds_read_from_data"]
    comparison = info["comparison"]
    assert comparison["rows"] == model.validation["test_rows"]
    assert comparison["private"]["accuracy"] == pytest.approx(
        model.validation["metrics"]["accuracy"]
    )

    # the ε was charged to the cohort, naming the model version it released
    release = PrivacyRelease.objects.get(district=district, dataset=version.dataset)
    assert release.kind == "training" and release.epsilon == 2.0
    assert release.target_id == str(model.pk)
    assert ledger.spent(district, version.dataset) == pytest.approx(2.0)

    # exported through the same path: bundle, parity, signature
    mlflow_ready()  # this process reads the store the worker wrote
    assert model.bundle["parity"]["max_abs_diff"] < 1e-4
    bundle = tracking.download(model.run_id, "bundle")
    manifest, _ = onnx_bundle.load_bundle(
        bundle, signing.load_public_key(model.bundle["public_key"])
    )
    assert manifest["model"]["algorithm"] == "dp_logistic_regression"
    assert MlflowClient().get_model_version(model.name, model.version).run_id == model.run_id

    # the card (JSON kept in MLflow, and the page) shows ε, the bounds and the price
    card = json.loads(tracking.download(model.run_id, "model_card.json").read_text())
    assert card["privacy"]["epsilon"] == 2.0
    assert card["privacy"]["comparison"]["non_private"]["accuracy"] is not None
    assert any("read from the data" in item for item in card["limitations"])
    assert card["fairness"]["outcome"] == model.bias_outcome
    client = APIClient()
    client.force_login(staff)
    page = client.get(f"/models/{model.pk}/").content.decode()
    assert "ε = 2.0" in page and 'data-testid="privacy-comparison"' in page
    assert "read from the dataset profile" in page

    # served by the predict API like any model
    services.roll_out(model, scope="district", user=staff)
    fresh = generate_district(10, seed=9)[model.feature_spec().columns]
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in fresh.to_dict("records")]
    response = client.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows}, format="json")
    assert response.status_code == 200, response.json()
    expected = model.predict_proba(pd.DataFrame(rows))
    for answer, p in zip(response.json()["predictions"], expected, strict=True):
        assert answer["probability"] == pytest.approx(p, abs=1e-5)
        assert answer["model"] == {"name": model.name, "version": model.version}


def _job(district, version, staff, epsilon, **extra):
    return training.TrainingJob(
        district=district,
        dataset_version=version,
        model_name="private",
        algorithm="dp_gaussian_nb",
        balanced=False,
        seed=0,
        use_sensitive_attributes=False,
        split=None,
        run_label="test",
        started_by=staff,
        epsilon=epsilon,
        **extra,
    )


def _rows(version):
    frame = version.frame()
    return frame, version.role_set, infer_features(frame, exclude=EXCLUDE)


@pytest.mark.django_db
def test_a_release_over_budget_is_refused_before_training(ml_stores, district, staff):
    version = _version(district, 800)
    ledger.set_budget(
        district=district,
        dataset=version.dataset,
        total_epsilon=1.0,
        max_per_release=1.0,
        min_cell=None,
        actor=staff,
    )
    ledger.spend(
        district=district,
        dataset=version.dataset,
        epsilon=0.7,
        kind="training",
        what="an earlier model",
        actor=staff,
    )
    with pytest.raises(training.TrainingError, match="0.3 of 1 left") as refused:
        training.train_and_register(_job(district, version, staff, 0.5), *_rows(version))
    assert "was not trained" in str(refused.value)
    assert not ModelVersion.objects.exists()
    assert ledger.spent(district, version.dataset) == pytest.approx(0.7)


@pytest.mark.django_db
def test_a_release_refused_at_registration_leaves_no_model_version(ml_stores, district, staff):
    """Another release takes the budget while this model is being logged: the spend in the
    registering transaction is refused, nothing is registered, MLflow's version is taken back."""
    version = _version(district, 800)
    ledger.set_budget(
        district=district,
        dataset=version.dataset,
        total_epsilon=2.0,
        max_per_release=2.0,
        min_cell=None,
        actor=staff,
    )

    def meanwhile(stage: str, fraction: float) -> None:
        if stage == "logging to MLflow":
            ledger.spend(
                district=district,
                dataset=version.dataset,
                epsilon=1.8,
                kind="training",
                what="a release made meanwhile",
                actor=staff,
            )

    with pytest.raises(training.TrainingError, match="not released.*0.2 of 2 left"):
        training.train_and_register(
            _job(district, version, staff, 0.5), *_rows(version), progress=meanwhile
        )
    assert not ModelVersion.objects.exists()
    assert ledger.spent(district, version.dataset) == pytest.approx(1.8)
    mlflow_ready()
    assert MlflowClient().search_model_versions(f"name='{district.slug}-private'") == []


@pytest.mark.django_db
def test_a_failed_private_training_spends_nothing(ml_stores, district, staff):
    version = _version(district, 800)
    job = _job(district, version, staff, 1.0, bounds={"shoe_size": [30, 50]})
    with pytest.raises(training.TrainingError, match="shoe_size"):
        training.train_and_register(job, *_rows(version))
    assert ledger.spent(district, version.dataset) == 0
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"algorithm": "dp_logistic_regression", "epsilon": 0}, "epsilon", "0.01"),
        ({"algorithm": "dp_gaussian_nb", "epsilon": 90}, "epsilon", "50"),
        ({"algorithm": "dp_gaussian_nb", "bounds": "gpa 0 4"}, "bounds", "lower..upper"),
        (
            {"algorithm": "random_forest", "bounds": "prior_gpa: 0..4"},
            "bounds",
            "only to the private algorithms",
        ),
    ],
)
def test_bad_private_parameters_get_a_clear_400(ml_stores, district, staff, body, field, message):
    version = _version(district, 200)
    client = APIClient()
    client.force_authenticate(staff)
    response = client.post(
        "/api/models/train/", {"dataset_version": version.pk, **body}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert message in json.dumps(response.json(), ensure_ascii=False), response.json()
    assert field in json.dumps(response.json()), response.json()
    assert not Run.objects.exists()


def test_a_private_models_input_example_holds_no_students_row():
    frame = generate_district(400, seed=2)
    spec = infer_features(frame, exclude=EXCLUDE)
    from edumlops.ml import privacy
    from edumlops.ml.training import prepare_frame

    setup = privacy.resolve(spec, prepare_frame(frame, spec), 1)
    example = training.made_up_rows(frame, spec, setup.to_dict())
    assert list(example.columns) == spec.columns and len(example) == 5
    for name in spec.columns:
        assert example[name].dtype.kind == frame[name].dtype.kind, name
    seen = {tuple(r) for r in frame[spec.columns].astype(str).itertuples(index=False)}
    assert not seen & {tuple(r) for r in example.astype(str).itertuples(index=False)}
