"""Real processes for fault-injection tests: a private Redis, Celery worker groups, beat, the web
server, and a way to cut every database connection. No mocks: a test starts these, breaks one
(SIGKILL, SHUTDOWN NOSAVE, pg_terminate_backend) and checks what the others do next.

Registered as a plugin in tests/conftest.py, so any test can use `own_redis` and `fault_env`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.conftest import ROOT, clean_env

REDIS_SERVER = "/usr/bin/redis-server"


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml lists it: --strict-markers rejects an unregistered marker.
    config.addinivalue_line(
        "markers",
        "slow: fault-injection tests that take minutes; skip locally with -m 'not slow', "
        "never in CI",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        # refused/reset while a process comes up, or half an answer (HTTP, JSON) meanwhile
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or predicate} (last: {last!r})")


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies. Its own session keeps it
    out of reach of a Ctrl-C or a killed pytest otherwise; gunicorn workers and prefork children
    follow their leader out."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_running: set[_Process] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A test that failed between start() and its teardown leaves no process behind."""
    for process in list(_running):
        process.kill()


class _Process:
    """A subprocess in its own session: stop/kill reach the whole process group (prefork children,
    gunicorn workers), not just the leader. Start it from the main thread (PR_SET_PDEATHSIG follows
    the thread that forked)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _running.add(self)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.proc.pid, sig)

    def _wait_group_gone(self, timeout: float = 10) -> None:
        """Until no process of the group is left (orphaned children are reaped by init)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the group like an operator would; SIGKILL it if the leader outlives timeout."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)  # children that outlived their leader
        self.proc.wait()
        self._wait_group_gone()
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, an OOM kill); back when all of it is gone."""
        assert self.proc is not None
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._wait_group_gone()
        _running.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def output_since_start(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def _wait_for_log(self, needle: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output_since_start():
                return
            if not self.running():
                raise AssertionError(f"{what} exited before it was ready:\n{self.output()}")
            time.sleep(0.2)
        raise AssertionError(f"{what} not ready after {timeout} s:\n{self.output()}")


class RedisServer(_Process):
    """A private redis-server: no RDB, no AOF, so SHUTDOWN NOSAVE loses every key and message."""

    def __init__(self, port: int, dir: Path) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        super().__init__(clean_env(), dir / "redis.log")
        self.port = port
        self.dir = dir

    def command(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        def pong() -> bool:
            if not self.running():
                raise AssertionError(f"redis-server exited:\n{self.output()}")
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                return False

        wait_for(pong, timeout, f"redis-server on port {self.port}")

    def shutdown_nosave(self, timeout: float = 30) -> None:
        """SHUTDOWN NOSAVE over the protocol, then wait for the process to be gone."""
        assert self.proc is not None
        # The server may drop the socket before redis-py reads an answer.
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(nosave=True)
        self.proc.wait(timeout=timeout)
        _running.discard(self)


class WorkerGroup(_Process):
    """`celery worker` with its pool children in one process group."""

    def __init__(
        self, env: dict[str, str], log: Path, concurrency: int = 2, pool: str = "prefork"
    ) -> None:
        super().__init__(env, log)
        self.concurrency = concurrency
        self.pool = pool

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "edumlops",
            "worker",
            "-P",
            self.pool,
            "-c",
            str(self.concurrency),
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ]

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait_for_log("ready.", timeout, "the celery worker")


class Beat(_Process):
    """`celery beat` with the DatabaseScheduler of settings (so it needs the database); the
    --schedule file sits next to the log and only matters for the default file scheduler."""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "edumlops",
            "beat",
            "-l",
            "info",
            "--schedule",
            str(self.log.parent / "beat-schedule"),
        ]

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait_for_log("beat: Starting", timeout, "celery beat")


class WebServer(_Process):
    """gunicorn on a free port (kept across restarts), one worker with two threads."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self.port = free_port()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "edumlops.wsgi:application",
            "-w",
            "1",
            "--threads",
            "2",
            "-b",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
        ]

    def start(self, wait: bool = True) -> None:
        super().start()
        if wait:
            self.wait_ready()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 5
    ) -> tuple[int, str]:
        """(status, body) of one GET; 4xx/5xx are answers. A refused connection or no answer
        within timeout raises OSError (TimeoutError): with the database down, /healthz takes the
        pool's 10 s timeout to answer 503."""
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until gunicorn answers HTTP at all (any status: the database may be down on purpose,
        and then /healthz answers 503 only after the pool's 10 s timeout)."""

        def answers() -> bool:
            if not self.running():
                raise AssertionError(f"gunicorn exited:\n{self.output()}")
            self.get("/healthz", timeout=15)
            return True

        wait_for(answers, timeout, f"gunicorn on port {self.port}")


def terminate_app_connections(dbname: str) -> int:
    """pg_terminate_backend every session on dbname, like a failover or a PostgreSQL restart.
    Returns how many were terminated.

    This test process's own sessions on dbname die too; its Django pool is closed afterwards so
    that it reconnects (the processes under test are the ones that must cope by themselves).
    """
    from django.db import connection, connections

    s = connection.settings_dict
    with psycopg.connect(
        dbname="postgres",
        user=s["USER"] or None,
        password=s["PASSWORD"] or None,
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        autocommit=True,
    ) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        ).fetchall()
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict["NAME"] == dbname:
            conn.close()
            if hasattr(conn, "close_pool"):
                conn.close_pool()
    return sum(1 for (terminated,) in rows if terminated)


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of this test alone: shut it down, flush it, lose it without side effects."""
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def fault_env(transactional_db, test_database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment for processes on the test database (committed rows only, hence
    transactional_db). No REDIS_URL: add REDIS_URL=own_redis.url() for Redis, or leave it out for
    the embedded transport under tmp_path/celery. Mail lands as files in tmp_path/mail."""
    return clean_env(
        DATABASE_URL=test_database_url,
        EDUMLOPS_VAR_DIR=str(tmp_path),
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(tmp_path / "mail"),
    )
