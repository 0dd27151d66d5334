"""The Train across schools block on a real worker, a real SuperLink and three SuperNodes (one
per school server, each with its own records file): the global model goes through Validate, the
bias gate (both from the schools' summed counts) and the ONNX export like any other, its card
says who took part in each round, and the noise on the updates is charged to the ledger. A run
that would overspend the budget is refused before any school is asked."""

from __future__ import annotations

import json

import pytest

from edumlops.datasets.models import store_generated
from edumlops.ml import tracking
from edumlops.ml.federated_processes import LocalFederation
from edumlops.ml.synth import generate_district
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyRelease
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import School
from tests.workflows.conftest import Worker, edge, node, wait_for, worker_env
from workflows import engine
from workflows.models import Run

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SCHOOLS = {
    "rhs": "Riverside High School",
    "lms": "Lakeside Middle School",
    "phe": "Pine Hill Elementary",
}
FEATURES = ["attendance_rate", "submission_rate", "lms_logins_weekly", "quiz_average", "prior_gpa"]


@pytest.fixture
def schools(district):
    return [
        School.objects.create(
            district=district,
            code=code,
            name=name,
            size_band="medium",
            locality="urban",
            connectivity="always_on",
            hardware="server",
            tags=["federated"],
        )
        for code, name in SCHOOLS.items()
    ]


@pytest.fixture
def records(tmp_path):
    rows = generate_district(3000, seed=5)
    rows = rows[rows["school"].isin(SCHOOLS.values())].reset_index(drop=True)
    files = {}
    for code, name in SCHOOLS.items():
        files[code] = tmp_path / f"{code}.csv"
        rows[rows["school"] == name].to_csv(files[code], index=False)
    # the district's schema sample: last year's file of another school
    schema = generate_district(600, seed=6)
    return files, schema


@pytest.fixture
def federation(tmp_path, records):
    with LocalFederation(tmp_path / "flower", records[0]) as fed:
        yield fed


@pytest.fixture
def fed_worker(transactional_db, test_database_url, broker_url, tmp_path, federation):
    env = {
        **worker_env(test_database_url, broker_url, tmp_path),
        "FLOWER_SUPERLINK": federation.address,
    }
    w = Worker(env, tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()


def _graph(version_pk: int, **train) -> dict:
    return {
        "nodes": [
            node("start", "manual_trigger"),
            node("data", "dataset", dataset_version=version_pk),
            node(
                "train",
                "train_federated",
                schools=["federated"],
                features=FEATURES,
                rounds=2,
                min_schools=3,
                local_epochs=20,
                learning_rate=0.5,
                **train,
            ),
            # limits at 0: the noise on the updates makes recall vary from run to run (what it
            # costs is in bench/bench_federated.py and bench/bench_dp.py)
            node("validate", "validate_model", min_auc=0.7, max_brier=0.25, min_recall=0.0),
            node(
                "bias",
                "bias_gate",
                metrics=["false_negative_rate"],
                rule="max_difference",
                max_difference=1.0,
                min_group_size=2,
                if_inconclusive="block",
            ),
            node("export", "export_onnx"),
        ],
        "edges": [
            edge("start", "start", "data", "start"),
            edge("data", "dataset", "train", "schema"),
            edge("train", "model", "validate", "model"),
            edge("validate", "model", "bias", "model"),
            edge("bias", "model", "export", "model"),
        ],
    }


def _finish(run: Run, worker: Worker) -> dict:
    def ended():
        run.refresh_from_db()
        return run.finished

    try:
        wait_for(ended, timeout=600, what=f"run {run.pk} to end")
    finally:
        steps = {s.node_id: (s.status, s.reason) for s in run.steps.all()}
        print(steps, worker.output()[-3000:])
    return steps


def test_a_model_trained_across_schools_is_validated_gated_exported_and_charged(
    ml_stores, fed_worker, district, schools, records, make_workflow, staff
):
    version, _ = store_generated(district, "Schema sample", records[1])
    ledger.set_budget(
        district=district,
        dataset=version.dataset,
        total_epsilon=20,
        max_per_release=10,
        min_cell=None,
        actor=staff,
    )
    workflow = make_workflow(
        _graph(version.pk, differential_privacy=True, clipping_norm=5.0, noise_multiplier=1.0)
    )
    run = engine.start_run(workflow, user=staff)
    steps = _finish(run, fed_worker)
    assert run.status == Run.Status.SUCCEEDED, steps

    model = ModelVersion.objects.get(workflow_run=run)
    fed = model.training["federated"]
    assert [r["schools"] for r in fed["rounds"]][-1] == sorted(SCHOOLS)
    assert model.algorithm == "federated_logistic_regression"
    # judged on the schools' counts: no central rows, no AUC, and says so
    assert (
        model.validation["from_counts"]
        and "AUC and Brier score not checked" in (model.validation["note"])
    )
    assert model.validation["test_rows"] == fed["evaluation"]["rows"] > 0
    assert model.validation["metrics"]["accuracy"] is not None
    assert model.bias_report["settings"]["from_counts"] is True
    assert {c["attribute"] for c in model.bias_report["checks"]} == {
        "ses",
        "english_learner",
        "disability",
        "sex",
    }
    assert model.bundle["manifest"]["files"]  # exported, signed, parity-checked

    # the noise was paid for: one release, in the audit chain, target the model version
    release = PrivacyRelease.objects.get(dataset=version.dataset)
    assert release.kind == "federated" and release.target_id == str(model.pk)
    assert release.epsilon == pytest.approx(fed["dp"]["epsilon"])
    assert 0 < release.epsilon < 10

    mlflow_ready()
    logged = json.loads(tracking.download(model.run_id, "federated.json").read_text())
    assert logged["schools"] == sorted(SCHOOLS)
    history = tracking.client().get_metric_history(model.run_id, "round_schools")
    assert [int(m.value) for m in sorted(history, key=lambda m: m.step)] == [3, 3]

    # the card says it was trained across schools, on which, with what privacy
    from django.test import Client

    page = Client()
    page.force_login(staff)
    html = page.get(f"/models/{model.pk}/").content.decode()
    assert "Trained across schools" in html and "SecAgg+" in html
    assert "differential privacy on the updates: ε =" in html


def test_a_run_that_would_overspend_is_refused_before_any_school_is_asked(
    ml_stores, fed_worker, district, schools, records, make_workflow, staff
):
    version, _ = store_generated(district, "Schema sample", records[1])
    ledger.set_budget(
        district=district,
        dataset=version.dataset,
        total_epsilon=1.0,
        max_per_release=1.0,
        min_cell=None,
        actor=staff,
    )
    workflow = make_workflow(
        _graph(version.pk, differential_privacy=True, clipping_norm=5.0, noise_multiplier=1.0)
    )
    run = engine.start_run(workflow, user=staff)
    steps = _finish(run, fed_worker)
    assert run.status == Run.Status.FAILED
    status, reason = steps["train"]
    assert status == "failed" and "more than one release may spend" in reason
    assert not ModelVersion.objects.filter(workflow_run=run).exists()
    assert not PrivacyRelease.objects.exists()
    assert not list((ml_stores / "federated").glob("*/result.json"))
