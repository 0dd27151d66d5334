"""Device baselines: an old laptop that is always slow is normal for itself; a server that
suddenly answers three times slower than its own normal raises an alert."""

from __future__ import annotations

import datetime as dt

import pytest

from edumlops.core import clock
from edumlops.monitoring.models import Alert, DailyAggregate
from tests.deployments.conftest import make_model
from tests.registry.conftest import run_here, steps_of
from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def test_each_profile_is_judged_against_its_own_normal(ml_stores, district, school_a, staff):
    model = make_model(district, seed=0)
    today = clock.today()
    for days_ago in range(0, 20):
        day = today - dt.timedelta(days=days_ago)
        server = 3.0 if days_ago >= 3 else 9.5  # the last three days: three times slower
        for profile, p95 in (("old laptop", 40.0), ("server", server)):
            DailyAggregate.objects.create(
                school=school_a, day=day, model_version=model, source="edge:n1",
                device_profile=profile, count=50, bands={}, histograms={},
                latency_p50_ms=p95 / 2, latency_p95_ms=p95,
            )  # fmt: skip
    graph = {
        "nodes": [node("start", "manual_trigger"), node("lat", "device_latency_monitor")],
        "edges": [edge("start", "start", "lat")],
    }
    workflow = Workflow.objects.create(district=district, name="Latency", owner=staff)
    workflow.save_version(graph, "latency", staff)
    run = engine.start_run(workflow, user=staff)
    assert run_here(run) == "succeeded", steps_of(run)["lat"].reason
    alerts = list(Alert.objects.filter(monitor="latency"))
    assert [(a.school, a.cause) for a in alerts] == [(school_a, "p95 latency on server")]
    assert "3.2x its normal 3.0 ms" in alerts[0].message
    report = {r["profile"]: r for r in steps_of(run)["lat"].outputs["report"]["results"]}
    assert report["old laptop"]["status"] == "ok" and report["server"]["status"] == "slow"
