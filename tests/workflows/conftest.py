"""Real Redis, a real Celery worker process on the test database, and helpers to watch runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.conftest import clean_env
from tests.faults import WorkerGroup
from workflows.models import Workflow


class Worker(WorkerGroup):
    """A `celery worker` (threads, 4 by default) in its own process group; start/stop/kill it
    like an operator would."""

    def __init__(
        self, env: dict[str, str], log: Path, *, pool: str = "threads", concurrency: int = 4
    ) -> None:
        super().__init__(env, log, concurrency=concurrency, pool=pool)


@pytest.fixture
def broker_url() -> str:
    url = os.environ["REDIS_URL"]
    redis.Redis.from_url(url).flushdb()  # no message of an earlier test reaches this worker
    return url


def worker_env(test_database_url: str, broker_url: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL=broker_url,
        EDUMLOPS_VAR_DIR=str(tmp_path),
        CELERY_VISIBILITY_TIMEOUT="4",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )


@pytest.fixture
def worker(transactional_db, test_database_url, broker_url, tmp_path):
    w = Worker(worker_env(test_database_url, broker_url, tmp_path), tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def node(id, kind, **params):
    return {"id": id, "kind": kind, "version": 1, "params": params}


def edge(source, source_port, target, target_port="input"):
    return {
        "source": source,
        "source_port": source_port,
        "target": target,
        "target_port": target_port,
    }


@pytest.fixture
def make_workflow(district, platform_admin):
    def make(graph: dict, name: str = "Test workflow") -> Workflow:
        from workflows.compiler import validate

        assert validate(graph) == []
        workflow = Workflow.objects.create(district=district, name=name, owner=platform_admin)
        workflow.save_version(graph, "first", platform_admin)
        return workflow

    return make
