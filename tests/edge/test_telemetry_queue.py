"""The telemetry queue: encrypted at rest, the same bins as the drift module, sealed into batches
in one transaction, and delivered exactly once — across a lost answer, a restart, a server that
is down (5xx: kept) or that refuses a batch (4xx: kept, later batches go on)."""

from __future__ import annotations

import json
import time

import pytest

from edumlops.edge.agent import Agent
from edumlops.edge.config import telemetry_key
from edumlops.edge.models import Bins
from edumlops.edge.telemetry import TelemetryKeyError, TelemetryQueue
from edumlops.ml import drift
from tests.edge.bundles import DistrictDouble, make_bundle, new_key, register, request_rows


@pytest.fixture
def double(tmp_path):
    key = new_key()
    d = DistrictDouble(key)
    make_bundle(tmp_path / "server" / "5", key, model_version_id=5, version="5")
    d.bundles[5] = tmp_path / "server" / "5"
    d.desired = (5, 31)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def agent(double, tmp_path):
    register(tmp_path / "cache", double)
    a = Agent(tmp_path / "cache")
    assert a.sync_once() and a.current() is not None
    yield a
    a.queue.close()


def _predict(agent, rows):
    status, body = agent.predict({"rows": rows})
    assert status == 200, body
    return body


def _files_bytes(cache):
    return b"".join(p.read_bytes() for p in cache.glob("telemetry.db*"))


def test_the_queue_holds_no_feature_name_or_value_in_clear(agent, tmp_path):
    rows = request_rows(20, seed=3)
    for i in range(0, 20, 4):
        _predict(agent, rows[i : i + 4])
    stored = _files_bytes(tmp_path / "cache")
    assert agent.queue.pending_rows() == 20
    # (long enough not to turn up by chance in the ciphertext's base64)
    secrets = [*rows[0], "Riverside", "urban", "rural", "medium", "risk_band", "histograms"]
    secrets += [json.dumps(rows[0]["attendance_rate"])]
    for secret in secrets:
        assert secret.encode() not in stored, secret
    agent.queue.seal_all()
    stored = _files_bytes(tmp_path / "cache")
    for secret in secrets:
        assert secret.encode() not in stored, secret
    assert agent.queue.counts()["batches"] == 1


def test_the_bins_are_the_drift_modules_bins(agent):
    reference = agent.current().manifest.drift_reference
    rows = request_rows(40, seed=5)
    numeric = next(n for n, r in reference.items() if r["kind"] == "numeric" and n in rows[0])
    categorical = next(n for n, r in reference.items() if r["kind"] == "categorical")
    rows[0][numeric] = None  # missing
    rows[1][numeric] = reference[numeric]["edges"][2]  # exactly on an edge
    rows[2][numeric] = -1e9  # below every edge
    rows[3][categorical] = "a school nobody has heard of"  # "other"
    rows[4][categorical] = None  # missing
    probabilities = [0.0, 0.5, 1.0, *(0.01 * i for i in range(37))]
    ours = Bins(reference).histograms(rows, probabilities)
    assert set(ours) == set(reference)
    for name, ref in reference.items():
        values = probabilities if name == "__prediction__" else [r.get(name) for r in rows]
        expected = drift.FeatureReference.from_dict(ref).histogram(values).tolist()
        assert ours[name] == expected, name


def test_a_batch_has_the_protocols_aggregate_shape(agent, double):
    rows = request_rows(6, seed=1)
    body = _predict(agent, rows[:2])
    _predict(agent, rows[2:])
    assert agent.upload_once() == "sent"
    (aggregate,) = double.aggregates
    assert aggregate["model_version"] == 5 and aggregate["count"] == 6
    assert aggregate["day"] == time.strftime("%Y-%m-%d")
    assert sum(aggregate["bands"].values()) == 6
    assert aggregate["bands"][body["predictions"][0]["risk_band"]] >= 1
    reference = agent.current().manifest.drift_reference
    for name, ref in reference.items():
        assert sum(aggregate["histograms"][name]) == 6
        assert len(aggregate["histograms"][name]) == len(ref["counts"])
    assert 0 < aggregate["latency_p50_ms"] <= aggregate["latency_p95_ms"]
    assert aggregate["device_profile"] == agent.device_profile()["label"]
    assert aggregate["node"] == "rhs-server-1"
    (key,) = double.telemetry_keys
    assert key.startswith("rhs-server-1:")
    assert agent.queue.pending_rows() == 0


def test_a_lost_answer_and_a_restart_count_every_row_exactly_once(agent, double, tmp_path):
    rows = request_rows(6, seed=2)
    _predict(agent, rows[:2])
    _predict(agent, rows[2:5])
    batch = agent.queue.seal()
    # the server stores the batch but its answer never arrives: the batch stays here
    assert agent.client.post_json("/api/edge/telemetry/", batch.payload).status == 201
    _predict(agent, rows[5:])  # one more request, not sealed yet
    agent.queue.close()  # the agent stops (or is killed) here

    again = Agent(tmp_path / "cache")
    assert again.start_model() is not None
    assert again.queue.pending_rows() == 6
    assert again.upload_once() == "sent"
    assert again.queue.pending_rows() == 0
    assert double.counted() == 6  # 5 from the first batch (once), 1 from the second
    assert len(double.telemetry_keys) == 2
    assert again.upload_once() == "idle" and double.counted() == 6
    again.queue.close()


def test_a_server_error_keeps_the_batch_with_its_key(agent, double):
    _predict(agent, request_rows(3))
    double.telemetry_status = 503
    assert agent.upload_once() == "offline"
    (batch,) = agent.queue.due()
    assert batch.attempts == 1 and "503" in batch.last_error
    double.telemetry_status = None
    assert agent.upload_once() == "sent"
    assert list(double.telemetry_keys) == [batch.key] and double.counted() == 3


def test_an_unreachable_server_keeps_everything(agent, double):
    _predict(agent, request_rows(3))
    double.stop()
    assert agent.upload_once() == "offline"
    assert agent.queue.pending_rows() == 3 and agent.reachable is False


def test_a_refused_batch_is_kept_and_later_batches_still_go(agent, double, caplog):
    _predict(agent, request_rows(2))
    double.telemetry_status = 400
    assert agent.upload_once() == "sent"
    assert "refused by the server (HTTP 400: forced 400)" in caplog.text
    assert agent.queue.due() == []  # not before ten minutes
    assert agent.queue.pending_rows() == 2
    double.telemetry_status = None
    _predict(agent, request_rows(3, seed=4))
    assert agent.upload_once() == "sent"
    assert double.counted() == 3 and agent.queue.pending_rows() == 2
    (kept,) = agent.queue.due(now=time.time() + 601)
    assert kept.rows == 2 and "400" in kept.last_error


def test_409_means_the_server_has_the_batch(agent, double):
    _predict(agent, request_rows(2))
    double.telemetry_status = 409
    assert agent.upload_once() == "sent"
    assert agent.queue.pending_rows() == 0


def test_a_queue_opened_with_another_key_is_refused(tmp_path):
    TelemetryQueue(tmp_path / "t.db", telemetry_key(tmp_path), "n").close()
    from cryptography.fernet import Fernet

    with pytest.raises(TelemetryKeyError, match="does not open"):
        TelemetryQueue(tmp_path / "t.db", Fernet.generate_key(), "n")


def test_the_agent_moves_a_queue_it_cannot_open_aside_and_starts_a_new_one(agent, tmp_path):
    _predict(agent, request_rows(2))
    agent.queue.close()
    (tmp_path / "cache" / "telemetry.key").unlink()  # the key is lost
    again = Agent(tmp_path / "cache")
    assert again.queue.pending_rows() == 0
    assert list((tmp_path / "cache").glob("telemetry.db.unreadable-*"))
    again.queue.close()


def test_key_and_queue_are_private_files(agent, tmp_path):
    for name in ("telemetry.key", "telemetry.db", "node.json", "state.json"):
        assert (tmp_path / "cache" / name).stat().st_mode & 0o077 == 0, name
