"""The agent in one process against a stand-in district server: local /predict answers and
errors equal the serving core's (the central API's), models swap on sync and roll back from the
cache without a download, the last three good bundles are kept, a tampered bundle or one that
cannot load is refused once and reported while the old model serves, a corrupted active bundle
falls back to the previous one at start, and with nothing to serve /predict says why (503).
And the agent imports none of the central server's heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection

import pytest

from edumlops.edge.agent import Agent
from edumlops.edge.server import MAX_BODY, make_server
from edumlops.ml import onnx_bundle
from edumlops.ml.bundle_files import MODEL_FILE, BundleError
from edumlops.ml.runtime import OrtModel
from edumlops.ml.serving_core import (
    RequestError,
    ServingModel,
    parse_rows,
    predict,
    unseen_categories,
)
from tests.conftest import ROOT
from tests.edge.bundles import DistrictDouble, make_bundle, new_key, register, request_rows

HEAVY = [
    "django",
    "celery",
    "pandas",
    "sklearn",
    "scipy",
    "mlflow",
    "skl2onnx",
    "onnx",
    "pydantic",
    "rest_framework",
]


def test_the_agent_imports_none_of_the_central_servers_libraries():
    code = (
        "import json, sys\n"
        "import edumlops.edge.cli, edumlops.edge.agent, edumlops.edge.server\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def double(tmp_path):
    key = new_key()
    d = DistrictDouble(key)
    for version in range(1, 6):
        folder = tmp_path / "server" / str(version)
        make_bundle(folder, key, model_version_id=version, version=str(version), seed=version % 2)
        d.bundles[version] = folder
    d.desired = (1, 31)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def cache(double, tmp_path):
    return register(tmp_path / "cache", double)


@pytest.fixture
def agent(cache):
    a = Agent(cache)
    a.start_model()
    assert a.sync_once()
    yield a
    a.queue.close()


@pytest.fixture
def port(agent):
    httpd = make_server(agent, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def call(port, method, path, body=None, raw=None):
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def core_model(double, version):
    folder = double.bundles[version]
    manifest = json.loads((folder / "manifest.json").read_text())
    return ServingModel.from_manifest(manifest, OrtModel((folder / MODEL_FILE).read_bytes()))


def sync_to(agent, double, version, deployment=None):
    double.desired = (version, deployment)
    agent.sync_once()
    assert agent.current().version == version


def kinds(agent):
    return [(e["kind"], e["version"]) for e in agent.state.events]


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# --- /predict ----------------------------------------------------------------------------------
def test_predict_answers_as_the_serving_core_on_the_same_bundle(port, double):
    rows = request_rows(8, seed=11)
    status, body = call(port, "POST", "/predict", {"rows": rows})
    assert status == 200
    expected, _ = predict(core_model(double, 1), rows)
    assert body["school"] == 7
    assert [p.pop("deployment") for p in body["predictions"]] == [31] * 8
    assert body["predictions"] == expected
    assert "top_features" in body["predictions"][0]

    status, one = call(port, "POST", "/predict", {"row": rows[0]})
    assert status == 200 and one["predictions"][0]["probability"] == expected[0]["probability"]


def test_an_unseen_category_gets_the_central_apis_warning(port, double):
    rows = request_rows(3, seed=11)
    rows[2]["locality"] = "lunar"
    status, body = call(port, "POST", "/predict", {"rows": rows})
    assert status == 200 and len(body["predictions"]) == 3
    warnings = unseen_categories(core_model(double, 1), rows)
    assert [(w["row"], w["field"], w["code"]) for w in warnings] == [
        (2, "locality", "unseen_category")
    ]
    assert body["warnings"] == warnings
    assert call(port, "POST", "/predict", {"rows": rows[:2]})[1]["warnings"] == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda row: row.pop("attendance_rate"), id="missing"),
        pytest.param(lambda row: row.update(shoe_size=42), id="unknown"),
        pytest.param(lambda row: row.update(attendance_rate="high"), id="text-for-a-number"),
        pytest.param(lambda row: row.update(school=3), id="number-for-a-category"),
        pytest.param(lambda row: row.update(grade=True), id="boolean"),
    ],
)
def test_a_bad_field_gets_the_central_apis_400(port, double, change):
    rows = request_rows(2, seed=3)
    change(rows[1])
    status, body = call(port, "POST", "/predict", {"rows": rows})
    with pytest.raises(RequestError) as expected:
        predict(core_model(double, 1), rows)
    assert status == 400
    assert body == {"detail": str(expected.value), "errors": expected.value.errors}
    assert body["errors"] and all(e["row"] == 1 for e in body["errors"])


@pytest.mark.parametrize(
    "request_body",
    [{"rows": []}, {"rows": "x"}, {"nothing": 1}, [1, 2], {"rows": [1]}, {"rows": [{}] * 1001}],
)
def test_a_malformed_request_gets_the_serving_cores_message(port, request_body):
    status, body = call(port, "POST", "/predict", request_body)
    with pytest.raises(RequestError) as expected:
        parse_rows(request_body)
    assert status == 400 and body["detail"] == str(expected.value)


def test_a_body_that_is_not_json_is_a_400_naming_it(port):
    status, body = call(port, "POST", "/predict", raw=b"{rows: nope")
    assert status == 400 and body["detail"].startswith("JSON parse error - ")


def test_a_body_over_the_limit_is_refused_unread(port):
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 400 and f"at most {MAX_BODY}" in body["detail"]


def test_unknown_paths_and_methods(port):
    assert call(port, "GET", "/nope")[0] == 404
    assert call(port, "POST", "/nope", {})[0] == 404
    assert call(port, "GET", "/predict")[0] == 405


def test_healthz_says_what_serves(port, agent):
    status, body = call(port, "GET", "/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["active_version"] == 1
    assert body["cached_versions"] == [1] and body["server_reachable"] is True
    assert body["last_sync"] and body["pending_telemetry"] == 0
    call(port, "POST", "/predict", {"rows": request_rows(3)})
    assert call(port, "GET", "/healthz")[1]["pending_telemetry"] == 3


def test_keep_alive_connections_get_many_answers(port):
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps({"rows": request_rows(1)}).encode()
    for _ in range(20):
        conn.request("POST", "/predict", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    conn.close()


# --- sync --------------------------------------------------------------------------------------
def test_an_unchanged_manifest_is_a_304_and_costs_nothing_more(agent, double):
    before = len(double.paths())
    assert agent.sync_once()
    manifest_calls = [h for m, p, h in double.requests[before:] if p == "/api/edge/manifest/"]
    assert len(manifest_calls) == 1 and manifest_calls[0]["If-None-Match"] == agent.state.etag
    assert len(double.paths()) == before + 1  # no download


def test_a_rollback_is_served_from_the_cache_without_a_download(agent, double):
    sync_to(agent, double, 2, 32)
    downloads_of_1 = [p for p in double.paths() if p.startswith("/api/edge/bundles/1/")]
    assert len(downloads_of_1) == 3
    sync_to(agent, double, 1, 33)
    assert [p for p in double.paths() if p.startswith("/api/edge/bundles/1/")] == downloads_of_1
    activated = [e for e in agent.state.events if e["kind"] == "activated"]
    assert [e["version"] for e in activated] == [1, 2, 1]
    assert "from the cache (no download)" in activated[-1]["detail"]
    assert "downloaded" in activated[1]["detail"]
    status, body = agent.predict({"rows": request_rows(1)})
    assert body["predictions"][0]["model"]["version"] == "1"
    assert body["predictions"][0]["deployment"] == 33


def test_the_last_three_good_bundles_are_kept(agent, double):
    for version in (2, 3, 4, 5):
        sync_to(agent, double, version)
    assert agent.store.cached() == [5, 4, 3]
    assert agent.state.good == [5, 4, 3]
    sync_to(agent, double, 3)  # a rollback reorders, it does not fetch
    assert agent.state.good == [3, 5, 4] and agent.store.cached() == [5, 4, 3]
    assert not list(agent.store.downloads.iterdir())


def test_a_tampered_bundle_is_refused_once_and_the_old_model_keeps_serving(agent, double):
    flip_a_byte(double.bundles[2] / MODEL_FILE)
    double.desired = (2, 32)
    assert agent.sync_once()
    assert agent.current().version == 1 and agent.status() == "degraded"
    assert ("rejected", 2) in kinds(agent)
    detail = next(e["detail"] for e in agent.state.events if e["kind"] == "rejected")
    assert "SHA-256" in detail and "version 1 keeps serving" in detail
    assert not agent.store.has(2) and not (agent.store.downloads / "2").exists()
    fetched = len([p for p in double.paths() if "/bundles/2/" in p])

    agent.sync_once()  # the same manifest: not fetched again
    assert len([p for p in double.paths() if "/bundles/2/" in p]) == fetched
    assert kinds(agent).count(("rejected", 2)) == 1

    double.history = [1]  # the manifest changes: worth another try
    agent.sync_once()
    assert len([p for p in double.paths() if "/bundles/2/" in p]) > fetched
    assert kinds(agent).count(("rejected", 2)) == 2
    assert agent.predict({"rows": request_rows(1)})[0] == 200


def test_a_rejected_version_is_tried_again_after_ten_minutes(agent, double):
    flip_a_byte(double.bundles[2] / MODEL_FILE)
    double.desired = (2, 32)
    agent.sync_once()
    fetched = len([p for p in double.paths() if "/bundles/2/" in p])
    agent.sync_once()
    assert len([p for p in double.paths() if "/bundles/2/" in p]) == fetched
    agent.state.rejected["2"]["ts"] -= 601
    agent.sync_once()
    assert len([p for p in double.paths() if "/bundles/2/" in p]) > fetched
    assert kinds(agent).count(("rejected", 2)) == 2


def test_a_repaired_bundle_serves_once_the_manifest_changes(agent, double):
    flip_a_byte(double.bundles[2] / MODEL_FILE)
    double.desired = (2, 32)
    agent.sync_once()
    assert agent.current().version == 1
    flip_a_byte(double.bundles[2] / MODEL_FILE)  # repaired: its listed digest (the ETag) changes
    agent.sync_once()
    assert agent.current().version == 2 and agent.status() == "ok"
    assert "2" not in agent.state.rejected


def test_a_foreign_signature_is_refused(agent, double, tmp_path):
    make_bundle(tmp_path / "foreign", new_key(), model_version_id=2, version="2")
    double.bundles[2] = tmp_path / "foreign"
    double.desired = (2, 32)
    agent.sync_once()
    assert agent.current().version == 1
    detail = next(e["detail"] for e in agent.state.events if e["kind"] == "rejected")
    assert "signature" in detail


def test_a_verified_bundle_onnx_runtime_cannot_load_is_reported_as_load_failed(
    agent, double, tmp_path
):
    manifest = json.loads((double.bundles[2] / "manifest.json").read_text())
    for field in ("files", "signing_key_id", "format"):
        manifest.pop(field)
    onnx_bundle.write_bundle(tmp_path / "broken", b"not an onnx model", manifest, double.key)
    double.bundles[2] = tmp_path / "broken"
    double.desired = (2, 32)
    agent.sync_once()
    assert agent.current().version == 1
    assert ("load_failed", 2) in kinds(agent)
    assert agent.state.rejected["2"]["kind"] == "load_failed"
    assert not agent.store.has(2)


def test_a_corrupted_active_bundle_falls_back_to_the_previous_one(agent, double, cache):
    sync_to(agent, double, 2, 32)
    agent.queue.close()
    flip_a_byte(cache / "bundles" / "2" / MODEL_FILE)

    restarted = Agent(cache)
    model = restarted.start_model()
    assert model is not None and model.version == 1
    assert restarted.status() == "degraded"
    event = restarted.state.events[-1]
    assert event["kind"] == "fallback" and event["version"] == 1
    assert "version 2 no longer verifies" in event["detail"]
    assert not (cache / "bundles" / "2").exists()
    assert restarted.predict({"rows": request_rows(1)})[1]["predictions"][0]["model"] == {
        "name": "at-risk",
        "version": "1",
    }
    restarted.sync_once()  # the desired version is fetched again and serves
    assert restarted.current().version == 2 and restarted.status() == "ok"
    restarted.queue.close()


def test_when_nothing_loads_predict_answers_503_naming_why(agent, double, cache):
    sync_to(agent, double, 2)
    agent.queue.close()
    for version in (1, 2):
        flip_a_byte(cache / "bundles" / str(version) / MODEL_FILE)
    restarted = Agent(cache)
    assert restarted.start_model() is None
    status, body = restarted.predict({"rows": request_rows(1)})
    assert status == 503
    assert "version 2 no longer verifies" in body["detail"]
    assert "version 1 no longer verifies" in body["detail"]
    assert restarted.state.events[-1]["kind"] == "unavailable"
    assert restarted.health()["status"] == "unavailable"
    restarted.queue.close()


def test_a_fresh_node_answers_503_until_its_first_bundle(cache, double):
    fresh = Agent(cache)
    assert fresh.start_model() is None
    status, body = fresh.predict({"rows": request_rows(1)})
    assert status == 503 and "No model yet" in body["detail"]
    assert fresh.state.events == []  # nothing failed
    fresh.sync_once()
    assert fresh.predict({"rows": request_rows(1)})[0] == 200
    fresh.queue.close()


def test_the_server_away_changes_nothing_for_predict(agent, double):
    double.stop()
    assert agent.sync_once() is False and agent.reachable is False
    assert agent.predict({"rows": request_rows(2)})[0] == 200
    assert agent.health()["server_reachable"] is False


def test_a_revoked_token_is_logged_and_serving_goes_on(agent, double, caplog):
    double.revoked = True
    assert agent.sync_once() is False
    assert "revoked" in caplog.text
    assert agent.predict({"rows": request_rows(1)})[0] == 200


def test_models_swap_under_load_without_a_failed_request(agent, double, port):
    sync_to(agent, double, 2)
    answers, errors = [], []
    data = {"rows": request_rows(2)}

    def hammer():
        for _ in range(30):
            try:
                status, body = call(port, "POST", "/predict", data)
                answers.append((status, body["predictions"][0]["model"]["version"]))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for version in (1, 2, 1, 2, 1):
        sync_to(agent, double, version)
    for t in threads:
        t.join()
    assert not errors
    assert {s for s, _ in answers} == {200} and {v for _, v in answers} <= {"1", "2"}


# --- report ------------------------------------------------------------------------------------
def test_events_wait_until_a_report_delivers_them(agent, double):
    sync_to(agent, double, 2, 32)
    double.stop()
    assert agent.report_once() is False
    assert [e["kind"] for e in agent.state.events] == ["activated", "activated"]
    double.start()  # the same port
    assert agent.report_once() is True
    report = double.reports[-1]
    assert [e["version"] for e in report["events"]] == [1, 2]
    assert all(e["id"] and e["at"] for e in report["events"])
    assert agent.state.events == []
    assert report["active_version"] == 2 and report["cached_versions"] == [2, 1]
    assert report["serving"] == "ok" and report["pending_telemetry"] == 0
    profile = report["device_profile"]
    assert profile["cores"] >= 1 and profile["memory_mb"] > 0 and profile["onnxruntime"]
    assert (
        profile["label"]
        == f"{profile['cores']}c-{round(profile['memory_mb'] / 1024)}g-" + (profile["machine"])
    )
    assert 0 < profile["latency_p50_ms"] <= profile["latency_p95_ms"]
    agent.report_once()
    assert double.reports[-1]["events"] == []


def test_state_survives_a_restart(agent, double, cache):
    sync_to(agent, double, 2, 32)
    agent.queue.close()
    again = Agent(cache)
    assert again.start_model().version == 2
    assert again.state.good == [2, 1] and again.state.etag == agent.state.etag
    assert again.predict({"rows": request_rows(1)})[1]["predictions"][0]["deployment"] == 32
    again.queue.close()


def test_a_bundle_damaged_in_the_cache_is_fetched_again_at_the_next_sync(agent, double, cache):
    sync_to(agent, double, 2)
    flip_a_byte(cache / "bundles" / "1" / MODEL_FILE)
    with pytest.raises(BundleError):
        agent.store.verify(1)
    sync_to(agent, double, 1)  # a rollback to a damaged copy: downloaded again, verified
    assert agent.store.verify(1)["model"]["model_version_id"] == 1


def test_a_request_in_flight_finishes_on_the_model_it_started_with(agent, double, monkeypatch):
    import edumlops.edge.agent as agent_module

    started, release = threading.Event(), threading.Event()
    real = agent_module.predict

    def slow(model, rows):
        started.set()
        release.wait(10)
        return real(model, rows)

    monkeypatch.setattr(agent_module, "predict", slow)
    answer = {}
    thread = threading.Thread(
        target=lambda: answer.update(result=agent.predict({"rows": request_rows(1)}))
    )
    thread.start()
    started.wait(10)
    monkeypatch.setattr(agent_module, "predict", real)
    sync_to(agent, double, 2)  # swapped while the request runs
    release.set()
    thread.join(10)
    status, body = answer["result"]
    assert status == 200 and body["predictions"][0]["model"]["version"] == "1"
    assert agent.predict({"rows": request_rows(1)})[1]["predictions"][0]["model"]["version"] == "2"


def test_stopping_the_server_lets_the_request_in_flight_finish(agent, monkeypatch):
    started = threading.Event()
    real = agent.predict

    def slow(body):
        started.set()
        time.sleep(0.5)
        return real(body)

    monkeypatch.setattr(agent, "predict", slow)
    httpd = make_server(agent, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    answer = {}
    thread = threading.Thread(
        target=lambda: answer.update(
            result=call(httpd.server_address[1], "POST", "/predict", {"rows": request_rows(1)})
        )
    )
    thread.start()
    started.wait(10)
    httpd.shutdown()  # what SIGTERM does: no new connections, then wait for this one
    assert httpd.drain(10)
    httpd.server_close()
    thread.join(10)
    assert answer["result"][0] == 200


def test_with_nothing_deployed_the_agent_serves_what_it_has_under_no_deployment(agent, double):
    double.desired = None
    assert agent.sync_once()
    status, body = agent.predict({"rows": request_rows(1)})
    assert status == 200 and body["predictions"][0]["deployment"] is None
    assert agent.health()["status"] == "ok"
