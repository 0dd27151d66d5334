"""Fault tests of the edge: the district server (gunicorn on the test database) and the agent
(`python -m edumlops.edge`) run as real processes on loopback; this process rolls models out and
back through the deployment services and reads what the server recorded."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from edumlops.ml import drift, onnx_bundle, signing, tracking
from edumlops.ml.manifest import Manifest, ModelInfo
from edumlops.ml.serving_core import linear_terms
from edumlops.registry.models import ModelVersion
from tests.conftest import ROOT, clean_env
from tests.deployments.conftest import rows_for, train_and_log  # noqa: F401  (rows_for: tests)
from tests.faults import free_port, wait_for  # noqa: F401  (wait_for: the edge tests)


def edge_model(
    district: Any,
    *,
    seed: int = 0,
    algorithm: str = "logistic_regression",
    trees: int | None = None,
) -> ModelVersion:
    """A registered model version with a signed bundle whose manifest carries what the export
    block writes: its id, features, thresholds, drift reference and (linear) explanation terms."""
    frame, spec, pipeline, logged = train_and_log(
        district, algorithm, seed, experiment="edge", trees=trees
    )
    reference = {
        name: ref.to_dict()
        for name, ref in drift.build_reference(frame, spec.numeric, spec.categorical).items()
    }
    model = ModelVersion.objects.create(
        district=district,
        name=logged.name,
        version=logged.version,
        run_id=logged.run_id,
        algorithm=algorithm,
        dataset_sha256="0" * 64,
        features=spec.to_dict(),
        validation={"threshold": 0.5},
        drift_reference=reference,
    )
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH))
    manifest = Manifest(
        model=ModelInfo(logged.name, logged.version, algorithm, model.pk),
        numeric=spec.numeric,
        categorical=spec.categorical,
        thresholds={"decision": 0.5},
        drift_reference=reference,
        explain=(
            linear_terms(pipeline, spec.numeric, spec.categorical)
            if algorithm == "logistic_regression"
            else None
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        final = onnx_bundle.write_bundle(
            Path(tmp) / "bundle", onnx_bundle.to_onnx(pipeline, spec), manifest, key
        )
        tracking.log_directory(logged.run_id, Path(tmp) / "bundle", "bundle")
    model.bundle = {"artifact_path": "bundle", "manifest": final}
    model.save(update_fields=["bundle"])
    return model


def request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


class Server:
    """The district server: gunicorn on the test database, stopped and started like an
    operator would (the same port each time)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "edumlops.wsgi",
                "-w",
                "1",
                "--threads",
                "4",
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: request(self.port, "GET", "/healthz")[0] == 200, 60, "the server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Agent:
    """`python -m edumlops.edge run` on a cache folder; started, stopped and killed."""

    def __init__(self, cache: Path, log: Path, env: dict[str, str]) -> None:
        self.cache = cache
        self.log = log
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def register(self, server_url: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "edumlops.edge",
                "register",
                "--server",
                server_url,
                "--token",
                token,
                "--cache",
                str(self.cache),
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edumlops.edge",
                "run",
                "--cache",
                str(self.cache),
                "--port",
                str(self.port),
                "--poll",
                "1",
                *extra,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.health() is not None, 60, "the agent to serve")

    def health(self) -> dict[str, Any] | None:
        status, body = request(self.port, "GET", "/healthz", timeout=2)
        return body if status == 200 else None

    def predict(self, rows: list[dict]) -> tuple[int, Any]:
        return request(self.port, "POST", "/predict", {"rows": rows})

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def var_dir(transactional_db, ml_stores, settings) -> Path:
    """This process and the server share one var folder: MLflow store, signing key, bundles."""
    settings.VAR_DIR = ml_stores
    return ml_stores


@pytest.fixture
def server(var_dir, test_database_url, tmp_path):
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        EDUMLOPS_VAR_DIR=str(var_dir),
        EDUMLOPS_EDGE_POLL_SECONDS="1",
        DEBUG="false",
    )
    s = Server(env, tmp_path / "server.log")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def make_agent(tmp_path):
    agents: list[Agent] = []

    def make(name: str = "agent") -> Agent:
        env = clean_env()
        agent = Agent(tmp_path / f"{name}-cache", tmp_path / f"{name}.log", env)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()
