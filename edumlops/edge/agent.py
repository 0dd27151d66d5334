"""The agent: the model it serves, and three loops around it.

- sync: every poll, a conditional GET of the manifest; the desired version is activated from the
  cache when it is there (a rollback costs no download), else downloaded, checked, verified and
  then activated. A bundle that fails is rejected (an event says why) and the current model
  keeps serving; it is not fetched again until the manifest changes or ten minutes pass.
- report: a heartbeat with the device profile, the queue's size and the events not yet
  delivered (each kept until a report carrying it succeeds).
- upload: seals the telemetry queue into batches and sends them, backing off exponentially
  while the server is away.
- flush: writes the telemetry a request recorded in memory, `flush_seconds` after it, together
  with the requests of that moment (what a crash can lose: edumlops.edge.telemetry).

The model in use is swapped under a lock; a request holds the model it started with, so it
finishes on it. Serving is local: nothing on the request path waits for the server or the disk.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import platform
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edumlops.edge import __version__
from edumlops.edge.client import Client, ClientError, Interrupted, Unreachable
from edumlops.edge.config import (
    FLUSH_SECONDS,
    MAX_EVENTS,
    ConfigError,
    NodeConfig,
    StateFile,
    now_iso,
    telemetry_key,
)
from edumlops.edge.models import ActiveModel, LoadError, load
from edumlops.edge.store import KEEP, BundleStore
from edumlops.edge.telemetry import TelemetryKeyError, TelemetryQueue
from edumlops.ml.bundle_files import BundleError
from edumlops.ml.serving_core import RequestError, parse_rows, predict
from edumlops.ml.signing import SignatureError, load_public_key

log = logging.getLogger("edumlops.edge")

MANIFEST = "/api/edge/manifest/"
REPORT = "/api/edge/report/"
TELEMETRY = "/api/edge/telemetry/"
RETRY_REJECTED = 600.0  # seconds before a rejected version is fetched again (same manifest)
REFUSED_BATCH_RETRY = 600.0  # a batch the server refused (4xx) is tried again after this
BACKOFF_MAX = 300.0
MAX_REJECTED = 50  # refusals remembered


def backoff(failures: int) -> float:
    """1 s, 2 s, 4 s … up to 5 min, each between half and all of it (jitter)."""
    base = min(BACKOFF_MAX, 2.0 ** max(0, failures - 1))
    return base * (0.5 + random.random() / 2)


class Agent:
    def __init__(
        self,
        cache: Path,
        *,
        poll_seconds: float | None = None,
        max_kbps: float | None = None,
        timeout: float = 15.0,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.cache = Path(cache)
        self.flush_seconds = flush_seconds
        self.node = NodeConfig.load(self.cache)
        try:
            public_key = load_public_key(self.node.public_key_pem)
        except SignatureError as exc:
            raise ConfigError(f"node.json: the pinned public key cannot be read: {exc}") from None
        self.state_file = StateFile(self.cache)
        self.state = self.state_file.load()
        self.store = BundleStore(self.cache, public_key)
        self.client = Client(self.node.server, self.node.token, timeout=timeout, max_kbps=max_kbps)
        self.queue = self._open_queue()
        self.poll_override = poll_seconds
        self.server_poll: float | None = None
        self.reachable: bool | None = None  # None until the first call
        self.unavailable_reason: str | None = None
        self.degraded: str | None = None
        self._model: ActiveModel | None = None
        self._model_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._stop = threading.Event()
        self._report_wake = threading.Event()
        self._upload_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._said: dict[str, str] = {}  # what was last logged per topic, to log changes only

    def _open_queue(self) -> TelemetryQueue:
        path = self.cache / "telemetry.db"
        key = telemetry_key(self.cache)
        try:
            return TelemetryQueue(path, key, self.node.node_name)
        except TelemetryKeyError as exc:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = path.with_name(f"telemetry.db.unreadable-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    os.replace(source, Path(f"{aside}{suffix}"))
            log.error("%s Moved it to %s and started a new queue.", exc, aside)
            return TelemetryQueue(path, key, self.node.node_name)

    # --- the model -----------------------------------------------------------------------------
    @property
    def poll_seconds(self) -> float:
        return float(self.poll_override or self.server_poll or self.node.poll_seconds)

    def current(self) -> ActiveModel | None:
        with self._model_lock:
            return self._model

    def _install(self, model: ActiveModel) -> None:
        with self._model_lock:
            self._model = model
            self.unavailable_reason = None

    def status(self) -> str:
        if self.current() is None:
            return "unavailable"
        return "degraded" if self.degraded else "ok"

    def start_model(self) -> ActiveModel | None:
        """At start: the active bundle, verified again; if it cannot load, the newest good one
        before it (event "fallback"); if none can, nothing (event "unavailable": /predict 503)."""
        order: list[int] = []
        for v in [self.state.active, *self.state.good, *self.store.cached()]:
            if v is not None and int(v) not in order:
                order.append(int(v))
        problems = []
        for version in order:
            if not self.store.has(version):
                problems.append(f"version {version} is not in the cache")
                continue
            try:
                model = load(self.store, version)
            except BundleError as exc:
                problems.append(f"version {version} no longer verifies ({exc})")
                self.store.remove(version)  # damaged on disk: the next sync fetches it again
                self._forget(version)
                continue
            except LoadError as exc:
                problems.append(f"version {version} cannot load ({exc})")
                self._forget(version)
                continue
            self._install(model)
            with self._state_lock:
                self.state.active = version
                if version not in self.state.good:
                    self.state.good.insert(0, version)
                self.state_file.save(self.state)
            if problems:
                self.degraded = f"serving version {version}: " + "; ".join(problems)
                self.event("fallback", version, self.degraded)
            log.info(
                "loaded %s (version %s, ONNX Runtime p50 %.3f ms, p95 %.3f ms)",
                model.label,
                version,
                model.latency_p50_ms,
                model.latency_p95_ms,
            )
            return model
        if problems:
            self.unavailable_reason = (
                "No model can serve: " + "; ".join(problems) + ". The agent keeps syncing and "
                "serves again once a bundle verifies and loads."
            )
            self.event("unavailable", self.state.active, self.unavailable_reason)
        else:
            self.unavailable_reason = (
                "No model yet: this node has not downloaded one. It does once a model is "
                "deployed for its school and the server can be reached."
            )
        return None

    def _forget(self, version: int) -> None:
        with self._state_lock:
            self.state.good = [v for v in self.state.good if v != version]
            if self.state.active == version:
                self.state.active = None
            self.state_file.save(self.state)

    def _activate(self, model: ActiveModel, detail: str) -> None:
        self._install(model)
        v = model.version
        with self._state_lock:
            good = [v, *(x for x in self.state.good if x != v and self.store.has(x))]
            self.state.good = good[:KEEP]
            self.state.active = v
            self.state.rejected.pop(str(v), None)
            self.state_file.save(self.state)
        self.degraded = None
        removed = self.store.prune(self.state.good)
        self.store.discard_downloads()
        if removed:
            log.info("pruned cached versions %s (keeping %s)", removed, self.state.good)
        self.event("activated", v, f"{model.label}: {detail}")

    # --- events --------------------------------------------------------------------------------
    def event(self, kind: str, version: int | None, detail: str) -> None:
        """Queue an event for the server (kept in state.json until a report delivers it)."""
        item = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "version": version,
            "detail": detail[:2000],
            "at": now_iso(),
        }
        with self._state_lock:
            self.state.events.append(item)
            if len(self.state.events) > MAX_EVENTS:
                dropped = len(self.state.events) - MAX_EVENTS
                log.warning(
                    "%d undelivered events dropped (the oldest): at most %d are kept",
                    dropped,
                    MAX_EVENTS,
                )
                del self.state.events[:dropped]
            self.state_file.save(self.state)
        level = logging.INFO if kind == "activated" else logging.WARNING
        log.log(level, "%s version %s: %s", kind, version, detail)
        self._report_wake.set()

    # --- serving -------------------------------------------------------------------------------
    def predict(self, body: Any) -> tuple[int, dict[str, Any]]:
        """The answer to POST /predict: (status, JSON body)."""
        model = self.current()  # this request finishes on this model, whatever is swapped in
        if model is None:
            return 503, {"detail": self.unavailable_reason or "No model can serve."}
        try:
            rows = parse_rows(body)
            answers, seconds = predict(model.serving, rows)
        except RequestError as exc:
            return 400, {"detail": str(exc), "errors": exc.errors}
        deployment = self.state.deployments.get(str(model.version))
        for answer in answers:
            answer["deployment"] = deployment
        try:
            self._record(model, rows, answers, seconds)
        except Exception:  # a full disk must not stop the answer; it is said loudly
            log.exception("telemetry: could not queue %d predicted rows", len(rows))
        return 200, {"school": self.node.school_id, "predictions": answers}

    def _record(
        self, model: ActiveModel, rows: list[dict], answers: list[dict], seconds: float
    ) -> None:
        self.queue.record(
            day=dt.date.today().isoformat(),
            model_version=model.version,
            device_profile=self.profile_label(),
            bands=[a["risk_band"] for a in answers],
            count=lambda totals: model.bins.add(totals, rows, [a["probability"] for a in answers]),
            latency_ms=1000 * seconds / len(rows),
        )

    def health(self) -> dict[str, Any]:
        model = self.current()
        manifest = self.state.manifest or {}
        desired = manifest.get("desired") or {}
        return {
            "status": self.status(),
            "active_version": model.version if model else None,
            "cached_versions": self.store.cached(),
            "server_reachable": self.reachable,
            "last_sync": self.state.last_sync,
            "pending_telemetry": self.queue.pending_rows(),
            "unsaved_telemetry": self.queue.unsaved_rows(),
            "model": (
                {"name": model.serving.name, "version": model.serving.version} if model else None
            ),
            "desired_version": desired.get("model_version"),
            "detail": self.unavailable_reason if model is None else self.degraded,
        }

    # --- device --------------------------------------------------------------------------------
    def profile_label(self) -> str:
        return device()["label"]

    def device_profile(self) -> dict[str, Any]:
        model = self.current()
        return {
            **device(),
            "latency_p50_ms": model.latency_p50_ms if model else None,
            "latency_p95_ms": model.latency_p95_ms if model else None,
        }

    # --- sync ----------------------------------------------------------------------------------
    def _reached(self, ok: bool, why: str = "") -> None:
        was = self.reachable
        self.reachable = ok
        if ok and was is not True:
            if was is False:
                log.info("the server is reachable again")
            self._upload_wake.set()  # send what waited, now
            self._report_wake.set()
        elif not ok and was is not False:
            log.warning("the server cannot be reached (%s); serving locally", why)

    def _say(self, topic: str, message: str, level: int = logging.WARNING) -> None:
        """Log `message` unless it is what was last said about `topic`."""
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.log(level, "%s", message)

    def sync_once(self) -> bool:
        """One poll of the manifest and what follows. True when the server answered it."""
        etag = self.state.etag if self.state.manifest is not None else None
        try:
            response = self.client.get_json(MANIFEST, etag=etag)
        except Unreachable as exc:
            self._reached(False, str(exc))
            return False
        self._reached(True)
        if response.status == 304:
            manifest = self.state.manifest or {}
        elif response.status == 200:
            try:
                manifest = response.json()
            except ValueError:
                manifest = None
            if not isinstance(manifest, dict):
                self._say("manifest", "the manifest is not a JSON object; ignored")
                return False
            with self._state_lock:
                self.state.manifest = manifest
                self.state.etag = response.headers.get("ETag") or manifest.get("etag")
        else:
            self._say("manifest", _refusal("the manifest", response.status, response.detail()))
            return False
        self._said.pop("manifest", None)
        with self._state_lock:
            self.state.last_sync = self.state.last_contact = now_iso()
            self.state_file.save(self.state)
        if manifest.get("poll_seconds"):
            self.server_poll = max(1.0, float(manifest["poll_seconds"]))
        self.apply(manifest)
        return True

    def apply(self, manifest: dict[str, Any]) -> None:
        """Make the desired version serve: from the cache, else by downloading it."""
        desired = manifest.get("desired")
        if not desired:
            self._say(
                "desired", "nothing is deployed for this school; serving what is here", logging.INFO
            )
            if self.state.deployments:
                with self._state_lock:
                    self.state.deployments = {}  # answers name no deployment now
                    self.state_file.save(self.state)
            return
        self._said.pop("desired", None)
        try:
            version = int(desired["model_version"])
        except (KeyError, TypeError, ValueError):
            self._say("desired", f"the manifest's desired version is unreadable: {desired!r}")
            return
        with self._state_lock:
            if self.state.deployments.get(str(version)) != desired.get("deployment"):
                self.state.deployments[str(version)] = desired.get("deployment")
                self.state_file.save(self.state)
        current = self.current()
        if current is not None and current.version == version:
            self.degraded = None
            return
        if self.store.has(version):
            try:
                model = load(self.store, version)
            except BundleError as exc:
                log.warning(
                    "cached version %s no longer verifies (%s): downloading it again", version, exc
                )
                self.store.remove(version)
                self._forget(version)
            except LoadError as exc:
                self._refuse(version, "load_failed", f"ONNX Runtime cannot load it: {exc}")
                return
            else:
                self._activate(model, "from the cache (no download)")
                return
        if self._recently_rejected(version):
            return
        try:
            fetched = self.store.fetch(self.client, version, desired.get("files"), self._stop)
        except BundleError as exc:
            self._refuse(version, "rejected", str(exc))
            return
        except Interrupted:
            return
        except ClientError as exc:
            self._say(
                "download",
                f"the download of version {version} stopped ({exc}); it resumes at the next sync",
            )
            return
        self._said.pop("download", None)
        try:
            model = load(self.store, version)
        except (BundleError, LoadError) as exc:
            self._refuse(version, "load_failed", f"ONNX Runtime cannot load it: {exc}")
            return
        self._activate(model, fetched.describe())

    def _recently_rejected(self, version: int) -> bool:
        refusal = self.state.rejected.get(str(version))
        if not refusal:
            return False
        same = refusal.get("etag") == self.state.etag
        return same and time.time() - float(refusal.get("ts", 0)) < RETRY_REJECTED

    def _refuse(self, version: int, kind: str, reason: str) -> None:
        """Remember the refusal (not fetched again for a while), drop the files, tell the
        server; the current model keeps serving."""
        self.store.discard_download(version)
        if self.store.has(version):
            self.store.remove(version)
        if version in self.state.good:
            self._forget(version)
        with self._state_lock:
            self.state.rejected[str(version)] = {
                "kind": kind,
                "reason": reason,
                "at": now_iso(),
                "ts": time.time(),
                "etag": self.state.etag,
            }
            for old in list(self.state.rejected)[:-MAX_REJECTED]:
                del self.state.rejected[old]
            self.state_file.save(self.state)
        current = self.current()
        if current is not None:
            self.degraded = f"version {version} was refused: {reason}"
            self.event(kind, version, f"{reason}; version {current.version} keeps serving")
        else:
            self.unavailable_reason = f"No model can serve: version {version} was refused: {reason}"
            self.event(kind, version, reason)

    # --- report --------------------------------------------------------------------------------
    def report_once(self) -> bool:
        with self._state_lock:
            events = list(self.state.events)
        model = self.current()
        payload = {
            "active_version": model.version if model else None,
            "cached_versions": self.store.cached(),
            "agent_version": __version__,
            "device_profile": self.device_profile(),
            "pending_telemetry": self.queue.pending_rows(),
            "serving": self.status(),
            "events": events,
        }
        try:
            response = self.client.post_json(REPORT, payload)
        except Unreachable as exc:
            self._reached(False, str(exc))
            return False
        self._reached(True)
        if not 200 <= response.status < 300:
            self._say("report", _refusal("the report", response.status, response.detail()))
            return False
        self._said.pop("report", None)
        sent = {e["id"] for e in events}
        with self._state_lock:
            self.state.events = [e for e in self.state.events if e["id"] not in sent]
            self.state.last_contact = now_iso()
            self.state_file.save(self.state)
        return True

    # --- telemetry -----------------------------------------------------------------------------
    def upload_once(self) -> str:
        """Seal what waits and send every due batch: "sent", "idle", or "offline"."""
        self.queue.seal_all()
        batches = self.queue.due()
        if not batches:
            return "idle"
        for batch in batches:
            try:
                response = self.client.post_json(TELEMETRY, batch.payload)
            except Unreachable as exc:
                self.queue.failed(batch.id, str(exc))
                self._reached(False, str(exc))
                return "offline"
            self._reached(True)
            status = response.status
            if 200 <= status < 300 or status == 409:  # added, or the server has it already
                self.queue.sent(batch.id)
                log.debug(
                    "telemetry batch %s (%d rows) delivered (HTTP %d)",
                    batch.key,
                    batch.rows,
                    status,
                )
            elif status >= 500 or status == 429:
                self.queue.failed(batch.id, f"HTTP {status}: {response.detail()}")
                return "offline"
            else:  # refused: kept (never dropped silently), tried again later
                detail = response.detail()
                self.queue.failed(
                    batch.id, f"HTTP {status}: {detail}", time.time() + REFUSED_BATCH_RETRY
                )
                log.warning(
                    "telemetry batch %s (%d rows) refused by the server (HTTP %d: %s); kept, "
                    "tried again in %d min",
                    batch.key,
                    batch.rows,
                    status,
                    detail,
                    REFUSED_BATCH_RETRY // 60,
                )
        return "sent"

    # --- the loops -----------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (
            ("sync", self._sync_loop),
            ("report", self._report_loop),
            ("upload", self._upload_loop),
            ("flush", self._flush_loop),
        ):
            thread = threading.Thread(target=target, name=f"edge-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the loops, write the telemetry still in memory, save the state."""
        self._stop.set()
        self._report_wake.set()
        self._upload_wake.set()
        self.queue.waiting.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        with self._state_lock:
            self.state_file.save(self.state)
        try:
            self.queue.flush()
        except Exception:
            log.exception("telemetry: could not write the last predicted rows")
        if alive:
            log.warning("stopping with %s still busy (a call to the server)", ", ".join(alive))
        else:
            self.queue.close()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:
                log.exception("sync failed")
            self._stop.wait(self.poll_seconds)

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            self._report_wake.clear()
            try:
                self.report_once()
            except Exception:
                log.exception("report failed")
            self._report_wake.wait(self.poll_seconds)

    def _flush_loop(self) -> None:
        """Write the recorded telemetry `flush_seconds` after the first request that waits: the
        requests of that moment in one transaction, off the request path."""
        while not self._stop.is_set():  # stop() writes what is left
            if not self.queue.waiting.wait(1.0) or self._stop.is_set():
                continue
            self._stop.wait(self.flush_seconds)
            try:
                self.queue.flush()
            except Exception:  # kept in memory (and bounded): tried again in a while
                log.exception("telemetry: could not write the predicted rows; trying again")
                self._stop.wait(5.0)

    def _upload_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                result = self.upload_once()
            except Exception:
                log.exception("telemetry upload failed")
                result = "offline"
            failures = failures + 1 if result == "offline" else 0
            delay = backoff(failures) if failures else self.poll_seconds
            if self._upload_wake.wait(delay):
                self._upload_wake.clear()
                failures = 0  # the server is back (or we are stopping)


def _refusal(what: str, status: int, detail: str) -> str:
    if status == 401:
        return (
            f"the server refused this node's token for {what} (401: {detail}): it was revoked "
            "or is wrong; register again with a new token. Serving continues locally."
        )
    return f"the server answered {what} with HTTP {status}: {detail}"


def _memory_mb() -> int:
    total = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) // 1024
                    break
    except (OSError, ValueError):
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        except (ValueError, OSError, AttributeError):
            total = 0
    try:  # a container's memory limit, when lower
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total or 1 << 40, int(limit) // (1024 * 1024))
    except OSError:
        pass
    return int(total)


@functools.cache
def device() -> dict[str, Any]:
    """This machine: cores, memory, architecture, OS, ONNX Runtime, and a short label."""
    import onnxruntime

    cores = os.cpu_count() or 1
    memory = _memory_mb()
    machine = platform.machine() or "unknown"
    release = ".".join(platform.release().split(".")[:2])
    return {
        "label": f"{cores}c-{max(1, round(memory / 1024))}g-{machine}",
        "cores": cores,
        "memory_mb": memory,
        "machine": machine,
        "os": f"{platform.system()} {release}".strip(),
        "onnxruntime": onnxruntime.__version__,
    }
