"""Promote to district only when its conditions hold: no open alert on a pilot school, and the
model does as well on the pilot schools' labelled outcomes as in validation (within the margin).
Steps run in this process on real PostgreSQL and a real MLflow store."""

from __future__ import annotations

import pytest

from edumlops.datasets.models import ingest
from edumlops.deployments import services
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.monitoring.models import Alert
from tests.deployments.test_rollout_engine import save
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node
from workflows import engine

pytestmark = pytest.mark.django_db


def graph(school, outcomes_version=None, **promote):
    nodes = [
        node("start", "manual_trigger"),
        node("model", "registered_model", alias="challenger"),
        node("pilot", "pilot_rollout", selection="names", schools=[school.name],
             approval_required=False),
        node("promote", "promote_to_district", min_days_in_pilot=0, approval_required=False,
             **promote),
    ]  # fmt: skip
    edges = [
        edge("start", "start", "model"),
        edge("model", "model", "pilot", "model"),
        edge("pilot", "deployment", "promote", "deployment"),
    ]
    if outcomes_version:
        nodes.append(node("outcomes", "dataset", dataset_version=outcomes_version.pk))
        edges += [
            edge("start", "start", "outcomes", "start"),
            edge("outcomes", "dataset", "promote", "outcomes"),
        ]
    return {"nodes": nodes, "edges": edges}


def outcomes(district, school, seed=21, flip=False):
    frame = generate_district(800, seed=seed)
    frame["school"] = school.name  # the pilot school's end-of-term outcomes
    if flip:  # outcomes the model gets badly wrong
        frame["at_risk"] = frame["at_risk"].map({"yes": "no", "no": "yes"})
    roles = Roles(label="at_risk", positive=["yes"], school="school")
    data = frame.to_csv(index=False).encode()
    return ingest(district=district, name=f"outcomes {flip}", data=data, roles=roles)[0]


def prepared(two_models, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    v2.validation = {"threshold": 0.5, "metrics": {"auc": 0.8}}
    v2.save()
    v2.set_alias("challenger")
    return v1, v2


def test_an_open_alert_on_a_pilot_school_stops_the_promotion(two_models, district, school_a, staff):
    prepared(two_models, staff)
    Alert.objects.create(
        district=district, school=school_a, monitor="drift", cause="attendance_rate",
        severity="warning", message="attendance drifted",
    )  # fmt: skip
    run = engine.start_run(
        save(district, staff, graph(school_a, require_pilot_outcomes=False)), user=staff
    )
    assert run_here(run) == "failed"
    assert "open alert(s) on the pilot" in steps_of(run)["promote"].reason
    assert "attendance_rate" in steps_of(run)["promote"].reason


def test_pilot_outcomes_must_match_validation(two_models, district, school_a, staff, settings):
    _, v2 = prepared(two_models, staff)
    missing = engine.start_run(save(district, staff, graph(school_a)), user=staff)
    assert run_here(missing) == "failed"
    assert "no outcomes from the pilot schools" in steps_of(missing)["promote"].reason

    services.rollback(services.resolve(school_a), user=staff, reason="again")  # end the pilot
    bad = outcomes(district, school_a, flip=True)
    run = engine.start_run(save(district, staff, graph(school_a, bad)), user=staff)
    assert run_here(run) == "failed"
    reason = steps_of(run)["promote"].reason
    assert "auc on 800 pilot rows" in reason and "more than 0.05 lower" in reason

    services.rollback(services.resolve(school_a), user=staff, reason="again")
    good = outcomes(district, school_a)
    run = engine.start_run(save(district, staff, graph(school_a, good, max_drop=0.2)), user=staff)
    assert run_here(run) == "succeeded", steps_of(run)["promote"].reason
    assert services.district_deployment(district).model_version == v2
