"""The block registry and each block's catalog entry."""

from __future__ import annotations

import re

import pytest

from workflows.blocks import REGISTRY, catalog
from workflows.blocks.base import PortType
from workflows.blocks.triggers import ScheduleParams

EXPECTED = {
    "manual_trigger",
    "schedule_trigger",
    "term_start_trigger",
    "approval_gate",
    "condition_gate",
    "notify",
    "wait",
    "dataset",
    "minimise_data",
    "split",
    "train_model",
    "train_federated",
    "validate_model",
    "bias_gate",
    "export_onnx",
    "set_alias",
    "model_card",
    "registered_model",
    "freeze_window",
    "pilot_rollout",
    "promote_to_district",
    "rollback",
    "drift_monitor",
    "on_alert_trigger",
    "alerted_deployment",
    "performance_monitor",
    "device_latency_monitor",
    "edge_sync",
    "train_forecast",
    "backtest_gate",
    "forecast_error_monitor",
    "train_text_scorer",
    "validate_scorer",
    "train_mastery",
    "validate_mastery",
    "mastery_monitor",
    "answer_drift_monitor",
}


def test_the_registry_holds_every_block_once_by_kind_and_version():
    assert {kind for kind, _ in REGISTRY} == EXPECTED
    assert all(version == 1 for _, version in REGISTRY)


@pytest.mark.parametrize("entry", catalog(), ids=lambda e: e["kind"])
def test_every_block_describes_itself_in_plain_language(entry):
    assert entry["label"] and entry["help"] and entry["category"]
    assert entry["params_schema"]["type"] == "object"
    required = set(entry["params_schema"].get("required", []))
    for name, prop in entry["params_schema"].get("properties", {}).items():
        # a parameter with no sensible default (which dataset?) is required: the canvas shows
        # the block as "not configured" until it is set
        assert "default" in prop or name in required, f"{entry['kind']}.{name} has no default"
        assert prop.get("description"), f"{entry['kind']}.{name} has no help text"
    for port in entry["inputs"] + entry["outputs"]:
        assert set(port["types"]) <= {t.value for t in PortType}
    if entry["trigger"]:
        assert entry["inputs"] == [] and entry["outputs"][0]["types"] == ["trigger"]


def test_parameter_schemas_carry_bounds_enums_and_units():
    schemas = {e["kind"]: e["params_schema"]["properties"] for e in catalog()}
    assert schemas["approval_gate"]["quorum"]["minimum"] == 1
    assert schemas["approval_gate"]["quorum"]["maximum"] == 10
    assert schemas["condition_gate"]["operator"]["enum"] == [">=", ">", "<=", "<", "==", "!="]
    assert schemas["wait"]["seconds"]["unit"] == "seconds"
    assert schemas["term_start_trigger"]["days_after_start"]["unit"] == "days"


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 6 * *", "a cron line has 5 fields (minute hour day month weekday), this has 4"),
        ("61 6 * * 1", "not a valid cron line"),
    ],
)
def test_a_bad_cron_line_is_refused_with_the_reason(cron, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ScheduleParams.model_validate({"cron": cron})


@pytest.mark.django_db
def test_the_dataset_block_can_take_the_newest_version_of_its_dataset(
    ml_stores, district, platform_admin
):
    from edumlops.datasets.models import ingest
    from edumlops.ml.datasets import Roles
    from edumlops.ml.synth import generate_district
    from tests.registry.conftest import run_here, steps_of
    from tests.workflows.conftest import edge, node
    from workflows import engine
    from workflows.models import Workflow

    roles = Roles(label="at_risk", positive=["yes"], sensitive=["ses"], school="school")
    first, _ = ingest(
        district=district,
        name="Students",
        data=generate_district(300, seed=1).to_csv(index=False).encode(),
        roles=roles,
    )
    newer, _ = ingest(
        district=district,
        name="Students",
        data=generate_district(400, seed=2).to_csv(index=False).encode(),
        roles=roles,
    )
    assert newer.number == first.number + 1
    runs = {}
    for use in ("this_version", "newest"):
        graph = {
            "nodes": [
                node("start", "manual_trigger"),
                node("data", "dataset", dataset_version=first.pk, use=use),
            ],
            "edges": [edge("start", "start", "data", "start")],
        }
        workflow = Workflow.objects.create(district=district, name=use, owner=platform_admin)
        workflow.save_version(graph, use, platform_admin)
        run = engine.start_run(workflow)
        assert run_here(run) == "succeeded"
        runs[use] = steps_of(run)["data"]
    assert runs["this_version"].outputs["dataset"]["version"] == first.pk
    assert runs["newest"].outputs["dataset"]["version"] == newer.pk
    assert runs["newest"].metrics["rows"] == 400
    assert any("Newest version of Students: v2" in line["message"] for line in runs["newest"].logs)
