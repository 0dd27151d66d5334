"""The monitoring API's doors (issue 16): telemetry and alert bodies read through serializers
(the inputs that answered 500 now get a 400 naming the field, nothing written), the telemetry
rate, and another district's alerts answered exactly like missing ones."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from edumlops.deployments import tokens
from edumlops.monitoring.models import Alert, DailyAggregate, TelemetryBatch
from edumlops.monitoring.services import raise_alert
from tests.registry.test_api import client_for, registered

pytestmark = pytest.mark.django_db

SHAPE = {"detail", "code", "errors"}


def aggregate(model_version: int, **change) -> dict:
    return {
        "day": "2026-11-20",
        "model_version": model_version,
        "count": 3,
        "bands": {"low": 2, "high": 1},
        "histograms": {"attendance_rate": [1, 2, 0]},
        **change,
    }


def fields(response) -> set[str]:
    body = response.json()
    assert set(body) == SHAPE, body
    return {e["field"] for e in body["errors"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"idempotency_key": "k", "school": {}, "aggregates": []}, "school"),
        ({"idempotency_key": "k", "school": "abc"}, "school"),
        ([], ""),
        ({"idempotency_key": ["k"], "school": 1, "aggregates": [{}]}, "idempotency_key"),
        ({"idempotency_key": "k" * 121, "school": 1}, "idempotency_key"),
        ({"idempotency_key": "k", "school": 1, "aggregates": "x"}, "aggregates"),
        ({"idempotency_key": "k", "school": 1, "aggregates": [[]]}, "aggregates.0"),
    ],
)
def test_a_bad_telemetry_body_is_a_400_naming_the_field(staff, school_a, body, field):
    response = client_for(staff).post("/api/telemetry/", body, format="json")
    assert response.status_code == 400
    assert field in fields(response)
    assert not TelemetryBatch.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_version": {}}, "aggregates.0.model_version"),
        ({"model_version": 2**70}, "aggregates.0.model_version"),
        ({"count": -1}, "aggregates.0.count"),
        ({"count": 2**40}, "aggregates.0.count"),
        ({"bands": ["low"]}, "aggregates.0.bands"),
        ({"bands": {"low": "many"}}, "aggregates.0.bands.low"),
        ({"histograms": {"attendance_rate": [-1]}}, "aggregates.0.histograms.attendance_rate.0"),
        ({"day": "20 Nov"}, "aggregates.0.day"),
        ({"latency_p50_ms": "fast"}, "aggregates.0.latency_p50_ms"),
    ],
)
def test_a_bad_aggregate_is_named_and_nothing_is_counted(staff, district, school_a, change, field):
    model = registered(district)
    body = {"idempotency_key": "k", "school": school_a.pk, "aggregates": [aggregate(model.pk)]}
    body["aggregates"][0].update(change)
    response = client_for(staff).post("/api/telemetry/", body, format="json")
    assert response.status_code == 400
    assert fields(response) == {field}
    assert not TelemetryBatch.objects.exists() and not DailyAggregate.objects.exists()


def test_an_aggregate_of_another_districts_model_is_named(
    staff, district, other_district, school_a
):
    theirs = registered(other_district)
    body = {"idempotency_key": "k", "school": school_a.pk, "aggregates": [aggregate(theirs.pk)]}
    response = client_for(staff).post("/api/telemetry/", body, format="json")
    assert response.status_code == 400
    assert fields(response) == {"aggregates.0.model_version"}
    assert not TelemetryBatch.objects.exists()


def test_a_telemetry_school_outside_the_callers_sight_is_named(
    staff, teacher_a, district, other_district, school_b, other_school
):
    model = registered(district)
    for client, school in ((client_for(staff), other_school), (client_for(teacher_a), school_b)):
        body = {"idempotency_key": "k", "school": school.pk, "aggregates": [aggregate(model.pk)]}
        response = client.post("/api/telemetry/", body, format="json")
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {"field": "school", "message": f"No school {school.pk} that you may see: check the id."}
        ]
    _, key = tokens.create(district, "SIS", staff)
    sis = APIClient()
    sis.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {"idempotency_key": "k", "school": other_school.pk, "aggregates": [aggregate(model.pk)]}
    assert fields(sis.post("/api/telemetry/", body, format="json")) == {"school"}
    assert not TelemetryBatch.objects.exists()


def test_telemetry_is_throttled_per_caller(settings, staff, school_a):
    settings.EDUMLOPS_THROTTLE_RATES = {"telemetry": "2/min"}
    cache.clear()
    client = client_for(staff)
    for _ in range(2):
        assert client.post("/api/telemetry/", {}, format="json").status_code == 400
    third = client.post("/api/telemetry/", {}, format="json")
    assert third.status_code == 429
    assert int(third["Retry-After"]) > 0
    assert third.json()["code"] == "throttled" and third.json()["errors"] == []


# --- alerts ---------------------------------------------------------------------------------------


def alert_at(district, school) -> Alert:
    alert, _ = raise_alert(
        district=district,
        school=school,
        monitor="drift",
        cause="gpa",
        severity="warning",
        message="Drift on gpa",
    )
    return alert


def test_alert_list_reads_its_query_through_a_serializer(staff, district, school_a):
    alert = alert_at(district, school_a)
    client = client_for(staff)
    assert [a["id"] for a in client.get("/api/alerts/?status=open").json()] == [alert.pk]
    assert client.get("/api/alerts/?status=resolved").json() == []
    response = client.get("/api/alerts/?status=everything")
    assert response.status_code == 400 and fields(response) == {"status"}


@pytest.mark.parametrize(
    ("body", "field"), [([], ""), ({}, "comment"), ({"comment": {}}, "comment")]
)
def test_a_bad_alert_decision_is_a_400(staff, district, school_a, body, field):
    alert = alert_at(district, school_a)
    response = client_for(staff).post(f"/api/alerts/{alert.pk}/acknowledge/", body, format="json")
    assert response.status_code == 400 and field in fields(response)
    assert Alert.objects.get(pk=alert.pk).status == "open"


def test_a_resolved_alert_cannot_be_decided_again(staff, district, school_a):
    alert = alert_at(district, school_a)
    client = client_for(staff)
    done = client.post(f"/api/alerts/{alert.pk}/resolve/", {"comment": "fixed"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert done.json()["resolved_at"] is not None
    again = client.post(f"/api/alerts/{alert.pk}/resolve/", {"comment": "again"}, format="json")
    assert again.status_code == 400 and "resolved already" in again.json()["detail"]


def test_another_districts_alert_answers_exactly_like_a_missing_one(
    teacher_a, staff, other_district, other_school, district, school_b
):
    theirs = alert_at(other_district, other_school)
    next_school = alert_at(district, school_b)  # the teacher's district, another school
    for client, alert in (
        (client_for(teacher_a), theirs),
        (client_for(teacher_a), next_school),
        (client_for(staff), theirs),
    ):
        for action in ("acknowledge", "resolve"):
            seen = client.post(f"/api/alerts/{alert.pk}/{action}/", {"comment": "x"}, format="json")
            unknown = client.post(
                f"/api/alerts/{alert.pk + 1000}/{action}/", {"comment": "x"}, format="json"
            )
            assert seen.status_code == unknown.status_code == 404
            assert seen.json() == unknown.json()
    assert client_for(teacher_a).get("/api/alerts/").json() == []
    assert Alert.objects.filter(status="open").count() == 2


def test_telemetry_is_json_only(staff, school_a):
    """A form of a thousand fields made Django answer an HTML 400: aggregates are JSON."""
    form = {f"aggregates.{i}": "x" for i in range(1100)}
    response = client_for(staff).post("/api/telemetry/", form)  # multipart
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not TelemetryBatch.objects.exists()
