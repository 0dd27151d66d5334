"""The "Adaptive practice: retrain mastery weekly" template made through the API on the demo's
OULAD answer log and run end to end on a real Celery worker (PostgreSQL and Redis): BKT is fitted
per skill and registered, passes the check on held-out students, becomes the challenger, waits
for district staff and tells them once approved."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.datasets.demo import oulad_answers, seed_oulad_answers
from edumlops.ml import oulad
from edumlops.registry.mastery import load_mastery_model
from edumlops.registry.models import ModelVersion
from tests.workflows.conftest import wait_for
from workflows import engine
from workflows.gallery import TEMPLATES
from workflows.models import Notification, Run, StepRun, Workflow

KEY = "adaptive-practice"


def test_the_template_is_runnable_weekly_and_reads_like_its_steps():
    template = TEMPLATES[KEY]
    assert template.available and template.missing == []
    assert template.title == "Adaptive practice: retrain mastery weekly"
    graph = template.build()
    kinds = [n["kind"] for n in graph["nodes"]]
    assert kinds == [
        "schedule_trigger",
        "dataset",
        "train_mastery",
        "validate_mastery",
        "set_alias",
        "approval_gate",
        "notify",
    ]
    weekly = graph["nodes"][0]["params"]["cron"].split()
    assert weekly[:4] == ["0", "5", "*", "*"] and weekly[4] == "1"  # Mondays at 05:00
    chosen = template.build(template.parse({"dataset_version": 3, "min_auc": 0.7}))
    validate = next(n for n in chosen["nodes"] if n["kind"] == "validate_mastery")
    assert validate["params"]["min_auc"] == 0.7


@pytest.mark.skipif(
    not all(p.exists() for p in oulad.default_assessment_paths()),
    reason="the OULAD assessment files are not in data/oulad/",
)
@pytest.mark.django_db(transaction=True)
def test_the_adaptive_practice_template_runs_end_to_end_on_a_worker_with_the_oulad_answers(
    ml_stores, worker, district, district_admin, staff
):
    version, created = seed_oulad_answers(district)
    answers = oulad_answers()
    assert created and version.rows == len(answers)
    client = APIClient()
    client.force_authenticate(district_admin)
    response = client.post(
        f"/api/templates/{KEY}/use/",
        {"name": "Adaptive practice", "choices": {"dataset_version": version.pk}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["draft"] is False
    workflow = Workflow.objects.get(pk=response.json()["id"])
    run = engine.start_run(workflow, user=district_admin)

    def settled():
        run.refresh_from_db()
        return run.finished or run.status == Run.Status.WAITING_APPROVAL

    try:
        wait_for(settled, timeout=600, what=f"run {run.pk} to reach the approval")
        assert run.status == Run.Status.WAITING_APPROVAL, run.reason
        waiting = StepRun.objects.get(run=run, status=StepRun.Status.WAITING_APPROVAL)
        assert waiting.node_id == "approve"
        engine.approve(run, staff, "Guess and slip look plausible for these modules.", "approve")
        wait_for(settled, timeout=120, what=f"run {run.pk} to end")
    finally:
        steps = {s.node_id: s for s in run.steps.all()}
        print({n: (s.status, s.reason) for n, s in steps.items()}, worker.output()[-3000:])
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    assert all(s.status == StepRun.Status.SUCCEEDED for s in steps.values())

    model = ModelVersion.objects.get(task_type="mastery")
    assert model.name == "maple-mastery" and model.aliases == ["challenger"]
    assert model.dataset_version == version and model.algorithm == "bkt"
    assert model.training["columns"]["order"] == "order"  # the dataset's date/term role
    bkt = load_mastery_model(model)
    assert set(bkt.skills) == set(answers["skill"])
    assert model.training["answers"] == len(answers) and model.training["students"] == 800
    logs = " ".join(entry["message"] for entry in steps["train"].logs)
    for name, counts in model.training["skills"].items():
        assert f"'{name}' ({counts['answers']} answers, {counts['students']} students)" in logs
    # most OULAD assessments are passed: where nearly every answer is right, BKT cannot tell
    # mastery from guessing, and the log says which skills those are
    degenerate = sorted(n for n, p in bkt.skills.items() if p.degenerate)
    assert steps["train"].metrics["degenerate_skills"] == len(degenerate)
    if degenerate:
        assert f"Degenerate fit for {len(degenerate)} skill(s): {repr(degenerate[0])}" in logs

    gate = steps["validate"].metrics
    assert gate["auc"] >= 0.65 and gate["ece"] <= 0.1
    assert model.validation["passed"] is True and model.validation["kind"] == "mastery"
    assert model.validation["split"]["test_students"] == 160
    print(
        f"GATE on the OULAD demo sample ({len(answers)} answers, 800 students, "
        f"{len(bkt.skills)} skills): AUC {gate['auc']:.3f} (skills' pass rates alone "
        f"{gate['base_rate_auc']:.3f}), ECE {gate['ece']:.3f}, log loss "
        f"{gate['log_loss']:.3f}, Brier {gate['brier']:.3f}; degenerate (guess >= 1 - slip): "
        f"{sorted(n for n, p in bkt.skills.items() if p.degenerate) or 'none'}"
    )
    assert Notification.objects.filter(step__run=run, step__node_id="tell", user=staff).exists()
