"""The Thresholds page and its service: a teacher changes their school's own values, district
staff the district's; district-only values are read-only to teachers; bad values are refused
with the field and its range, and nothing is half written."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.exceptions import PermissionDenied

from edumlops.audit.models import AuditRecord
from edumlops.core import clock
from edumlops.monitoring.models import Alert, DailyAggregate
from tests.conftest import PASSWORD
from tests.workflows.conftest import edge, node
from workflows import thresholds
from workflows.blocks.monitoring import DriftParams, LatencyParams
from workflows.compiler import validate
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

URL = "/thresholds/"


def monitors_graph() -> dict:
    return {
        "nodes": [
            node("start", "manual_trigger"),
            node("drift", "drift_monitor"),
            node("latency", "device_latency_monitor"),
            node("model", "registered_model"),
            node("bias", "bias_gate"),
        ],
        "edges": [
            edge("start", "start", "drift"),
            edge("start", "start", "latency"),
            edge("start", "start", "model"),
            edge("model", "model", "bias", "model"),
        ],
    }


@pytest.fixture
def workflow(make_workflow) -> Workflow:
    return make_workflow(monitors_graph(), name="Watch the model")


def params_of(workflow: Workflow, node_id: str) -> dict:
    graph = workflow.runnable_version().graph
    return next(n for n in graph["nodes"] if n["id"] == node_id)["params"]


def threshold_records():
    return AuditRecord.objects.filter(action=AuditRecord.Action.THRESHOLD).order_by("id")


def log_in(client, user):
    client.login(username=user.username, password=PASSWORD)
    return client


def post(client, scope: str, workflow: Workflow, version: int = 1, **values):
    data = {"scope": scope, "workflow": workflow.pk, "version": version, **values}
    return client.post(URL, data)


# --- listing ------------------------------------------------------------------------------------
def test_a_teacher_sees_their_schools_thresholds_and_which_are_read_only(
    workflow, teacher_a, district, school_a
):
    [found] = thresholds.for_scope(teacher_a, district, school_a)
    by_key = {t.key: t for t in found.thresholds}
    assert set(by_key) == {
        "drift.psi_threshold",
        "drift.js_threshold",
        "drift.alpha",
        "drift.min_count",
        "latency.max_ratio",
        "latency.min_normal_days",
        "bias.max_difference",
        "bias.min_ratio",
        "bias.min_group_size",
    }
    psi = by_key["drift.psi_threshold"]
    assert psi.editable and psi.scope == "school" and psi.label == "Drift sensitivity"
    assert psi.help.startswith("Drift sensitivity: a larger population stability index")
    assert psi.range_text == "a number more than 0 and at most 2"
    assert (psi.default, psi.district_value, psi.school_value) == (0.2, 0.2, None)
    assert by_key["drift.min_count"].range_text == "a whole number from 5 to 10000"
    assert by_key["latency.max_ratio"].editable
    assert not any(by_key[k].editable for k in ("drift.min_count", "bias.max_difference"))


def test_the_page_shows_editable_inputs_and_disabled_read_only_ones(client, workflow, teacher_a):
    response = log_in(client, teacher_a).get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Thresholds — Alder School" in html
    psi = html[html.index('name="drift.psi_threshold"') :].split(">")[0]
    assert 'min="0"' in psi and 'max="2"' in psi and 'step="any"' in psi
    assert "disabled" not in psi
    gap = html[html.index('name="bias.max_difference"') :].split(">")[0]
    assert "disabled" in gap
    assert "Read-only: set by district staff for the whole district" in html
    assert f'for="t{workflow.pk}-drift-psi_threshold"' in html


def test_a_user_with_no_school_or_district_may_not_open_the_page(client, workflow, nobody):
    assert log_in(client, nobody).get(URL).status_code == 403


# --- a teacher's own values ---------------------------------------------------------------------
def test_a_teacher_changes_drift_sensitivity_for_their_school(
    client, workflow, teacher_a, school_a, school_b
):
    response = post(
        log_in(client, teacher_a),
        f"school-{school_a.pk}",
        workflow,
        **{"drift.psi_threshold": "0.15", "latency.max_ratio": "2", "reason": "too quiet"},
    )
    assert response.status_code == 302
    version = workflow.runnable_version()
    assert version.number == 2
    assert version.message == "Thresholds: psi_threshold 0.2 → 0.15 for Alder School"
    drift = params_of(workflow, "drift")
    assert drift["school_thresholds"] == {"a": {"psi_threshold": 0.15}}
    assert "psi_threshold" not in drift  # the district's value stays as it was
    [record] = threshold_records()
    assert record.actor == teacher_a and record.reason == "too quiet"
    assert record.target_id == str(workflow.pk) and record.district == workflow.district
    assert record.before == {
        "node": "drift", "field": "psi_threshold", "label": "Drift sensitivity", "school": "a",
        "value": 0.2, "own": False, "version": 1,
    }  # fmt: skip
    assert record.after == {
        "node": "drift", "field": "psi_threshold", "label": "Drift sensitivity", "school": "a",
        "value": 0.15, "own": True, "version": 2,
    }  # fmt: skip
    # the drift monitor reads it: Alder has its own value, Birch keeps the district's
    params = DriftParams.model_validate_json(json.dumps(drift))
    assert params.for_school("a").psi_threshold == 0.15
    assert params.for_school("b").psi_threshold == 0.2
    assert params.for_schools(["a", "b"]).psi_threshold == 0.15  # pooled: the most sensitive
    page = client.get(URL)
    assert "Saved for Alder School: Drift sensitivity: psi_threshold 0.2 → 0.15" in (
        page.content.decode()
    )
    assert "changed Drift sensitivity from 0.2 to 0.15 (version 2): “too quiet”" in (
        page.content.decode()
    )


def test_an_empty_box_gives_the_school_the_district_value_again(workflow, teacher_a, school_a):
    thresholds.apply_changes(workflow, teacher_a, school_a, {"drift.psi_threshold": 0.1})
    new, [change] = thresholds.apply_changes(
        workflow, teacher_a, school_a, {"drift.psi_threshold": ""}
    )
    assert "school_thresholds" not in params_of(workflow, "drift")
    assert change.describe() == "psi_threshold 0.1 → 0.2 (the district value)"
    assert new.number == 3 and threshold_records().last().after["own"] is False


def test_saving_the_values_in_force_changes_nothing(workflow, teacher_a, school_a):
    new, done = thresholds.apply_changes(
        workflow, teacher_a, school_a, {"drift.psi_threshold": "0.2", "latency.max_ratio": 2}
    )
    assert (new, done) == (None, [])
    assert workflow.versions.count() == 1 and not threshold_records().exists()


def test_a_teacher_posting_a_district_only_threshold_is_refused_and_nothing_is_saved(
    client, workflow, teacher_a, school_a
):
    response = post(
        log_in(client, teacher_a),
        f"school-{school_a.pk}",
        workflow,
        **{"drift.psi_threshold": "0.1", "bias.max_difference": "0.5"},
    )
    assert response.status_code == 403
    assert workflow.versions.count() == 1
    assert not threshold_records().exists()
    with pytest.raises(PermissionDenied, match="set by district staff"):
        thresholds.apply_changes(workflow, teacher_a, school_a, {"drift.min_count": 10})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "drift.psi_threshold",
            "5",
            "Drift sensitivity (psi_threshold): 5 is out of range. "
            "Enter a number more than 0 and at most 2.",
        ),
        (
            "drift.psi_threshold",
            "0",
            "Drift sensitivity (psi_threshold): 0 is out of range. "
            "Enter a number more than 0 and at most 2.",
        ),
        (
            "latency.max_ratio",
            "fast",
            "Latency alert ratio (max_ratio): “fast” is not a number. "
            "Enter a number from 1.1 to 20.",
        ),
        (
            "latency.max_ratio",
            "nan",
            "Latency alert ratio (max_ratio): “nan” is not a number. "
            "Enter a number from 1.1 to 20.",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_field_and_its_range(
    client, workflow, teacher_a, school_a, key, value, message
):
    response = post(
        log_in(client, teacher_a),
        f"school-{school_a.pk}",
        workflow,
        **{"drift.psi_threshold": "0.1", key: value},  # one good value: not saved either
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert f'value="{value}"' in html and 'aria-invalid="true"' in html  # what was typed
    assert workflow.versions.count() == 1
    assert not threshold_records().exists()


def test_a_whole_number_is_required_where_the_parameter_counts(workflow, staff):
    with pytest.raises(thresholds.ThresholdError) as caught:
        thresholds.apply_changes(workflow, staff, None, {"drift.min_count": "12.5"})
    assert caught.value.errors == {
        "drift.min_count": "Fewest predictions for a drift check (min_count): 12.5 is not a "
        "whole number. Enter a whole number from 5 to 10000."
    }


def test_a_teacher_cannot_touch_another_schools_values(client, workflow, teacher_a, school_b):
    response = post(
        log_in(client, teacher_a),
        f"school-{school_b.pk}",
        workflow,
        **{"drift.psi_threshold": "0.1"},
    )
    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        thresholds.apply_changes(workflow, teacher_a, school_b, {"drift.psi_threshold": 0.1})
    with pytest.raises(PermissionDenied):  # nor the district's
        thresholds.apply_changes(workflow, teacher_a, None, {"drift.psi_threshold": 0.1})
    assert workflow.versions.count() == 1 and not threshold_records().exists()


def test_a_school_of_another_district_is_refused(workflow, platform_admin, other_school):
    with pytest.raises(PermissionDenied, match="is not a school of Maple Valley"):
        thresholds.apply_changes(
            workflow, platform_admin, other_school, {"drift.psi_threshold": 0.1}
        )


def test_an_unknown_threshold_is_refused(workflow, teacher_a, school_a):
    with pytest.raises(thresholds.ThresholdError) as caught:
        thresholds.apply_changes(workflow, teacher_a, school_a, {"drift.window_days": 3})
    assert caught.value.errors == {
        "drift.window_days": "“drift.window_days” is not a threshold of Watch the model "
        "(version 1)."
    }


def test_a_form_opened_before_another_save_is_refused(client, workflow, teacher_a, school_a):
    thresholds.apply_changes(workflow, teacher_a, school_a, {"drift.psi_threshold": 0.1})
    response = post(
        log_in(client, teacher_a),
        f"school-{school_a.pk}",
        workflow,
        version=1,
        **{"latency.max_ratio": "3"},
    )
    assert response.status_code == 409
    assert "changed (now version 2) since this form was opened" in response.content.decode()
    assert workflow.versions.count() == 2


# --- district staff -----------------------------------------------------------------------------
def test_staff_change_a_district_value(client, workflow, staff, district, school_a):
    thresholds.apply_changes(workflow, staff, school_a, {"latency.max_ratio": 3})
    response = post(
        log_in(client, staff),
        f"district-{district.pk}",
        workflow,
        version=2,
        **{"bias.max_difference": "0.05", "drift.min_count": "50", "reason": "board decision"},
    )
    assert response.status_code == 302
    version = workflow.runnable_version()
    assert version.number == 3
    assert params_of(workflow, "bias")["max_difference"] == 0.05
    assert params_of(workflow, "drift")["min_count"] == 50
    assert version.message == (
        "Thresholds: max_difference 0.1 → 0.05, min_count 30 → 50 for the district"
    )
    records = list(threshold_records().filter(after__school=None))
    assert [(r.before["value"], r.after["value"]) for r in records] == [(0.1, 0.05), (30, 50)]
    assert all(r.reason == "board decision" and r.actor == staff for r in records)
    assert validate(version.graph) == []
    page = client.get(URL, {"scope": f"district-{district.pk}"}).content.decode()
    assert "Schools with their own value: a 3." in page  # the district view lists them


def test_staff_choose_a_school_and_see_its_scope(client, workflow, staff, school_b):
    page = log_in(client, staff).get(URL, {"scope": f"school-{school_b.pk}"})
    html = page.content.decode()
    assert "Thresholds — Birch School" in html
    assert f'<option value="school-{school_b.pk}" selected>' in html
    gap = html[html.index('name="bias.max_difference"') :].split(">")[0]
    assert "disabled" in gap  # one value for the district, even for staff, per school


# --- htmx ---------------------------------------------------------------------------------------
def test_an_htmx_save_returns_the_workflows_form_with_the_result(
    client, workflow, teacher_a, school_a
):
    log_in(client, teacher_a)
    data = {"scope": f"school-{school_a.pk}", "workflow": workflow.pk, "version": 1}
    ok = client.post(URL, {**data, "drift.psi_threshold": "0.12"}, HTTP_HX_REQUEST="true")
    assert ok.status_code == 200
    html = ok.content.decode()
    # the whole page (never a bare form); the form's hx-select takes its section out of it
    assert "<title>Thresholds · EduMLOps</title>" in html
    assert f'<section class="card thresholds" id="workflow-{workflow.pk}"' in html
    assert f'hx-select="#workflow-{workflow.pk}"' in html
    assert "Saved for Alder School" in html and "version 2" in html
    bad = client.post(
        URL, {**data, "version": 2, "latency.max_ratio": "99"}, HTTP_HX_REQUEST="true"
    )
    assert bad.status_code == 400
    assert "Latency alert ratio (max_ratio): 99 × normal is out of range" in bad.content.decode()


# --- the monitors use the school's values -------------------------------------------------------
def test_the_latency_monitor_uses_a_schools_own_ratio(
    ml_stores, district, school_a, teacher_a, staff
):
    from tests.deployments.conftest import make_model
    from tests.registry.conftest import run_here, steps_of
    from workflows import engine

    model = make_model(district, seed=0)
    today = clock.today()
    for days_ago in range(0, 20):
        DailyAggregate.objects.create(
            school=school_a, day=today - dt.timedelta(days=days_ago), model_version=model,
            source="edge:n1", device_profile="server", count=50, bands={}, histograms={},
            latency_p50_ms=1.0, latency_p95_ms=3.0 if days_ago >= 3 else 9.5,
        )  # fmt: skip
    graph = {
        "nodes": [node("start", "manual_trigger"), node("lat", "device_latency_monitor")],
        "edges": [edge("start", "start", "lat")],
    }
    workflow = Workflow.objects.create(district=district, name="Latency", owner=staff)
    workflow.save_version(graph, "latency", staff)
    thresholds.apply_changes(workflow, teacher_a, school_a, {"lat.max_ratio": "4"})
    run = engine.start_run(workflow, user=staff)
    assert run_here(run) == "succeeded", steps_of(run)["lat"].reason
    assert not Alert.objects.filter(monitor="latency").exists()  # 3.2x is within Alder's 4x
    [result] = steps_of(run)["lat"].outputs["report"]["results"]
    assert result["status"] == "ok" and result["ratio"] == 3.17


def test_per_school_values_are_checked_by_the_compiler():
    graph = monitors_graph()
    graph["nodes"][1]["params"] = {"school_thresholds": {"a": {"min_count": 10}}}
    graph["nodes"][2]["params"] = {"school_thresholds": {"a": {"max_ratio": 50}}}
    assert [e.message for e in validate(graph)] == [
        'Node "drift": parameter "school_thresholds" is invalid: Value error, school "a": '
        '"min_count" cannot be set per school (these can: psi_threshold, js_threshold). '
        "Fix it in the block's form.",
        'Node "latency": parameter "school_thresholds" is invalid: Value error, school "a": '
        "max_ratio = 50 is out of range: input should be less than or equal to 20. "
        "Fix it in the block's form.",
    ]
    assert LatencyParams().for_school("a").max_ratio == 2.0


# --- API ----------------------------------------------------------------------------------------
def test_the_api_lists_and_changes_thresholds_with_the_same_rules(
    client, workflow, teacher_a, school_a
):
    url = "/api/thresholds/"
    log_in(client, teacher_a)
    listed = client.get(url, {"school": school_a.pk}).json()
    [wf] = listed["workflows"]
    psi = next(t for t in wf["thresholds"] if t["key"] == "drift.psi_threshold")
    assert psi["editable"] and psi["allowed"] == "a number more than 0 and at most 2"
    body = {"workflow": workflow.pk, "version": 1, "changes": {"drift.psi_threshold": 0.3}}
    changed = client.post(f"{url}?school={school_a.pk}", body, content_type="application/json")
    assert changed.status_code == 200, changed.content
    assert changed.json() == {
        "version": 2,
        "changes": [{"node": "drift", "field": "psi_threshold", "old": 0.2, "new": 0.3}],
    }
    body = {"workflow": workflow.pk, "changes": {"bias.min_ratio": 0.5}}
    refused = client.post(f"{url}?school={school_a.pk}", body, content_type="application/json")
    assert refused.status_code == 403
    body = {"workflow": workflow.pk, "changes": {"drift.psi_threshold": -1}}
    bad = client.post(f"{url}?school={school_a.pk}", body, content_type="application/json")
    assert bad.status_code == 400
    [entry] = bad.json()["errors"]
    assert entry["field"] == "changes.drift.psi_threshold" and "out of range" in entry["message"]


def test_the_api_names_a_bad_or_hidden_scope_and_a_bad_body(
    client, workflow, teacher_a, school_a, other_school
):
    url = "/api/thresholds/"
    log_in(client, teacher_a)
    for query in ({"school": "abc"}, {"school": other_school.pk}, {"scope": "school-x"}):
        answer = client.get(url, query)
        assert answer.status_code == 400, query
        assert [e["field"] for e in answer.json()["errors"]] == list(query)
    for body, field in (
        ([1, 2], ""),
        ({"workflow": "x", "changes": {}}, "workflow"),
        ({"workflow": workflow.pk, "changes": []}, "changes"),
        ({"workflow": 999_999, "changes": {}}, "workflow"),
    ):
        answer = client.post(f"{url}?school={school_a.pk}", body, content_type="application/json")
        assert answer.status_code == 400, body
        assert field in [e["field"] for e in answer.json()["errors"]]
    assert workflow.versions.count() == 1
