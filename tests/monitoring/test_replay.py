"""Replay before you save: a drift threshold tried on the thresholds page (and the API) counts
the alerts it would have raised over the last term from the stored daily aggregates, school,
week and feature, without saving anything."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from edumlops.core import clock
from edumlops.deployments import services
from edumlops.ml import drift
from edumlops.monitoring.models import Alert, DailyAggregate, DriftCheck
from edumlops.monitoring.replay import last_term
from tests.deployments.conftest import make_model
from tests.monitoring.test_checks import students
from tests.registry.test_api import client_for
from tests.workflows.test_thresholds import monitors_graph
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

URL = "/api/thresholds/replay/"


def term_days(district, weeks: int) -> list[dt.date]:
    """One school day (not a break or testing day) in each of the last `weeks` weeks of term."""
    found: dict[dt.date, dt.date] = {}
    day = clock.today()
    while len(found) < weeks and day > clock.today() - dt.timedelta(days=120):
        period = district.period_on(day)
        monday = day - dt.timedelta(days=day.weekday())
        if day.weekday() < 5 and period is not None and period.kind == "term":
            found.setdefault(monday, day)
        day -= dt.timedelta(days=1)
    return sorted(found.values())


@pytest.fixture
def setup(ml_stores, district, school_a, platform_admin, staff):
    """Three weeks of aggregates of Alder School: two ordinary, one with attendance far down."""
    model = make_model(district, seed=0)
    services.roll_out(model, scope="district", user=staff)
    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    days = term_days(district, 3)
    assert len(days) == 3
    for i, day in enumerate(days):
        shift = 0.3 if i == 1 else 0.0
        frame = pd.DataFrame(students(model, 200, seed=10 + i, attendance_shift=shift))
        frame["__prediction__"] = 0.3
        DailyAggregate.objects.create(
            school=school_a, day=day, model_version=model, source="central", count=200,
            bands={"low": 200}, histograms=drift.histograms(reference, frame),
        )  # fmt: skip
    workflow = Workflow.objects.create(district=district, name="Watch the model")
    workflow.save_version(monitors_graph(), "first", platform_admin)
    return workflow, days


def test_a_relaxed_value_raises_fewer_alerts_and_each_is_named(setup, teacher_a, school_a):
    workflow, days = setup
    client = client_for(teacher_a)
    query = {"school": school_a.pk, "workflow": workflow.pk, "key": "drift.psi_threshold"}

    strict = client.get(URL, {**query, "value": "0.2"})
    relaxed = client.get(URL, {**query, "value": "2"})

    assert strict.status_code == 200, strict.json()
    body = strict.json()
    name, start, end = last_term(school_a.district)
    assert body["period"].startswith(name) and body["checked"] == 3
    assert body["in_force"] == 0.2 and body["value"] == 0.2
    shifted_week = days[1] - dt.timedelta(days=days[1].weekday())
    attendance = [a for a in body["raised"] if a["feature"] == "attendance_rate"]
    assert [(a["school"], a["week"]) for a in attendance] == [
        ("Alder School", shifted_week.isoformat())
    ]
    assert attendance[0]["psi"] > 0.2 and "above" in attendance[0]["rule"]
    assert body["alerts"] == len(body["raised"]) >= 1
    # a relaxed drift sensitivity alone: Jensen–Shannon still decides for the big dip
    assert relaxed.json()["alerts"] <= body["alerts"]
    js_too = client.get(URL, {**query, "key": "drift.js_threshold", "value": "1"}).json()
    assert js_too["alerts"] <= body["alerts"]
    # nothing is saved, raised or stored
    assert workflow.versions.count() == 1
    assert not Alert.objects.exists() and not DriftCheck.objects.exists()


def test_with_both_rules_relaxed_only_the_largest_changes_remain(setup, staff, district, school_a):
    workflow, _ = setup
    client = client_for(staff)
    # district value: js relaxed to its maximum, psi to its maximum: only PSI above 2 remains
    graph = workflow.runnable_version().graph
    next(n for n in graph["nodes"] if n["id"] == "drift")["params"] = {"js_threshold": 1.0}
    workflow.save_version(graph, "js relaxed", staff)
    query = {"district": district.pk, "workflow": workflow.pk, "key": "drift.psi_threshold"}
    none = client.get(URL, {**query, "value": "2"}).json()
    assert none["checked"] == 3
    assert all(a["psi"] > 2 and a["rule"] == "PSI above 2" for a in none["raised"]), none["raised"]
    some = client.get(URL, {**query, "value": "0.1"}).json()
    assert some["alerts"] > none["alerts"]


def test_a_value_out_of_range_or_a_threshold_without_replay_is_a_clear_400(
    setup, teacher_a, school_a
):
    workflow, _ = setup
    client = client_for(teacher_a)
    base = {"school": school_a.pk, "workflow": workflow.pk}
    bad = client.get(URL, {**base, "key": "drift.psi_threshold", "value": "0"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "value"
    assert (
        "is out of range. Enter a number more than 0 and at most 2."
        in (bad.json()["errors"][0]["message"])
    )
    other = client.get(URL, {**base, "key": "latency.max_ratio", "value": "3"})
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "key"
    assert (
        "the replay covers the drift monitor's thresholds" in other.json()["errors"][0]["message"]
    )
    unknown = client.get(URL, {**base, "key": "drift.nothing", "value": "3"})
    assert unknown.status_code == 400


def test_the_page_panel_answers_for_the_typed_value(setup, client, teacher_a, school_a):
    workflow, _ = setup
    client.force_login(teacher_a)
    page = client.get("/thresholds/").content.decode()
    assert 'data-testid="replay-drift.psi_threshold"' in page
    assert "Who may change it: District staff set the district" in page
    assert (
        "Significance level (p-value)" in page
        and "Distribution distance limit (Jensen–Shannon)" in page
    )
    answer = client.get(
        "/thresholds/replay/",
        {
            "scope": f"school-{school_a.pk}",
            "workflow": workflow.pk,
            "key": "drift.psi_threshold",
            "drift.psi_threshold": "0.15",
        },
        HTTP_HX_REQUEST="true",
    )
    assert answer.status_code == 200
    html = answer.content.decode()
    assert "With 0.15:" in html and "alert" in html and "attendance_rate" in html
    assert "the value in force now, 0.2, is not changed until you save" in html
