"""What edumlops.edge.telemetry promises about rows recorded in memory, off the request path:
a flush writes them (requests and rows counted as before, latency percentiles over every row);
a request that finds MAX_UNSAVED_ROWS waiting writes them before it answers; a queue written
before this change still opens and seals; and with the agent as a real process, SIGTERM loses
nothing while SIGKILL loses at most what was not written yet — never what was."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edumlops.edge.agent import Agent
from edumlops.edge.config import telemetry_key
from edumlops.edge.telemetry import MAX_UNSAVED_ROWS, TelemetryQueue
from tests.conftest import ROOT
from tests.edge.bundles import DistrictDouble, make_bundle, new_key, register, request_rows
from tests.faults import wait_for


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
def cache(double, tmp_path):
    cache = register(tmp_path / "cache", double)
    seeded = Agent(cache)
    assert seeded.sync_once()  # the bundle is in the cache
    seeded.queue.close()
    return cache


def _on_disk(db: Path) -> int:
    """Rows in the queue's file, read by another connection (what survives this process)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        a = conn.execute("SELECT COALESCE(SUM(rows), 0) FROM contributions").fetchone()[0]
        b = conn.execute("SELECT COALESCE(SUM(rows), 0) FROM batches").fetchone()[0]
    return int(a) + int(b)


def _record(queue: TelemetryQueue, rows: int, latency_ms: float = 1.0) -> None:
    queue.record(
        day="2026-12-03",
        model_version=5,
        device_profile="2c-24g-x86_64",
        bands=["low"] * rows,
        count=lambda totals: totals.setdefault("x", [0, 0]).__setitem__(0, totals["x"][0] + rows),
        latency_ms=latency_ms,
    )


# --- in one process ----------------------------------------------------------------------------
def test_predictions_wait_in_memory_until_a_flush_writes_them(cache):
    agent = Agent(cache)
    agent.start_model()
    for size in (1, 3, 2):
        assert agent.predict({"rows": request_rows(size)})[0] == 200
    assert agent.queue.unsaved_rows() == 6 and _on_disk(cache / "telemetry.db") == 0
    assert agent.queue.pending_rows() == 6  # what /healthz and the report say
    assert agent.queue.flush() == 6
    assert agent.queue.unsaved_rows() == 0 and _on_disk(cache / "telemetry.db") == 6
    assert agent.queue.counts() == {"requests": 3, "request_rows": 6, "batches": 0, "batch_rows": 0}
    assert agent.queue.flush() == 0
    agent.queue.close()


def test_a_request_that_finds_the_cap_reached_writes_before_it_answers(tmp_path):
    queue = TelemetryQueue(tmp_path / "t.db", telemetry_key(tmp_path), "n", max_unsaved_rows=10)
    for _ in range(3):
        _record(queue, 3)
    assert queue.unsaved_rows() == 9 and _on_disk(tmp_path / "t.db") == 0
    _record(queue, 3)  # 12 rows: written by this call
    assert queue.unsaved_rows() == 0 and _on_disk(tmp_path / "t.db") == 12
    queue.close()


def test_latency_percentiles_are_over_every_row_whatever_the_flushes(tmp_path):
    queue = TelemetryQueue(tmp_path / "t.db", telemetry_key(tmp_path), "n")
    requests = [(0.25, 2), (3.0, 1), (0.5, 5), (1.75, 1), (0.3, 4)]
    for i, (ms, rows) in enumerate(requests):
        _record(queue, rows, ms)
        if i in (1, 3):
            queue.flush()
    batch = queue.seal()
    assert batch is not None and queue.seal() is None
    (aggregate,) = batch.payload["aggregates"]
    values = np.repeat([ms for ms, _ in requests], [n for _, n in requests])
    p50, p95 = np.percentile(values, [50, 95])
    assert aggregate["latency_p50_ms"] == round(float(p50), 4)
    assert aggregate["latency_p95_ms"] == round(float(p95), 4)
    assert aggregate["count"] == 13 and aggregate["bands"]["low"] == 13
    assert aggregate["histograms"] == {"x": [13, 0]}
    queue.close()


def test_a_queue_written_before_requests_were_batched_still_opens_and_seals(tmp_path):
    key = telemetry_key(tmp_path)
    TelemetryQueue(tmp_path / "t.db", key, "n").close()  # the check row, as an old agent left it
    with contextlib.closing(sqlite3.connect(tmp_path / "t.db")) as conn:
        conn.execute("DROP TABLE contributions")
        conn.execute(
            "CREATE TABLE contributions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "rows INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        from cryptography.fernet import Fernet

        old = {
            "day": "2026-12-03",
            "model_version": 5,
            "device_profile": "2c-24g-x86_64",
            "rows": 2,
            "bands": {"low": 1, "medium": 0, "high": 1},
            "histograms": {"x": [2, 0]},
            "latency_ms": 0.75,
        }
        blob = Fernet(key).encrypt(json.dumps(old).encode())
        conn.execute("INSERT INTO contributions (rows, data) VALUES (2, ?)", (blob,))
        conn.commit()
    queue = TelemetryQueue(tmp_path / "t.db", key, "n")
    assert queue.counts()["requests"] == 1 and queue.pending_rows() == 2
    _record(queue, 3, latency_ms=2.0)
    (aggregate,) = queue.seal().payload["aggregates"]
    assert aggregate["count"] == 5 and aggregate["histograms"] == {"x": [5, 0]}
    assert aggregate["bands"] == {"low": 4, "medium": 0, "high": 1}
    expected = np.percentile(np.repeat([0.75, 2.0], [2, 3]), [50, 95])
    assert [aggregate["latency_p50_ms"], aggregate["latency_p95_ms"]] == [
        round(float(x), 4) for x in expected
    ]
    queue.close()


# --- the agent as a process --------------------------------------------------------------------
def _start(cache: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edumlops.edge", "run", "--cache", str(cache), "--port", "0",
         "--poll", "0.2", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), line + proc.stderr.read()
    return proc, int(line.split(":")[2].split(" ")[0])


def _call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _predict_many(port: int, requests: int, rows: int = 2) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps({"rows": request_rows(rows)}).encode()
    for _ in range(requests):
        conn.request("POST", "/predict", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()
    return requests * rows


def _pending_after(cache: Path) -> int:
    queue = TelemetryQueue(cache / "telemetry.db", telemetry_key(cache), "n")
    try:
        return queue.pending_rows()
    finally:
        queue.close()


@pytest.mark.parametrize(
    "flags",
    [(), ("--flush-seconds", "600", "--poll", "600")],
    ids=["default", "nothing-written-before-the-stop"],
)
def test_sigterm_loses_no_predicted_row(cache, double, flags):
    proc, port = _start(cache, *flags)
    try:
        # started: synced and reported (an idle upload round may follow, with nothing to send)
        wait_for(lambda: _call(port, "GET", "/healthz")[1]["last_sync"], 30, "the first sync")
        wait_for(lambda: double.reports, 30, "the first report")
        answered = _predict_many(port, 150)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert double.counted() + _pending_after(cache) == answered


def test_sigkill_loses_only_rows_not_yet_written(cache, double):
    double.telemetry_status = 503
    proc, port = _start(cache)
    try:
        written = _predict_many(port, 40)
        wait_for(lambda: _call(port, "GET", "/healthz")[1]["unsaved_telemetry"] == 0, 30, "a flush")
        assert _call(port, "GET", "/healthz")[1]["pending_telemetry"] == written
        later = _predict_many(port, 150)
        proc.send_signal(signal.SIGKILL)  # no flush, no goodbye
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kept = _pending_after(cache)
    assert written <= kept <= written + later  # what was written stays; nothing counts twice
    assert written + later - kept <= MAX_UNSAVED_ROWS


def test_what_was_kept_after_a_sigkill_is_sent_once(cache, double):
    proc, port = _start(cache)
    try:
        answered = _predict_many(port, 20)
        wait_for(lambda: double.counted() == answered, 30, "the telemetry upload")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc, port = _start(cache)  # restarted: nothing is sent again
    try:
        time.sleep(0.6)  # a few upload rounds at --poll 0.2
        assert double.counted() == answered and len(double.telemetry_keys) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
