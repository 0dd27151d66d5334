"""The telemetry queue: SQLite (WAL) in the cache folder, every payload encrypted with the node's
Fernet key (telemetry.key), so the file holds no feature name or value in clear.

- Each answered /predict adds one encrypted contribution: its day, model version, device
  profile, the count per risk band, the counts per feature on the drift reference's bins, and the
  per-row latency. Never raw rows.
- `seal` turns the waiting contributions into one batch in one transaction: aggregates per
  (day, model version, device profile) in the protocol's shape, stored encrypted under a new
  idempotency key `<node name>:<uuid4>`, the contributions deleted. A batch keeps its key until
  the server has it, so a batch resent after a lost answer (or a restart) is counted once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.fernet import Fernet, InvalidToken

BANDS = ("low", "medium", "high")
SEAL_LIMIT = 5000  # contributions per batch, so a long offline spell seals in bounded steps
CHECK = b"edumlops-edge telemetry"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contributions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL
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


@dataclass
class Batch:
    id: int
    key: str
    rows: int
    payload: dict[str, Any]
    attempts: int
    last_error: str | None


class TelemetryQueue:
    def __init__(self, path: Path, key: bytes, node_name: str) -> None:
        self.path = Path(path)
        self.node_name = node_name
        self.fernet = Fernet(key)
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
        histograms: dict[str, list[int]],
        latency_ms: float,
    ) -> None:
        """One answered request: the band of each row, the bin counts, the per-row latency."""
        counts = {b: 0 for b in BANDS}
        for band in bands:
            counts[band] = counts.get(band, 0) + 1
        data = {
            "day": day,
            "model_version": int(model_version),
            "device_profile": device_profile,
            "rows": len(bands),
            "bands": counts,
            "histograms": histograms,
            "latency_ms": float(latency_ms),
        }
        blob = self._seal_json(data)
        with self._lock:
            self.conn.execute(
                "INSERT INTO contributions (rows, data) VALUES (?, ?)", (len(bands), blob)
            )

    def seal(self, limit: int = SEAL_LIMIT) -> Batch | None:
        """Aggregate up to `limit` waiting contributions into one new batch (one transaction)."""
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
        """Predicted rows the server has not acknowledged yet."""
        with self._lock:
            a = self.conn.execute("SELECT COALESCE(SUM(rows), 0) FROM contributions").fetchone()
            b = self.conn.execute("SELECT COALESCE(SUM(rows), 0) FROM batches").fetchone()
        return int(a[0]) + int(b[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            c = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM contributions"
            ).fetchone()
            b = self.conn.execute("SELECT COUNT(*), COALESCE(SUM(rows), 0) FROM batches").fetchone()
        return {
            "requests": int(c[0]),
            "request_rows": int(c[1]),
            "batches": int(b[0]),
            "batch_rows": int(b[1]),
        }


def aggregate(contributions: list[dict[str, Any]], node_name: str) -> list[dict[str, Any]]:
    """Contributions → aggregates, one per (day, model version, device profile)."""
    groups: dict[tuple[str, int, str], dict[str, Any]] = {}
    for c in contributions:
        key = (c["day"], int(c["model_version"]), c.get("device_profile", ""))
        group = groups.setdefault(
            key, {"count": 0, "bands": {b: 0 for b in BANDS}, "histograms": {}, "latency": []}
        )
        group["count"] += c["rows"]
        for band, n in c["bands"].items():
            group["bands"][band] = group["bands"].get(band, 0) + n
        for name, counts in c["histograms"].items():
            total = group["histograms"].setdefault(name, [0] * len(counts))
            if len(total) == len(counts):  # one model version has one binning
                group["histograms"][name] = [a + b for a, b in zip(total, counts, strict=True)]
        group["latency"].append((c["latency_ms"], c["rows"]))
    out = []
    for (day, version, profile), group in sorted(groups.items()):
        values = np.repeat(
            [ms for ms, _ in group["latency"]], [n for _, n in group["latency"]]
        ).astype(float)
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
