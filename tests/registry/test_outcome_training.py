"""A model trains on an outcome derived from a rule: rows with a numeric final grade and no
yes/no column, "at risk = final_grade < 10", through the "Train a model" template on a real
worker. The grade and the earlier-term grades that leak it are not features; the card states
the rule."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from edumlops.datasets.models import store_generated
from edumlops.ml import tracking
from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion, mlflow_ready
from tests.workflows.conftest import wait_for
from workflows.models import Run
from workflows.training import TrainingRequest, start_training

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_model_trains_on_the_derived_outcome_without_its_source_or_leaks(
    ml_stores, worker, district, staff
):
    frame = generate_district(3000, seed=2, grades=True)
    version, _ = store_generated(district, "Grades", frame, labelled=False)
    version.change_roles(
        {
            "sensitive": ["english_learner"],
            "outcome": {"name": "at_risk", "column": "final_grade", "op": "<", "value": 10},
        },
        staff,
    )
    request = TrainingRequest(
        dataset_version=version.pk,
        algorithm="logistic_regression",
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
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}

    model = ModelVersion.objects.get(workflow_run=run)
    features = model.feature_spec().columns
    assert not {"final_grade", "grade_term1", "grade_term2", "at_risk"} & set(features)
    assert "quiz_average" in features
    known = frame["final_grade"].notna()
    assert model.training["label"] == "at_risk"
    assert model.training["outcome"]["rule"] == "final_grade < 10"
    # trained on the derived label: positives in the training part are rows with grade < 10
    assert 0 < model.training["positives"] < model.training["rows"] <= int(known.sum())
    assert model.validation["metrics"]["auc"] > 0.7
    mlflow_ready()
    card = json.loads(tracking.download(model.run_id, "model_card.json").read_text())
    assert card["data"]["outcome"]["rule"] == "final_grade < 10"
    assert {e["column"] for e in card["data"]["outcome"]["excluded"]} == {
        "final_grade",
        "grade_term1",
        "grade_term2",
    }
    page = Client()
    page.force_login(staff)
    html = page.get(f"/models/{model.pk}/").content.decode()
    assert "at_risk = yes where final_grade &lt; 10, else no" in html
    assert "Not a feature: grade_term2" in html


def test_the_early_warning_template_accepts_a_dataset_with_only_a_numeric_grade(district, staff):
    from workflows.gallery import ALL, ChoiceError, use

    frame = generate_district(600, seed=1, grades=True)
    version, _ = store_generated(district, "Grades only", frame, labelled=False)
    template = ALL["early-warning"]
    with pytest.raises(ChoiceError, match="no label column"):
        use(
            template,
            district=district,
            user=staff,
            name="Early warning before",
            choices={"dataset_version": version.pk},
        )
    version.change_roles(
        {"outcome": {"name": "at_risk", "column": "final_grade", "op": "<", "value": 10}}, staff
    )
    saved = use(
        template,
        district=district,
        user=staff,
        name="Early warning on grades",
        choices={"dataset_version": version.pk},
    )
    assert saved.errors == []
