"""A model version carries its task type, and each step built for yes/no risk models refuses any
other type in a sentence instead of computing something meaningless with it."""

from __future__ import annotations

import pytest

from edumlops.deployments import services as deployment_services
from edumlops.ml.task_types import TaskType
from edumlops.registry.models import ModelVersion
from tests.deployments.conftest import make_model
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node
from workflows.engine import start_run
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def mastery_model(ml_stores, district, staff) -> ModelVersion:
    model = make_model(district)
    model.task_type = TaskType.MASTERY
    model.save(update_fields=["task_type"])
    model.set_alias("challenger", staff)
    return model


@pytest.mark.parametrize(
    ("kind", "step"),
    [
        ("validate_model", "Validate model"),
        ("bias_gate", "Bias gate"),
        ("export_onnx", "Export to ONNX"),
    ],
)
def test_a_risk_step_refuses_a_mastery_model_in_a_sentence(kind, step, mastery_model, staff):
    workflow = Workflow.objects.create(district=mastery_model.district, name=f"Check {kind}")
    workflow.save_version(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("model", "registered_model", model_name="at-risk", alias="challenger"),
                node("check", kind),
            ],
            "edges": [
                edge("start", "start", "model"),
                edge("model", "model", "check", "model"),
            ],
        },
        "first",
        staff,
    )
    run = start_run(workflow, user=staff)
    assert run_here(run) == "failed"
    error = steps_of(run)["check"].error
    handles = "a yes/no risk model" + (
        " or a scoring model (whole-point scores)" if kind == "bias_gate" else ""
    )
    assert (
        f"{mastery_model}: {step} works on {handles}; this is a knowledge-tracing "
        "(mastery) model." in error
    )


def test_rolling_out_a_mastery_model_is_refused(mastery_model, school_a, platform_admin):
    with pytest.raises(deployment_services.DeploymentError, match="Serving to schools works on"):
        deployment_services.roll_out(
            mastery_model, scope="pilot", schools=[school_a], user=platform_admin, reason="try"
        )


def test_the_api_shows_the_task_type(mastery_model, platform_admin, client):
    client.force_login(platform_admin)
    answer = client.get(f"/api/models/{mastery_model.pk}/").json()
    assert answer["task_type"] == "mastery"
