"""The edge API on real PostgreSQL with real signed bundles in a real MLflow store: node tokens
(shown once, hashed, revocable → 401), hello, the manifest and its ETag across rollout and
rollback, history, bundle downloads with Range, reports stored once, telemetry counted once,
and who may register, list and revoke nodes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from edumlops.audit.models import AuditRecord
from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.fleet import api, bundles
from edumlops.fleet.models import EdgeEvent, EdgeNode
from edumlops.ml import signing
from edumlops.ml.bundle_files import BundleError, verify_bundle
from edumlops.monitoring.models import DailyAggregate
from edumlops.registry.models import ModelVersion
from tests.fleet.conftest import as_user

pytestmark = pytest.mark.django_db

NODE_CALLS = [
    ("get", "/api/edge/hello/"),
    ("get", "/api/edge/manifest/"),
    ("get", "/api/edge/bundles/1/model.onnx"),
    ("post", "/api/edge/report/"),
    ("post", "/api/edge/telemetry/"),
]


def body_of(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


# --- tokens -----------------------------------------------------------------------------------
def test_an_admin_registers_a_node_and_sees_its_token_once(district_admin, school_a):
    client = as_user(district_admin)
    answer = client.post(
        "/api/edge/nodes/", {"school": school_a.pk, "name": "alder-srv-1"}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    token = answer.json()["token"]
    assert token.startswith("edge_") and len(token) == 45
    assert answer.json()["register"] == (
        f"edumlops-edge register --server http://testserver --token {token}"
    )
    node = EdgeNode.objects.get(pk=answer.json()["id"])
    assert node.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert node.prefix == token[:12] and token not in str(node.__dict__)
    listed = client.get("/api/edge/nodes/").json()
    assert [n["name"] for n in listed] == ["alder-srv-1"] and token not in str(listed)
    assert listed[0]["contact"] == "never contacted" and listed[0]["online"] is False
    record = AuditRecord.objects.get(target_type="fleet.edgenode")
    assert record.action == "token_created" and record.after["edge_node"] == "alder-srv-1"
    assert record.district_id == school_a.district_id


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "x"}, "school: This field is required."),
        ({"school": "a", "name": "x"}, "school: A valid integer is required."),
        ({"school": "A", "name": "has spaces"}, "Name the node with letters, digits"),
        ({"school": "A", "name": ""}, "Name the node with letters, digits"),
        ({"school": "A", "name": "taken"}, "already has a node named taken: choose another"),
    ],
)
def test_a_bad_registration_says_what_to_fix_and_writes_nothing(
    district_admin, school_a, register, payload, message
):
    register(school_a, "taken")
    before = (EdgeNode.objects.count(), AuditRecord.objects.count())
    body = {**payload, "school": school_a.pk} if payload.get("school") == "A" else payload
    answer = as_user(district_admin).post("/api/edge/nodes/", body, format="json")
    assert answer.status_code == 400 and message in answer.json()["detail"]
    assert (EdgeNode.objects.count(), AuditRecord.objects.count()) == before


def test_only_admins_register_and_revoke(staff, teacher_a, outsider, school_a, register):
    node, _, _ = register(school_a)
    body = {"school": school_a.pk, "name": "another"}
    assert as_user(staff).post("/api/edge/nodes/", body, format="json").status_code == 403
    assert as_user(teacher_a).post("/api/edge/nodes/", body, format="json").status_code == 403
    hidden = as_user(outsider).post("/api/edge/nodes/", body, format="json")
    assert hidden.status_code == 400  # a school you do not see is named like an unknown one
    assert [e["field"] for e in hidden.json()["errors"]] == ["school"]
    assert as_user(staff).post(f"/api/edge/nodes/{node.pk}/revoke/").status_code == 403
    assert as_user(outsider).post(f"/api/edge/nodes/{node.pk}/revoke/").status_code == 404
    assert EdgeNode.objects.filter(revoked_at__isnull=True).count() == 1


def test_who_sees_which_nodes(
    staff, teacher_a, outsider, platform_admin, school_a, school_b, register
):
    register(school_a, "a-1")
    register(school_b, "b-1")
    names = lambda user: sorted(n["name"] for n in as_user(user).get("/api/edge/nodes/").json())  # noqa: E731
    assert names(staff) == ["a-1", "b-1"] and names(platform_admin) == ["a-1", "b-1"]
    assert names(teacher_a) == ["a-1"]
    assert names(outsider) == []


def test_a_revoked_node_gets_401_on_every_call(district_admin, school_a, register):
    node, key, client = register(school_a)
    assert client.get("/api/edge/hello/").status_code == 200
    answer = as_user(district_admin).post(f"/api/edge/nodes/{node.pk}/revoke/")
    assert answer.status_code == 200 and answer.json()["revoked"] is True
    for method, path in NODE_CALLS:
        refused = getattr(client, method)(path, {}, format="json")
        assert refused.status_code == 401, path
        assert "unknown or revoked" in refused.json()["detail"]
        assert refused["WWW-Authenticate"] == "Bearer"
    again = as_user(district_admin).post(f"/api/edge/nodes/{node.pk}/revoke/")
    assert again.status_code == 400 and "already revoked" in again.json()["detail"]
    revoked = AuditRecord.objects.filter(target_type="fleet.edgenode").order_by("id").last()
    assert revoked.after == {"revoked": True} and revoked.reason == "edge node revoked"
    # the name is free again for the replacement server, whose token works
    _, _, replacement = register(school_a)
    assert replacement.get("/api/edge/hello/").status_code == 200
    assert client.get("/api/edge/hello/").status_code == 401


def test_calls_without_a_node_token_are_refused(school_a, register, staff):
    from rest_framework.test import APIClient

    register(school_a)
    anonymous, wrong, person = APIClient(), APIClient(), as_user(staff)
    wrong.credentials(HTTP_AUTHORIZATION="Bearer edge_not-a-real-token")
    for method, path in NODE_CALLS:
        assert getattr(anonymous, method)(path).status_code == 401, path
        assert getattr(wrong, method)(path).status_code == 401, path
        assert getattr(person, method)(path).status_code == 403, path  # a person is no node


# --- hello and manifest ------------------------------------------------------------------------
def test_hello_names_the_node_its_school_and_the_key_to_pin(ml_stores, school_a, register):
    node, _, client = register(school_a)
    before = timezone.now()
    hello = client.get("/api/edge/hello/").json()
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH)).public_key()
    assert hello["protocol"] == 1
    assert hello["node"] == {"id": node.pk, "name": "rhs-server-1"}
    assert hello["school"] == {"id": school_a.pk, "code": "a", "name": "Alder School"}
    assert hello["district"]["id"] == school_a.district_id
    assert signing.key_id(signing.load_public_key(hello["public_key_pem"])) == signing.key_id(key)
    assert hello["signing_key_id"] == signing.key_id(key)
    assert hello["poll_seconds"] == settings.EDGE_POLL_SECONDS
    node.refresh_from_db()
    assert node.last_contact >= before  # every call is a contact


def test_the_manifest_follows_rollout_and_rollback_with_etags(
    two_models, district, school_a, staff, register
):
    v1, v2 = two_models
    _, _, client = register(school_a)
    empty = client.get("/api/edge/manifest/")
    assert empty.status_code == 200 and empty.json()["desired"] is None
    assert empty.json()["history"] == [] and empty.json()["school"] == school_a.pk

    first = services.roll_out(v1, scope="district", user=staff)
    answer = client.get("/api/edge/manifest/")
    body, etag = answer.json(), answer["ETag"]
    assert body["etag"] == etag and etag.startswith('"') and etag != empty["ETag"]
    desired = body["desired"]
    assert desired["model_version"] == v1.pk and desired["deployment"] == first.pk
    assert desired["version"] == v1.version and desired["name"] == "at-risk"
    assert desired["scope"] == "district" and body["history"] == []
    folder = bundles.bundle_dir(v1)
    assert [f["name"] for f in desired["files"]] == ["manifest.json", "manifest.sig", "model.onnx"]
    for f in desired["files"]:
        data = (folder / f["name"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["url"] == f"/api/edge/bundles/{v1.pk}/{f['name']}"

    unchanged = client.get("/api/edge/manifest/", HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged["ETag"] == etag

    second = services.roll_out(v2, scope="district", user=staff)
    rolled = client.get("/api/edge/manifest/", HTTP_IF_NONE_MATCH=etag)
    assert rolled.status_code == 200 and rolled["ETag"] != etag
    assert rolled.json()["desired"]["model_version"] == v2.pk
    assert rolled.json()["history"] == [v1.pk]

    services.rollback(second, user=staff, reason="recall dropped")
    back = client.get("/api/edge/manifest/", HTTP_IF_NONE_MATCH=rolled["ETag"])
    assert back.status_code == 200 and back["ETag"] not in (etag, rolled["ETag"])
    assert back.json()["desired"]["model_version"] == v1.pk
    assert back.json()["history"] == [v2.pk]  # still in the agent's cache: no download needed


def test_history_is_the_schools_own_newest_first_and_at_most_five(
    district, school_a, school_b, other_district
):
    models = [
        ModelVersion.objects.create(
            district=district,
            name=f"maple-at-risk-{i}",
            version="1",
            run_id="x",
            algorithm="logistic_regression",
            dataset_sha256="0" * 64,
            bundle={"manifest": {"files": {}}},
        )
        for i in range(9)
    ]
    for m in models[:7]:  # seven district versions, one after the other
        Deployment.objects.create(
            district=district, model_version=m, scope="district", status="superseded"
        )
    pilot_b = Deployment.objects.create(district=district, model_version=models[7], scope="pilot")
    pilot_b.schools.set([school_b])
    pilot_a = Deployment.objects.create(district=district, model_version=models[8], scope="pilot")
    pilot_a.schools.set([school_a])
    again = Deployment.objects.create(district=district, model_version=models[6], scope="district")
    assert again.pk
    assert api.history(school_a, exclude=models[6].pk) == [
        models[8].pk, models[5].pk, models[4].pk, models[3].pk, models[2].pk,
    ]  # fmt: skip
    assert models[7].pk in api.history(school_b, exclude=None)
    assert models[7].pk not in api.history(school_a, exclude=None)


# --- bundle files ------------------------------------------------------------------------------
def test_bundle_files_download_whole_and_resume_with_range(
    two_models, district, school_a, staff, register, tmp_path
):
    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    _, _, client = register(school_a)
    hello = client.get("/api/edge/hello/").json()
    listing = client.get("/api/edge/manifest/").json()["desired"]["files"]
    out = tmp_path / "download"
    out.mkdir()
    for f in listing:
        whole = client.get(f["url"])
        assert whole.status_code == 200 and int(whole["Content-Length"]) == f["size"]
        assert whole["Accept-Ranges"] == "bytes"
        (out / f["name"]).write_bytes(body_of(whole))
    # what was downloaded verifies against the key pinned at hello
    manifest = verify_bundle(out, signing.load_public_key(hello["public_key_pem"]))
    assert manifest["model"]["version"] == v1.version

    data = (out / "model.onnx").read_bytes()
    size = len(data)
    url = f"/api/edge/bundles/{v1.pk}/model.onnx"
    tail = client.get(url, HTTP_RANGE="bytes=100-")
    assert tail.status_code == 206 and tail["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert int(tail["Content-Length"]) == size - 100 and body_of(tail) == data[100:]
    middle = client.get(url, HTTP_RANGE="bytes=5-9")
    assert middle.status_code == 206 and middle["Content-Range"] == f"bytes 5-9/{size}"
    assert body_of(middle) == data[5:10] and middle["Content-Length"] == "5"
    past = client.get(url, HTTP_RANGE=f"bytes={size}-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{size}"
    assert "download it again from the start" in past.json()["detail"]


def test_only_bundle_files_of_the_nodes_district_are_served(
    ml_stores, district, other_district, school_a, register
):
    mine, theirs = make_model_pair(district, other_district)
    _, _, client = register(school_a)
    assert client.get(f"/api/edge/bundles/{mine.pk}/manifest.sig").status_code == 200
    foreign = client.get(f"/api/edge/bundles/{theirs.pk}/model.onnx")
    assert (
        foreign.status_code == 404
        and "take the version from your manifest" in foreign.json()["detail"]
    )
    assert client.get(f"/api/edge/bundles/{mine.pk}/.origin.json").status_code == 404
    assert client.get(f"/api/edge/bundles/{mine.pk}/secret.pem").status_code == 404
    mine.bundle = {}
    mine.save()
    assert client.get(f"/api/edge/bundles/{mine.pk}/model.onnx").status_code == 404


def make_model_pair(district, other_district):
    from tests.deployments.conftest import make_model

    return make_model(district, seed=0), make_model(other_district, seed=1)


def test_the_server_serves_its_copy_as_stored_and_the_agent_would_refuse_it(
    two_models, school_a, staff, register, tmp_path
):
    v1, _ = two_models
    services.roll_out(v1, scope="district", user=staff)
    _, _, client = register(school_a)
    before = client.get("/api/edge/manifest/")
    onnx = bundles.bundle_dir(v1) / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    after = client.get("/api/edge/manifest/", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200  # the digests changed, so the agent downloads again
    listed = {f["name"]: f for f in after.json()["desired"]["files"]}
    assert listed["model.onnx"]["sha256"] == hashlib.sha256(data).hexdigest()
    served = body_of(client.get(f"/api/edge/bundles/{v1.pk}/model.onnx"))
    assert served == bytes(data)
    out = tmp_path / "got"
    out.mkdir()
    for name in ("manifest.json", "manifest.sig"):
        (out / name).write_bytes(body_of(client.get(f"/api/edge/bundles/{v1.pk}/{name}")))
    (out / "model.onnx").write_bytes(served)
    key = signing.load_public_key(client.get("/api/edge/hello/").json()["public_key_pem"])
    with pytest.raises(BundleError, match="model.onnx does not match its SHA-256"):
        verify_bundle(out, key)


def test_a_stale_copy_from_another_database_is_replaced(two_models, bundle_cache):
    v1, v2 = two_models
    stale = bundle_cache / str(v1.pk)
    stale.mkdir(parents=True)
    for name in ("manifest.json", "manifest.sig", "model.onnx"):
        (stale / name).write_text("left over")
    (stale / ".origin.json").write_text('{"run_id": "another"}')
    folder = bundles.bundle_dir(v1)
    assert (folder / "model.onnx").read_bytes() != b"left over"
    assert bundles.files(v1) == bundles.files(v1)  # digests are remembered, not recomputed wrong


# --- report ------------------------------------------------------------------------------------
def report_body(v, **extra):
    return {
        "active_version": v.pk,
        "cached_versions": [v.pk],
        "agent_version": "0.1.0",
        "device_profile": {
            "label": "4c-8g-x86_64",
            "cores": 4,
            "memory_mb": 7962,
            "latency_p50_ms": 0.21,
            "latency_p95_ms": 0.34,
        },
        "pending_telemetry": 2,
        "serving": "ok",
        "events": [
            {
                "id": "e1",
                "kind": "activated",
                "version": v.pk,
                "detail": "downloaded 48 KB",
                "at": "2026-11-27T10:00:00+00:00",
            },
            {
                "id": "e2",
                "kind": "rejected",
                "version": v.pk,
                "detail": "model.onnx does not match",
                "at": "2026-11-27T10:05:00Z",
            },
        ],  # fmt: skip
        **extra,
    }


def test_a_report_updates_the_node_and_stores_each_event_once(
    two_models, school_a, staff, register
):
    v1, v2 = two_models
    services.roll_out(v2, scope="district", user=staff)
    node, _, client = register(school_a)
    first = client.post("/api/edge/report/", report_body(v1), format="json")
    assert first.status_code == 200
    assert first.json() == {"ok": True, "desired_version": v2.pk, "events_stored": 2}
    again = client.post("/api/edge/report/", report_body(v1), format="json")  # a resend
    assert again.json()["events_stored"] == 0
    assert EdgeEvent.objects.filter(node=node).count() == 2
    node.refresh_from_db()
    assert node.active_version == v1 and node.cached_versions == [v1.pk]
    assert node.device_profile["cores"] == 4 and node.pending_telemetry == 2
    assert node.agent_version == "0.1.0" and node.serving == "ok"
    assert node.last_event["kind"] == "rejected" and node.last_contact is not None
    rejected = EdgeEvent.objects.get(client_id="e2")
    assert rejected.model_version == v1 and rejected.at.minute == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"active_version": "twelve"}, "active_version: A valid integer is required."),
        ({"cached_versions": "12"}, "cached_versions: Expected a list of items"),
        ({"pending_telemetry": -1}, "pending_telemetry: Ensure this value is greater than"),
        ({"device_profile": []}, "device_profile: Expected a dictionary of items"),
        ({"events": [{"id": "x", "kind": "exploded"}]}, "Event 0: kind must be one of activated"),
        ({"events": [{"kind": "activated"}]}, "Event 0: id must be text"),
        ({"events": [{"id": "x", "kind": "activated", "at": "yesterday"}]}, "Event 0: at must be"),
    ],
)
def test_a_bad_report_is_refused_whole(two_models, school_a, register, change, message):
    v1, _ = two_models
    node, _, client = register(school_a)
    answer = client.post("/api/edge/report/", report_body(v1, **change), format="json")
    assert answer.status_code == 400 and message in answer.json()["detail"]
    node.refresh_from_db()
    assert node.active_version is None and node.pending_telemetry == 0
    assert not EdgeEvent.objects.exists()


def test_a_report_naming_another_districts_version_is_refused(
    ml_stores, district, other_district, school_a, register
):
    mine, theirs = make_model_pair(district, other_district)
    node, _, client = register(school_a)
    answer = client.post("/api/edge/report/", report_body(theirs), format="json")
    assert answer.status_code == 400
    assert (
        f"active_version {theirs.pk} is not a model version of Maple Valley"
        in answer.json()["detail"]
    )
    node.refresh_from_db()
    assert node.active_version is None and not EdgeEvent.objects.exists()


# --- telemetry ---------------------------------------------------------------------------------
def test_telemetry_through_the_node_token_counts_once(two_models, school_a, school_b, register):
    v1, _ = two_models
    _, _, client = register(school_a)
    bins = len(v1.drift_reference["attendance_rate"]["counts"])
    batch = {
        "idempotency_key": "rhs-server-1:5f0c",
        "aggregates": [
            {
                "day": "2026-11-27",
                "model_version": v1.pk,
                "node": "pretending-to-be-another",
                "count": 7,
                "bands": {"low": 5, "high": 2},
                "histograms": {"attendance_rate": [7] + [0] * (bins - 1)},
                "latency_p50_ms": 0.25,
                "latency_p95_ms": 0.61,
                "device_profile": "4c-8g-x86_64",
            }
        ],
    }
    first = client.post("/api/edge/telemetry/", batch, format="json")
    assert first.status_code == 201 and first.json() == {"added": 1, "duplicate": False}
    resent = client.post("/api/edge/telemetry/", batch, format="json")
    assert resent.status_code == 200 and resent.json() == {"added": 0, "duplicate": True}
    row = DailyAggregate.objects.get()
    assert row.school == school_a and row.count == 7 and row.source == "edge:rhs-server-1"
    assert row.device_profile == "4c-8g-x86_64" and row.latency_p95_ms == 0.61

    bad = client.post(
        "/api/edge/telemetry/", {"idempotency_key": "k2", "aggregates": []}, format="json"
    )
    assert bad.status_code == 400 and "non-empty list" in bad.json()["detail"]
    missing = client.post(
        "/api/edge/telemetry/",
        {"idempotency_key": "k3", "aggregates": [{"day": "2026-11-27"}]},
        format="json",
    )
    assert missing.status_code == 400 and "Aggregate 0 lacks" in missing.json()["detail"]
    assert DailyAggregate.objects.get().count == 7


def the_shape(answer, status: int, field: str) -> None:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert set(body) == {"detail", "code", "errors"}
    assert field in [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        ({"idempotency_key": ["k"], "aggregates": [{"day": "2026-11-27"}]}, "idempotency_key"),
        ({"idempotency_key": {}, "aggregates": []}, "idempotency_key"),
        ({"idempotency_key": "k", "aggregates": "all"}, "aggregates"),
        ({"idempotency_key": "k", "aggregates": [1]}, "aggregates.0"),
        (["k"], ""),
    ],
)
def test_a_malformed_telemetry_batch_is_a_400_naming_the_field(school_a, register, batch, field):
    """`"idempotency_key": ["k"]` was a 500 ('list' object has no attribute 'strip')."""
    _, _, client = register(school_a)
    the_shape(client.post("/api/edge/telemetry/", batch, format="json"), 400, field)
    assert not DailyAggregate.objects.exists()


def test_telemetry_past_the_rate_gets_429_with_retry_after(school_a, register, settings):
    from django.core.cache import cache

    cache.clear()
    settings.EDUMLOPS_THROTTLE_RATES = {**settings.EDUMLOPS_THROTTLE_RATES, "telemetry": "2/min"}
    _, _, client = register(school_a)
    batch = {"idempotency_key": "k", "aggregates": []}
    for _ in range(2):
        assert client.post("/api/edge/telemetry/", batch, format="json").status_code == 400
    refused = client.post("/api/edge/telemetry/", batch, format="json")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert refused.json()["code"] == "throttled" and refused.json()["errors"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"school": {}, "name": "x"}, "school"), ({"school": 2**70, "name": "x"}, "school"), ([], "")],
)
def test_a_malformed_registration_is_a_400_naming_the_field(district_admin, body, field):
    answer = as_user(district_admin).post("/api/edge/nodes/", body, format="json")
    the_shape(answer, 400, field)
    assert not EdgeNode.objects.exists()
