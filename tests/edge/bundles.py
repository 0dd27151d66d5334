"""Test material for the edge agent, made with the project's own code (no mocks of it):

- `make_bundle`: a real signed bundle — a small pipeline trained on generated rows, exported to
  ONNX, with the drift reference, thresholds and explanation terms the export block writes.
- `request_rows`: rows for /predict in the model's features (NaN → null).
- `DistrictDouble`: a stand-in for the district server's edge endpoints (hello, manifest with
  ETag/304, bundle files with Range, report, idempotent telemetry) on the standard library's
  HTTP server, for unit tests of the transport and the sync logic. The real server is exercised
  end to end by test_faults.py.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edumlops.ml import drift, onnx_bundle, signing
from edumlops.ml.bundle_files import BUNDLE_FILES
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.serving_core import linear_terms
from edumlops.ml.synth import generate_district
from edumlops.ml.training import binary_target, build_pipeline, fit, infer_features, prepare_frame

EXCLUDE = {"at_risk", "student_id", "teacher_note", "ses", "english_learner", "disability", "sex"}
EXCLUDE |= {"term", "term_start", "school_year"}


@functools.cache
def _trained(algorithm: str, seed: int) -> tuple[bytes, dict, dict, dict | None]:
    frame = generate_district(600, seed=seed)
    spec = infer_features(frame, exclude=EXCLUDE)
    X, y = prepare_frame(frame, spec), binary_target(frame["at_risk"], ["yes"])
    pipeline = build_pipeline(spec, algorithm, balanced=True, seed=seed)
    if algorithm == "random_forest":
        pipeline.set_params(model__n_estimators=10)
    pipeline = fit(pipeline, X, y)
    reference = {
        name: ref.to_dict()
        for name, ref in drift.build_reference(frame, spec.numeric, spec.categorical).items()
    }
    import pandas as pd

    reference["__prediction__"] = drift.build_reference(
        pd.DataFrame({"__prediction__": pipeline.predict_proba(X)[:, 1]}), ["__prediction__"], []
    )["__prediction__"].to_dict()
    terms = None
    if algorithm == "logistic_regression":
        terms = linear_terms(pipeline, spec.numeric, spec.categorical)
    return onnx_bundle.to_onnx(pipeline, spec), spec.to_dict(), reference, terms


def make_bundle(
    directory: Path,
    private_key: Any,
    *,
    model_version_id: int = 1,
    name: str = "at-risk",
    version: str = "1",
    algorithm: str = "logistic_regression",
    seed: int = 0,
) -> dict[str, Any]:
    """Write a signed bundle into `directory` (which must not exist); its final manifest."""
    onnx, features, reference, terms = _trained(algorithm, seed)
    manifest = Manifest(
        model=ModelInfo(name, version, algorithm, model_version_id),
        numeric=features["numeric"],
        categorical=features["categorical"],
        thresholds={"decision": 0.5},
        drift_reference=reference,
        explain=terms,
    )
    return onnx_bundle.write_bundle(Path(directory), onnx, manifest, private_key)


def request_rows(n: int = 5, seed: int = 9) -> list[dict[str, Any]]:
    frame = generate_district(max(n, 30), seed=seed).head(n)
    spec = infer_features(generate_district(600, seed=0), exclude=EXCLUDE)
    return [
        {k: (None if v != v else v) for k, v in record.items()}
        for record in frame[spec.columns].to_dict("records")
    ]


def new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


# --- a stand-in district server ----------------------------------------------------------------
class DistrictDouble:
    """The edge endpoints of a district server, enough to drive the agent in unit tests.

    `bundles` maps a model version to its bundle folder; `desired` is (version, deployment) or
    None. Switches: `ignore_range` (answer 200 to a Range request), `cut_after` (close the
    connection after this many bytes of a file), `telemetry_status` (force an answer),
    `revoked` (401 everywhere)."""

    def __init__(self, private_key: Any, token: str = "edge_test") -> None:
        self.key = private_key
        self.token = token
        self.bundles: dict[int, Path] = {}
        self.desired: tuple[int, int | None] | None = None
        self.history: list[int] = []
        self.poll_seconds = 60
        self.ignore_range = False
        self.cut_after: int | None = None
        self.telemetry_status: int | None = None
        self.revoked = False
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.reports: list[dict] = []
        self.telemetry_keys: set[str] = set()
        self.aggregates: list[dict] = []
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DistrictDouble:
        double = self

        class Handler(_Handler):
            server_double = double

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def paths(self, method: str = "") -> list[str]:
        with self.lock:
            return [p for m, p, _ in self.requests if not method or m == method]

    def counted(self) -> int:
        with self.lock:
            return sum(a["count"] for a in self.aggregates)

    def hello(self) -> dict[str, Any]:
        public = self.key.public_key()
        return {
            "protocol": 1,
            "node": {"id": 3, "name": "rhs-server-1"},
            "school": {"id": 7, "code": "rhs", "name": "Riverside High School"},
            "district": {"id": 1, "name": "Riverside Unified"},
            "public_key_pem": signing.public_key_pem(public),
            "signing_key_id": signing.key_id(public),
            "poll_seconds": self.poll_seconds,
            "server_time": "2026-11-27T10:00:00+00:00",
        }

    def manifest(self) -> dict[str, Any]:
        desired = None
        if self.desired is not None:
            version, deployment = self.desired
            folder = self.bundles[version]
            desired = {
                "model_version": version,
                "name": "at-risk",
                "version": str(version),
                "deployment": deployment,
                "scope": "district",
                "files": [
                    {
                        "name": name,
                        "size": (folder / name).stat().st_size,
                        "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
                        "url": f"/api/edge/bundles/{version}/{name}",
                    }
                    for name in BUNDLE_FILES
                ],
            }
        body = {"school": 7, "desired": desired, "history": self.history}
        etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        etag += '"'
        return {"etag": etag, **body, "poll_seconds": self.poll_seconds}


class _Handler(BaseHTTPRequestHandler):
    server_double: DistrictDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        d = self.server_double
        with d.lock:
            d.requests.append((self.command, self.path, dict(self.headers)))
        if d.revoked or self.headers.get("Authorization") != f"Bearer {d.token}":
            self._json(401, {"detail": "Invalid or revoked node token."})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        d = self.server_double
        if not self._authorised():
            return
        if self.path == "/api/edge/hello/":
            self._json(200, d.hello())
        elif self.path == "/api/edge/manifest/":
            manifest = d.manifest()
            if self.headers.get("If-None-Match") == manifest["etag"]:
                self.send_response(304)
                self.send_header("ETag", manifest["etag"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(200, manifest, {"ETag": manifest["etag"]})
        elif match := re.fullmatch(r"/api/edge/bundles/(\d+)/([\w.]+)", self.path):
            self._file(int(match.group(1)), match.group(2))
        else:
            self._json(404, {"detail": "Not found."})

    def _file(self, version: int, name: str) -> None:
        d = self.server_double
        folder = d.bundles.get(version)
        if folder is None or name not in BUNDLE_FILES:
            self._json(404, {"detail": "No such bundle file."})
            return
        data = (folder / name).read_bytes()
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if ranged and not d.ignore_range:
            start = int(ranged.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if d.cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if d.cut_after is not None:
            self.wfile.write(body[: d.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        d = self.server_double
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if not self._authorised():
            return
        if self.path == "/api/edge/report/":
            with d.lock:
                d.reports.append(body)
            self._json(200, {"ok": True, "desired_version": d.desired and d.desired[0]})
        elif self.path == "/api/edge/telemetry/":
            if d.telemetry_status is not None:
                self._json(d.telemetry_status, {"detail": f"forced {d.telemetry_status}"})
                return
            with d.lock:
                if body["idempotency_key"] in d.telemetry_keys:
                    self._json(200, {"added": 0, "duplicate": True})
                    return
                d.telemetry_keys.add(body["idempotency_key"])
                d.aggregates.extend(body["aggregates"])
            self._json(201, {"added": len(body["aggregates"]), "duplicate": False})
        else:
            self._json(404, {"detail": "Not found."})


def register(cache: Path, double: DistrictDouble) -> Path:
    """Write node.json as `edumlops-edge register` would, from the double's hello."""
    from edumlops.edge.config import NodeConfig

    NodeConfig.from_hello(double.url, double.token, double.hello()).save(cache)
    return cache
