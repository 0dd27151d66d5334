"""The "Short-answer scoring with human agreement gate" template made through the API on the
demo's scored short answers and run end to end on a real Celery worker (PostgreSQL and Redis):
the scorer is trained and registered with its ONNX file, agrees with the teachers (QWK, close to
the two-teacher ceiling), scores every home-language group as the teachers do, becomes the
challenger, waits for the teachers' sample check and tells them once approved."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from edumlops.datasets.demo import seed_short_answers
from edumlops.registry.models import ModelVersion
from edumlops.registry.scoring import load_scorer
from tests.workflows.conftest import wait_for
from workflows import engine
from workflows.gallery import TEMPLATES
from workflows.models import Notification, Run, StepRun, Workflow

KEY = "short-answer-scoring"


def test_the_template_is_runnable_and_reads_like_its_steps():
    template = TEMPLATES[KEY]
    assert template.available and template.missing == []
    assert template.title == "Short-answer scoring with human agreement gate"
    kinds = [n["kind"] for n in template.build()["nodes"]]
    assert kinds == [
        "manual_trigger",
        "dataset",
        "split",
        "train_text_scorer",
        "validate_scorer",
        "bias_gate",
        "set_alias",
        "approval_gate",
        "notify",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_short_answer_template_runs_end_to_end_on_a_worker_with_the_demo_answers(
    ml_stores, worker, district, district_admin, staff, teacher_a
):
    version, created = seed_short_answers(district)
    assert created and version.rows == 4000
    client = APIClient()
    client.force_authenticate(district_admin)
    response = client.post(
        f"/api/templates/{KEY}/use/",
        {"name": "Short-answer scoring", "choices": {"dataset_version": version.pk}},
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
        assert waiting.node_id == "review"
        # the approvals inbox shows the scorer's bias report beside the request
        inbox = Client()
        inbox.force_login(staff)
        page = inbox.get(reverse("approvals"))
        assert page.status_code == 200 and 'data-testid="bias-details"' in page.content.decode()
        assert "Machine minus teacher mean score" in page.content.decode()
        engine.approve(run, staff, "Twenty answers checked against our marking.", "review")
        wait_for(settled, timeout=120, what=f"run {run.pk} to end")
    finally:
        steps = {s.node_id: s for s in run.steps.all()}
        print({n: (s.status, s.reason) for n, s in steps.items()}, worker.output()[-3000:])
    assert run.status == Run.Status.SUCCEEDED, {n: (s.status, s.reason) for n, s in steps.items()}
    assert all(s.status == StepRun.Status.SUCCEEDED for s in steps.values())

    model = ModelVersion.objects.get(task_type="ordinal_score")
    assert model.name == "maple-short-answer-scorer" and model.aliases == ["challenger"]
    assert model.dataset_version == version and model.training["rows"] == 3000
    assert model.training["scorer"]["parity"]["disagreeing_scores"] == 0
    scores = load_scorer(model).score(["sunlight chlorophyll carbon dioxide glucose", "i think"])
    assert scores.scores.tolist()[1] == 0 and scores.scores.tolist()[0] >= 2

    check = steps["validate"].metrics
    assert check["qwk"] >= 0.7 and check["human_qwk"] - check["qwk"] <= 0.10
    assert check["exact_agreement"] < check["adjacent_agreement"]
    assert model.validation["passed"] is True and model.validation["test_rows"] == 1000
    report = model.bias_report
    assert model.bias_outcome == "pass" and report["settings"]["kind"] == "ordinal_score"
    smd = {g["group"]: g["metrics"]["score_difference"] for g in report["groups"]}
    assert set(smd) == {"english", "other_language"}
    assert all(abs(v) <= 0.10 for v in smd.values())
    print(
        f"GATE on the demo answers: QWK {check['qwk']:.3f} (human–human "
        f"{check['human_qwk']:.3f} on {model.validation['ceiling']['n']} double-scored), exact "
        f"{check['exact_agreement']:.1%}, adjacent {check['adjacent_agreement']:.1%}, overall SMD "
        f"{check['smd']:+.3f}, unsure {check['unsure_share']:.1%}; SMD per group "
        + ", ".join(f"{g} {v:+.3f}" for g, v in smd.items())
    )
    assert Notification.objects.filter(step__run=run, step__node_id="tell", user=teacher_a).exists()
