"""An approval binds the proposal people were shown: after approval the block applies exactly
the stored proposal — the pilot's schools as approved even when the selection would pick others
today, a failure naming what changed when it can no longer be applied (a school deleted), and
the bias gate's inconclusive report only if it is still the report that was shown. Steps run in
this process (no broker)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.html import escape
from rest_framework.test import APIClient

from edumlops.datasets.models import ingest
from edumlops.deployments.models import Deployment
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from tests.deployments.conftest import make_model
from tests.deployments.test_rollout_engine import save
from tests.registry.conftest import run_here, steps_of
from tests.registry.test_bias_gate import train
from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.blocks.gates import report_digest
from workflows.models import Run

pytestmark = pytest.mark.django_db

SELECTION_CHANGED = "The school selection would pick other schools today; the approved"


@pytest.fixture
def challenger(ml_stores, district, staff):
    model = make_model(district, seed=0)
    model.set_alias("challenger", actor=staff)
    return model


def tag_graph(tag="pilot"):
    return {
        "nodes": [
            node("start", "manual_trigger"),
            node("model", "registered_model", model_name="at-risk", alias="challenger"),
            node("pilot", "pilot_rollout", selection="tag", tag=tag),
        ],
        "edges": [
            edge("start", "start", "model"),
            edge("model", "model", "pilot", "model"),
        ],
    }


def tag(school, *tags):
    school.tags = list(tags)
    school.save(update_fields=["tags"])


def logs(step):
    return [line["message"] for line in step.logs]


def test_the_approved_schools_are_deployed_even_when_the_tag_moved_since(
    challenger, district, school_a, school_b, staff
):
    tag(school_a, "pilot")
    run = engine.start_run(save(district, staff, tag_graph()), user=staff)
    assert run_here(run) == "waiting_approval"
    pilot = steps_of(run)["pilot"]
    assert pilot.status == "waiting_approval"
    summary = pilot.proposal["summary"]
    assert "Alder School" in summary and "Birch School" not in summary
    assert [s["id"] for s in pilot.proposal["schools"]] == [school_a.pk]
    assert pilot.proposal["model_version"] == challenger.pk

    # what staff see: the inbox and the API show the stored proposal
    client = Client()
    client.force_login(staff)
    page = client.get("/approvals/").content.decode()
    assert 'data-testid="proposal"' in page and escape(summary) in page
    api = APIClient()
    api.force_authenticate(staff)
    answer = api.get(f"/api/runs/{run.pk}/")
    assert answer.status_code == 200
    shown = next(s for s in answer.json()["steps"] if s["node_id"] == "pilot")
    assert shown["proposal"] == pilot.proposal

    tag(school_a)  # the tag moves after the question was asked
    tag(school_b, "pilot")
    engine.approve(run, staff, "ok", "pilot")
    assert run_here(run) == "succeeded"
    pilot = steps_of(run)["pilot"]
    deployment_id = pilot.outputs["deployment"]["deployment"]
    deployment = Deployment.objects.get(pk=deployment_id)
    assert deployment.scope == "pilot"
    assert list(deployment.schools.all()) == [school_a]  # nobody approved Birch
    assert not school_b.pilot_deployments.exists()
    assert any(m.startswith(SELECTION_CHANGED) and "Alder School" in m for m in logs(pilot))


def test_a_deleted_school_makes_the_approved_pilot_fail_and_deploy_nothing(
    challenger, district, school_a, school_b, staff
):
    cedar = School.objects.create(
        district=district, code="c", name="Cedar School", size_band="medium", locality="urban",
        connectivity="always_on", hardware="desktop", enrollment=300, tags=["pilot"],
    )  # fmt: skip
    run = engine.start_run(save(district, staff, tag_graph()), user=staff)
    assert run_here(run) == "waiting_approval"
    pilot = steps_of(run)["pilot"]
    assert pilot.proposal["schools"] == [{"id": cedar.pk, "name": "Cedar School"}]

    cedar.delete()
    engine.approve(run, staff, "ok", "pilot")
    assert run_here(run) == "failed"
    pilot = steps_of(run)["pilot"]
    assert pilot.status == "failed"
    assert "Cedar School no longer is a school" in pilot.reason, pilot.reason
    assert "Nothing was deployed" in pilot.reason
    assert not Deployment.objects.filter(scope="pilot").exists()
    run = Run.objects.get(pk=run.pk)
    assert run.status == "failed" and "Cedar School" in run.reason


def tiny_group_version(district):
    """A dataset whose sensitive attribute has a group too small to judge: inconclusive."""
    frame = generate_district(3000, seed=1)
    frame["tiny_group"] = ["rare"] * 12 + ["common"] * (len(frame) - 12)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["tiny_group"], school="school")
    return ingest(
        district=district, name="tiny", data=frame.to_csv(index=False).encode(), roles=roles
    )[0]


def ask_on_inconclusive(district, staff):
    run = train(tiny_group_version(district), staff, if_inconclusive="ask_approval")
    assert run_here(run) == "waiting_approval"
    bias = steps_of(run)["bias"]
    assert bias.status == "waiting_approval" and "inconclusive" in bias.reason
    model = ModelVersion.objects.get(workflow_run=run)
    assert model.bias_outcome == "inconclusive"
    assert bias.proposal["action"] == "accept_inconclusive_bias"
    assert bias.proposal["model_version"] == model.pk
    assert bias.proposal["report_sha256"] == report_digest(model.bias_report)
    return run, model


def test_an_inconclusive_bias_check_approved_goes_on_with_the_report_shown(
    ml_stores, district, staff
):
    run, model = ask_on_inconclusive(district, staff)
    report = model.bias_report
    engine.approve(run, staff, "small group reviewed by hand", "bias")
    assert run_here(run) == "succeeded", steps_of(run)["bias"].reason
    bias = steps_of(run)["bias"]
    assert bias.status == "succeeded"
    assert any("on the report they were shown" in m for m in logs(bias))
    assert ModelVersion.objects.get(pk=model.pk).bias_report == report  # not recomputed


def test_a_bias_report_changed_after_it_was_shown_is_not_approved(ml_stores, district, staff):
    run, model = ask_on_inconclusive(district, staff)
    model.bias_report = {**model.bias_report, "summary": "recomputed since"}
    model.save(update_fields=["bias_report"])
    engine.approve(run, staff, "small group reviewed by hand", "bias")
    assert run_here(run) == "failed"
    bias = steps_of(run)["bias"]
    assert bias.status == "failed"
    assert "bias report changed after it was shown for approval" in bias.reason, bias.reason
    assert Run.objects.get(pk=run.pk).status == "failed"
