"""The telemetry queue: SQLite (WAL) in the cache folder, every payload encrypted with the node's
Fernet key (telemetry.key), so the file holds no feature name or value in clear.

- Each answered /predict adds to counts in memory, per (day, model version, device profile):
  the count per risk band, the counts per feature on the drift reference's bins, and the
  request's per-row latency with its number of rows. Nothing is encrypted or written on the
  request path, and no row is kept, in memory or on disk.
- `flush` writes those counts as one encrypted contribution per (day, model version, device
  profile), all in one transaction: the agent's flush thread calls it FLUSH_SECONDS (config;
  `run --flush-seconds`) after the first request that waits, and `seal` and `close` first.
- `seal` turns the waiting contributions into one batch in one transaction: aggregates per
  (day, model version, device profile) in the protocol's shape, stored encrypted under a new
  idempotency key `<node name>:<uuid4>`, the contributions deleted. A batch keeps its key until
  the server has it, so a batch resent after a lost answer (or a restart) is counted once.

What a crash can lose. A graceful stop (SIGTERM, Ctrl-C) loses nothing: the agent finishes the
requests in flight, then flushes and closes the queue. A hard crash (SIGKILL, the OOM killer, a
power cut) loses the rows recorded since the last flush began — those of the requests answered
in about the last FLUSH_SECONDS (0.1 s by default) — and never more than MAX_UNSAVED_ROWS (5,000)
rows plus those of the requests being answered at that instant: a request that finds that many
waiting writes them itself before it answers. What was flushed stays, and is sent exactly once.
A power cut can also undo the last transactions SQLite committed (WAL, synchronous=NORMAL), as
before. /healthz says how many rows are unsaved (`unsaved_telemetry`).
Tests: tests/edge/test_telemetry_durability.py.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.fernet import Fernet, InvalidToken

BANDS = ("low", "medium", "high")
SEAL_LIMIT = 5000  # contributions per batch, so a long offline spell seals in bounded steps
MAX_UNSAVED_ROWS = 5000  # a request that finds this many rows unsaved writes them before answering
CHECK = b"edumlops-edge telemetry"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contributions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
"""


class TelemetryKeyError(Exception):
    """telemetry.key does not open telemetry.db (the key was replaced or the file swapped)."""


AddCounts = Callable[[dict[str, list[int]]], None]  # adds a request's bin counts to totals


@dataclass
class _Unsaved:
    """The requests recorded for one (day, model version, device profile), not yet written:
    counts only (no row is kept)."""

    rows: int = 0
    requests: int = 0
    bands: dict[str, int] = field(default_factory=lambda: {b: 0 for b in BANDS})
    histograms: dict[str, list[int]] = field(default_factory=dict)
    # per request: its latency per row (ms), then its number of rows
    latencies: array[float] = field(default_factory=lambda: array("d"))

    def add(self, other: _Unsaved) -> None:
        self.rows += other.rows
        self.requests += other.requests
        for band, n in other.bands.items():
            self.bands[band] = self.bands.get(band, 0) + n
        for name, counts in other.histograms.items():
            total = self.histograms.setdefault(name, [0] * len(counts))
            if len(total) == len(counts):
                self.histograms[name] = [a + b for a, b in zip(total, counts, strict=True)]
        self.latencies.extend(other.latencies)


@dataclass
class Batch:
    id: int
    key: str
    rows: int
    payload: dict[str, Any]
    attempts: int
    last_error: str | None


class TelemetryQueue:
    def __init__(
        self,
        path: Path,
        key: bytes,
        node_name: str,
        *,
        max_unsaved_rows: int = MAX_UNSAVED_ROWS,
    ) -> None:
        self.path = Path(path)
        self.node_name = node_name
        self.fernet = Fernet(key)
        self.max_unsaved_rows = max_unsaved_rows
        self._unsaved: dict[tuple[str, int, str], _Unsaved] = {}
        self._unsaved_rows = 0
        self._unsaved_lock = threading.Lock()
        self.waiting = threading.Event()  # set when the first unsaved request is recorded
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(contributions)")}
            if "requests" not in columns:  # a queue from before requests were counted apart
                self.conn.execute(
                    "ALTER TABLE contributions ADD COLUMN requests INTEGER NOT NULL DEFAULT 1"
                )
            row = self.conn.execute("SELECT value FROM meta WHERE name = 'check'").fetchone()
            if row is None:
                self.conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('check', ?)",
                    (self.fernet.encrypt(CHECK),),
                )
            else:
                try:
                    ok = self.fernet.decrypt(row[0]) == CHECK
                except InvalidToken:
                    ok = False
                if not ok:
                    self.conn.close()
                    raise TelemetryKeyError(
                        f"telemetry.key does not open {self.path}: restore the key that was "
                        "beside it, or move the file away to start a new queue."
                    )

    def close(self) -> None:
        """Write what waits, then close."""
        self.flush()
        with self._lock:
            self.conn.close()

    def _seal_json(self, data: Any) -> bytes:
        return self.fernet.encrypt(json.dumps(data, separators=(",", ":")).encode())

    def _open_json(self, blob: bytes) -> Any:
        return json.loads(self.fernet.decrypt(blob))

    # --- writing -------------------------------------------------------------------------------
    def record(
        self,
        *,
        day: str,
        model_version: int,
        device_profile: str,
        bands: list[str],
        count: AddCounts,
        latency_ms: float,
    ) -> None:
        """One answered request, added to the counts in memory until the next flush: the band
        of each row, the counts on the model's drift bins (`count` adds them to the totals it
        is given), the per-row latency."""
        group = (day, int(model_version), device_profile)
        with self._unsaved_lock:
            if not self._unsaved:
                self.waiting.set()  # the first request since the last flush took what waited
            unsaved = self._unsaved.get(group)
            if unsaved is None:
                unsaved = self._unsaved[group] = _Unsaved()
            count(unsaved.histograms)
            for band in bands:
                unsaved.bands[band] = unsaved.bands.get(band, 0) + 1
            unsaved.rows += len(bands)
            unsaved.requests += 1
            unsaved.latencies.append(float(latency_ms))
            unsaved.latencies.append(len(bands))
            self._unsaved_rows += len(bands)
            full = self._unsaved_rows >= self.max_unsaved_rows
        if full:
            self.flush()

    def unsaved_rows(self) -> int:
        """Rows recorded in memory and not written yet (what a hard crash would lose now)."""
        with self._unsaved_lock:
            return self._unsaved_rows

    def flush(self) -> int:
        """Write every unsaved request, one contribution per (day, model version, device
        profile), in one transaction. Returns the rows written."""
        with self._lock:
            with self._unsaved_lock:
                unsaved, self._unsaved = self._unsaved, {}
                self.waiting.clear()
            if not unsaved:
                return 0
            try:
                records = [
                    (u.rows, u.requests, self._seal_json(_contribution(group, u)))
                    for group, u in unsaved.items()
                ]
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    self.conn.executemany(
                        "INSERT INTO contributions (rows, requests, data) VALUES (?, ?, ?)",
                        records,
                    )
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
            except BaseException:
                self._restore(unsaved)  # kept for the next flush (a full disk, say)
                raise
            written = sum(n for n, _, _ in records)
            with self._unsaved_lock:
                self._unsaved_rows -= written
        return written

    def _restore(self, unsaved: dict[tuple[str, int, str], _Unsaved]) -> None:
        with self._unsaved_lock:
            for group, old in unsaved.items():
                new = self._unsaved.get(group)
                if new is not None:
                    old.add(new)
                self._unsaved[group] = old
            self.waiting.set()

    def seal(self, limit: int = SEAL_LIMIT) -> Batch | None:
        """Aggregate up to `limit` waiting contributions into one new batch (one transaction);
        what is unsaved is written first."""
        self.flush()
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self.conn.execute(
                    "SELECT id, rows, data FROM contributions ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
                if not rows:
                    self.conn.execute("ROLLBACK")
                    return None
                aggregates = aggregate(
                    [self._open_json(data) for _, _, data in rows], self.node_name
                )
                key = f"{self.node_name}:{uuid.uuid4()}"
                payload = {"idempotency_key": key, "aggregates": aggregates}
                count = sum(n for _, n, _ in rows)
                cursor = self.conn.execute(
                    "INSERT INTO batches (key, rows, data, created) VALUES (?, ?, ?, ?)",
                    (key, count, self._seal_json(payload), time.time()),
                )
                self.conn.execute("DELETE FROM contributions WHERE id <= ?", (rows[-1][0],))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return Batch(int(cursor.lastrowid or 0), key, count, payload, 0, None)

    def seal_all(self) -> int:
        made = 0
        while self.seal() is not None:
            made += 1
        return made

    # --- sending -------------------------------------------------------------------------------
    def due(self, now: float | None = None) -> list[Batch]:
        """Unsent batches whose time has come, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, key, rows, data, attempts, last_error FROM batches "
                "WHERE not_before <= ? ORDER BY id",
                (now,),
            ).fetchall()
        return [Batch(i, k, n, self._open_json(d), a, e) for i, k, n, d, a, e in rows]

    def sent(self, batch_id: int) -> None:
        """The server has this batch (added now, or a duplicate of one it had)."""
        with self._lock:
            self.conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    def failed(self, batch_id: int, error: str, retry_at: float = 0.0) -> None:
        """Keep the batch (and its key); try it again from `retry_at`."""
        with self._lock:
            self.conn.execute(
                "UPDATE batches SET attempts = attempts + 1, last_error = ?, not_before = ? "
                "WHERE id = ?",
                (error[:500], retry_at, batch_id),
            )

    # --- counting ------------------------------------------------------------------------------
    def pending_rows(self) -> int:
        """Predicted rows the server has not acknowledged yet (unsaved ones included)."""
        with self._lock:  # a flush holds it from taking the unsaved rows to writing them
            a = self.conn.execute("SELECT COALESCE(SUM(rows), 0) FROM contributions").fetchone()
            b = self.conn.execute("SELECT COALESCE(SUM(rows), 0) FROM batches").fetchone()
            return int(a[0]) + int(b[0]) + self.unsaved_rows()

    def counts(self) -> dict[str, int]:
        """What is on disk: requests and rows written and not sealed yet, batches not sent."""
        with self._lock:
            c = self.conn.execute(
                "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(rows), 0) FROM contributions"
            ).fetchone()
            b = self.conn.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM batches").fetchone()
        return {
            "requests": int(c[0]),
            "request_rows": int(c[1]),
            "batches": int(b[0]),
            "batch_rows": int(b[1]),
        }


def _contribution(group: tuple[str, int, str], unsaved: _Unsaved) -> dict[str, Any]:
    day, version, profile = group
    return {
        "day": day,
        "model_version": version,
        "device_profile": profile,
        "rows": unsaved.rows,
        "bands": unsaved.bands,
        "histograms": unsaved.histograms,
        "latencies": _pack(unsaved.latencies),
    }


def _pack(values: array[float]) -> str:
    """Float64 values as base64 of their little-endian bytes: exact, and a fraction of the cost
    of writing each float out in JSON."""
    if sys.byteorder != "little":
        values = array("d", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def aggregate(contributions: list[dict[str, Any]], node_name: str) -> list[dict[str, Any]]:
    """Contributions → aggregates, one per (day, model version, device profile)."""
    groups: dict[tuple[str, int, str], dict[str, Any]] = {}
    for c in contributions:
        key = (c["day"], int(c["model_version"]), c.get("device_profile", ""))
        group = groups.setdefault(
            key,
            {"count": 0, "bands": {b: 0 for b in BANDS}, "histograms": {}, "ms": [], "rows": []},
        )
        group["count"] += c["rows"]
        for band, n in c["bands"].items():
            group["bands"][band] = group["bands"].get(band, 0) + n
        for name, counts in c["histograms"].items():
            total = group["histograms"].setdefault(name, [0] * len(counts))
            if len(total) == len(counts):  # one model version has one binning
                group["histograms"][name] = [a + b for a, b in zip(total, counts, strict=True)]
        if "latencies" in c:  # per-row ms and rows of each request, packed
            pairs = _unpack(c["latencies"]).reshape(-1, 2)
            group["ms"].append(pairs[:, 0])
            group["rows"].append(pairs[:, 1].astype(np.int64))
        else:  # one request (a queue written before requests were batched)
            group["ms"].append(np.array([c["latency_ms"]], dtype=float))
            group["rows"].append(np.array([c["rows"]], dtype=np.int64))
    out = []
    for (day, version, profile), group in sorted(groups.items()):
        values = np.repeat(np.concatenate(group["ms"]), np.concatenate(group["rows"]))
        p50, p95 = np.percentile(values, [50, 95]) if len(values) else (0.0, 0.0)
        out.append(
            {
                "day": day,
                "model_version": version,
                "count": group["count"],
                "bands": group["bands"],
                "histograms": group["histograms"],
                "latency_p50_ms": round(float(p50), 4),
                "latency_p95_ms": round(float(p95), 4),
                "device_profile": profile,
                "node": node_name,
            }
        )
    return out
