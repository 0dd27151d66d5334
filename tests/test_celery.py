"""A task round trip through a real broker and a real worker process: Redis, and the embedded
filesystem transport."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, run_manage

SEND_PING = (
    "import django, json, sys; django.setup(); from edumlops.core.tasks import ping; "
    "r = ping.apply_async(args=[sys.argv[1]], queue=sys.argv[2]); "
    "print(json.dumps(r.get(timeout=60)))"
)


def _start_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "edumlops",
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _round_trip(env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    payload = uuid.uuid4().hex
    log = tmp_path / "worker.log"
    worker = _start_worker(env, queue, log)
    try:
        sent = subprocess.run(
            [sys.executable, "-c", SEND_PING, payload, queue],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "edumlops.settings"},
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        _stop(worker)
    worker_log = log.read_text(errors="replace")
    assert sent.returncode == 0, sent.stderr + worker_log
    return payload, sent.stdout + "\n" + worker_log


@pytest.mark.services
def test_a_task_round_trip_on_real_redis_with_a_real_worker(tmp_path, test_database_url):
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        EDUMLOPS_VAR_DIR=str(tmp_path),
    )
    payload, output = _round_trip(env, tmp_path)
    assert f'"echo": "{payload}"' in output
    assert "transport:   redis://" in output
    assert "edumlops.ping" in output and "succeeded" in output


def test_a_task_round_trip_on_the_embedded_transport_with_a_real_worker(tmp_path):
    env = clean_env(EDUMLOPS_VAR_DIR=str(tmp_path))
    run_manage("migrate", "--noinput", "-v0", env=env, check=True)
    payload, output = _round_trip(env, tmp_path)
    assert f'"echo": "{payload}"' in output
    assert "transport:   filesystem://" in output
    assert "edumlops.ping" in output and "succeeded" in output
