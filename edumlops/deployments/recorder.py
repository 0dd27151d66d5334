"""Every accepted prediction is recorded, off the request path: the predict API hands its rows
to this process's buffer and answers; a background thread writes the buffer in batches (one
PostgreSQL `COPY`, or one multi-row insert elsewhere) every PREDICTION_FLUSH_SECONDS.

What can be lost, and when (docs/serving.md):

- A graceful stop (SIGTERM to gunicorn or `make run`, Ctrl-C, a normal exit) loses nothing: the
  buffer is written at exit (atexit; gunicorn's workers exit through it).
- A hard crash of a serving process (SIGKILL, out of memory, power loss) loses the predictions
  it buffered and had not yet written: at most those of its last PREDICTION_FLUSH_SECONDS
  (0.5 s by default) plus one write in progress, and never more than PREDICTION_BUFFER_ROWS
  rows (10,000). A request that finds the buffer full writes it itself before answering.
- The database refusing a batch (it is down, or a row is no longer valid): the batch stays in
  the buffer and is tried again, row by row when the batch as a whole fails; a row the database
  refuses on its own is logged and dropped.

Each row keeps the time it was answered (`created_at`), not the time it was written, so the
monitors count the same rows in the same windows as when every request wrote its own rows; they
only see them up to PREDICTION_FLUSH_SECONDS later. PREDICTION_FLUSH_SECONDS = 0 writes in the
request itself (the tests that read rows back in the same transaction use that).
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, transaction

log = logging.getLogger(__name__)

COLUMNS = (
    "school_id",
    "deployment_id",
    "model_version_id",
    "features",
    "probability",
    "band",
    "latency_ms",
    "unseen_categories",
    "created_at",
)
BATCH = 2_000  # rows that wake the writer before its timer (short writes, short GIL holds)
TOUCH_EVERY = dt.timedelta(minutes=1)  # an integration token's last use, at most once a minute


@dataclass(slots=True)
class Pending:
    """One answered row, as it will be stored (deployments.Prediction)."""

    school_id: int
    deployment_id: int
    model_version_id: int
    features: dict[str, Any]
    probability: float
    band: str
    latency_ms: float
    unseen_categories: list[str]
    created_at: dt.datetime


def flush_seconds() -> float:
    return float(getattr(settings, "PREDICTION_FLUSH_SECONDS", 0.5))


def buffer_rows() -> int:
    return int(getattr(settings, "PREDICTION_BUFFER_ROWS", 10_000))


def write(rows: list[Pending]) -> None:
    """Store `rows` in one statement (a COPY on PostgreSQL), in one transaction."""
    if not rows:
        return
    table = "deployments_prediction"
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = ", ".join(COLUMNS)
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                copy.write(_copy_text(rows))
            return
        adapt = connection.ops.adapt_datetimefield_value
        marks = ", ".join(["%s"] * len(COLUMNS))
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({marks})",
            [
                (
                    r.school_id,
                    r.deployment_id,
                    r.model_version_id,
                    orjson.dumps(r.features).decode(),
                    r.probability,
                    r.band,
                    r.latency_ms,
                    orjson.dumps(r.unseen_categories).decode(),
                    adapt(r.created_at),
                )
                for r in rows
            ],
        )


def _copy_text(rows: list[Pending]) -> str:
    """The rows in COPY's text format: tab-separated, one line each. Only the JSON columns can
    hold a backslash (orjson escapes every control character), which COPY wants doubled."""
    lines = []
    for r in rows:
        features = orjson.dumps(r.features).decode().replace("\\", "\\\\")
        unseen = (
            orjson.dumps(r.unseen_categories).decode().replace("\\", "\\\\")
            if r.unseen_categories
            else "[]"
        )
        lines.append(
            f"{r.school_id}\t{r.deployment_id}\t{r.model_version_id}\t{features}\t"
            f"{r.probability!r}\t{r.band}\t{r.latency_ms!r}\t{unseen}\t"
            f"{r.created_at.isoformat()}\n"
        )
    return "".join(lines)


def _touch(uses: dict[int, dt.datetime]) -> None:
    if not uses:
        return
    with connection.cursor() as cursor:
        for pk, at in uses.items():
            cursor.execute(
                "UPDATE deployments_integrationtoken SET last_used_at = %s "
                "WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                [at, pk, at],
            )


class Recorder:
    """This process's buffer of answered rows and the thread that writes it."""

    def __init__(self) -> None:
        self._rows: list[Pending] = []
        self._uses: dict[int, dt.datetime] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()  # guards the buffer
        self._writing = threading.Lock()  # one writer at a time, in order
        self._wake = threading.Event()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None

    # --- the request side ------------------------------------------------------------------
    def add(self, rows: list[Pending]) -> None:
        """Keep `rows` to be written; with PREDICTION_FLUSH_SECONDS = 0, write them now."""
        if flush_seconds() <= 0:
            write(rows)
            return
        self._start()
        with self._lock:
            self._rows.extend(rows)
            held = len(self._rows)
        if held >= buffer_rows():  # the writer is far behind: this request writes (a bound)
            self.flush()
        elif held >= BATCH:  # a batch is ready: no need to wait for the timer
            self._wake.set()

    def used(self, token_id: int) -> None:
        """An integration token answered a request now (its `last_used_at`, at most once a
        minute per process, written with the next batch)."""
        now = time.monotonic()
        if now - self._touched.get(token_id, -1e9) < TOUCH_EVERY.total_seconds():
            return
        self._touched[token_id] = now
        with self._lock:
            self._uses[token_id] = dt.datetime.now(dt.UTC)
        if flush_seconds() <= 0:
            self.flush()

    def full(self) -> bool:
        """As many rows wait as PREDICTION_BUFFER_ROWS: the database is away or far behind, and
        no more answers should be given that could not be recorded (the fast path steps aside
        to the full one, which needs the database to answer at all)."""
        with self._lock:
            return len(self._rows) >= buffer_rows()

    # --- the writer ---------------------------------------------------------------------------
    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> None:
        """Write everything buffered now (from any thread; writers take turns)."""
        with self._writing:
            with self._lock:
                rows, self._rows = self._rows, []
                uses, self._uses = self._uses, {}
            if not rows and not uses:
                return
            try:
                try:
                    write(rows)
                except DatabaseError:
                    log.warning("recording %d predictions failed; trying row by row", len(rows))
                    self._one_by_one(rows)
                try:
                    _touch(uses)
                except DatabaseError:
                    log.warning("could not note when %d tokens were last used", len(uses))
            finally:
                if threading.current_thread() is self._thread:
                    connection.close()  # hand the connection back between batches

    def _one_by_one(self, rows: list[Pending]) -> None:
        kept: list[Pending] = []
        for i, row in enumerate(rows):
            try:
                write([row])
            except DatabaseError as exc:
                if not _reachable():
                    kept = rows[i:]  # the database is away: keep the rest, try again later
                    break
                log.error("prediction dropped, the database refused it: %s (%s)", exc, row)
        if kept:
            with self._lock:
                self._rows[:0] = kept

    def _start(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked child starts with an empty buffer
                self._rows, self._uses, self._touched = [], {}, {}
                self._writing = threading.Lock()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="prediction-recorder", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(flush_seconds())
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                log.exception("the prediction recorder failed; retrying")
                time.sleep(1)

    def stop(self) -> None:
        """Write what is left (at exit)."""
        if self._pid == os.getpid():
            try:
                self.flush()
            finally:
                connection.close()


def _reachable() -> bool:
    try:
        connection.close()
        connection.ensure_connection()
        return True
    except DatabaseError:
        return False


RECORDER = Recorder()
atexit.register(RECORDER.stop)
