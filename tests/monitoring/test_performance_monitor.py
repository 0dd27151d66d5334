"""The performance monitor on end-of-term outcomes: a school where the model now misses many
at-risk students gets an alert naming recall, a school where it does as in validation gets none,
and a school with too few at-risk students is "insufficient data"."""

from __future__ import annotations

import datetime as dt

import pytest

from edumlops.datasets.models import ingest
from edumlops.deployments import services
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.monitoring.models import Alert
from tests.conftest import _school
from tests.deployments.conftest import make_model
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.compiler import validate
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def test_outcomes_raise_an_alert_where_recall_dropped(
    ml_stores, district, school_a, school_b, staff
):
    model = make_model(district, seed=0)
    model.validation = {"threshold": 0.5, "metrics": {"recall": 0.75, "precision": 0.5}}
    model.save()
    services.roll_out(model, scope="district", user=staff)
    tiny = _school(district, "tiny", "Tiny School")
    a = generate_district(900, seed=11).assign(school=school_a.name)
    a.loc[a["at_risk"] == "no", "at_risk"] = "flip"  # outcomes the model does not foresee
    a.loc[a["at_risk"] == "yes", "at_risk"] = "no"
    a.loc[a["at_risk"] == "flip", "at_risk"] = "yes"
    b = generate_district(900, seed=12).assign(school=school_b.name)
    c = generate_district(30, seed=13).assign(school=tiny.name, at_risk="no")
    frame = a._append([b, c], ignore_index=True)
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["ses"], school="school")
    version = ingest(district=district, name="End of term", data=frame.to_csv(index=False).encode(),
                     roles=roles)[0]  # fmt: skip
    graph = {
        "nodes": [
            node("start", "manual_trigger"),
            node("outcomes", "dataset", dataset_version=version.pk),
            node("perf", "performance_monitor"),
        ],
        "edges": [
            edge("start", "start", "outcomes", "start"),
            edge("outcomes", "dataset", "perf", "outcomes"),
        ],
    }
    assert validate(graph) == []
    workflow = Workflow.objects.create(district=district, name="Outcomes", owner=staff)
    workflow.save_version(graph, "perf", staff)
    run = engine.start_run(workflow, user=staff)
    assert run_here(run) == "succeeded", steps_of(run)["perf"].reason
    causes = {(a.school.name, a.cause) for a in Alert.objects.filter(monitor="performance")}
    assert (school_a.name, "recall") in causes
    assert not any(school == school_b.name for school, _ in causes)
    report = {r["school"]: r for r in steps_of(run)["perf"].outputs["report"]["results"]}
    assert report[school_b.name]["status"] == "ok"
    assert report["Tiny School"]["status"] == "insufficient_data"
    assert report[school_a.name]["groups"]  # per sensitive group

    from django.test import Client

    from edumlops.monitoring.models import PerformanceCheck

    check = PerformanceCheck.objects.get(school=school_a)
    assert check.metrics["recall"] < 0.5 and check.groups
    client = Client()
    client.force_login(staff)
    page = client.get(f"/schools/{school_a.pk}/").content.decode()
    # one check: no line to draw yet, the check's recall per group as a table
    assert 'data-testid="fairness-chart"' not in page
    assert 'data-testid="recall-table"' in page and "all students" in page and "ses=" in page
    PerformanceCheck.objects.create(
        school=school_a, checked_at=check.checked_at + dt.timedelta(days=7),
        model_version=check.model_version, rows=check.rows, metrics=check.metrics,
        groups=check.groups,
    )  # fmt: skip
    page = client.get(f"/schools/{school_a.pk}/").content.decode()
    assert 'data-testid="fairness-chart"' in page and "all students" in page and "ses=" in page
