"""In a real headless Chromium: an admin registers a school's edge server on the Edge page, sees
its token and the register command once, the table says it never contacted the server; after
the node reports over real HTTP the table shows its last contact and whether it serves the
version its school should ("in sync", then "behind" after a new rollout); revoking it (with a
confirmation) makes every call it makes answer 401."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from edumlops.deployments import services
from edumlops.fleet.models import EdgeNode
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.deployments.conftest import make_model

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db, ml_stores, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    return district, make_model(district, seed=0), make_model(district, seed=1)


def _call(base: str, token: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_register_watch_and_revoke_an_edge_server(page, live_server, demo):
    district, v1, v2 = demo
    services.roll_out(v1, scope="district", reason="first model")
    base = live_server.url
    log_in(page, base, "admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Edge").click()
    assert "No edge server is registered yet" in page.get_by_test_id("edge-nodes").inner_text()

    form = page.get_by_test_id("register-form")
    form.get_by_label("School").select_option(label="Riverside High School")
    form.get_by_label("Node name").fill("rhs-server-1")
    form.get_by_role("button", name="Register node").click()
    token = page.get_by_test_id("token").inner_text().strip()
    assert token.startswith("edge_") and len(token) == 45
    command = page.get_by_test_id("register-command").inner_text()
    assert command == f"edumlops-edge register --server {base} --token {token}"
    row = page.get_by_test_id("node-rhs-server-1")
    assert "Riverside High School" in row.inner_text()
    assert "never contacted" in row.get_by_test_id("contact").inner_text()
    assert EdgeNode.objects.get(name="rhs-server-1").key_hash != token

    page.reload()  # shown once: a fresh page has no token
    assert page.get_by_test_id("new-token").count() == 0
    assert token not in page.content()

    status, hello = _call(base, token, "/api/edge/hello/")
    assert status == 200 and hello["school"]["name"] == "Riverside High School"
    status, manifest = _call(base, token, "/api/edge/manifest/")
    assert status == 200 and manifest["desired"]["model_version"] == v1.pk
    report = {
        "active_version": v1.pk,
        "cached_versions": [v1.pk],
        "agent_version": "0.1.0",
        "device_profile": {"label": "4c-8g-x86_64", "cores": 4, "memory_mb": 7962,
                           "latency_p50_ms": 0.21, "latency_p95_ms": 0.34},
        "pending_telemetry": 3,
        "serving": "ok",
        "events": [{"id": "e1", "kind": "activated", "version": v1.pk,
                    "detail": "downloaded 48 KB"}],
    }  # fmt: skip
    status, answer = _call(base, token, "/api/edge/report/", report)
    assert status == 200 and answer["desired_version"] == v1.pk

    page.reload()
    row = page.get_by_test_id("node-rhs-server-1")
    contact = row.get_by_test_id("contact").inner_text()
    assert "online" in contact and "last contact just now" in contact
    assert "in sync" in row.get_by_test_id("sync").inner_text()
    text = row.inner_text()
    assert "4c-8g-x86_64" in text and "4 cores" in text and "0.34 ms" in text
    assert "activated" in text and "downloaded 48 KB" in text

    services.roll_out(v2, scope="district", reason="a better model")
    # silent for two hours: offline, said in words
    node = EdgeNode.objects.get(name="rhs-server-1")
    EdgeNode.objects.filter(pk=node.pk).update(
        last_contact=node.last_contact - dt.timedelta(hours=2)
    )
    page.reload()
    row = page.get_by_test_id("node-rhs-server-1")
    contact = row.get_by_test_id("contact").inner_text()
    assert "offline 2 h" in contact and "last contact 2 h ago" in contact
    sync = row.get_by_test_id("sync").inner_text()
    assert "behind" in sync and f"v{v2.version}" in sync
    shots = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "edge-page-offline-behind.png"), full_page=True)

    row = page.get_by_test_id("node-rhs-server-1")
    row.get_by_role("button", name="Revoke").click()
    assert "Revoke rhs-server-1?" in page.locator("dialog[open]").inner_text()
    page.get_by_test_id("confirm-revoke").click()
    assert "is revoked" in page.locator(".message").inner_text()
    assert "revoked" in page.get_by_test_id("node-rhs-server-1").inner_text()
    assert page.get_by_test_id("node-rhs-server-1").get_by_role("button").count() == 0
    status, refused = _call(base, token, "/api/edge/manifest/")
    assert status == 401 and "unknown or revoked" in refused["detail"]

    page.get_by_role("link", name="Audit").click()
    assert "token created" in page.get_by_test_id("audit-table").inner_text()
