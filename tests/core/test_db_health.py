"""After PostgreSQL ends every session (pg_terminate_backend, a failover, a restart), the web
server's pool must not hand out the dead connections: the very next request answers 200."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from edumlops.core.models import UserKey
from tests.faults import WebServer, terminate_app_connections

pytestmark = pytest.mark.services

TERMINATIONS = 5


@pytest.fixture
def web(fault_env, tmp_path):
    server = WebServer(fault_env, tmp_path / "web.log")
    server.start()
    yield server
    server.stop()


def test_healthz_answers_200_right_after_every_termination(web):
    assert web.get("/healthz") == (200, '{"status": "ok"}')
    dbname = connection.settings_dict["NAME"]
    terminated, answers = [], []
    for _ in range(TERMINATIONS):
        terminated.append(terminate_app_connections(dbname))
        answers.append(web.get("/healthz"))
    assert terminated[0] >= 1  # the server's pooled connection at least
    assert answers == [(200, '{"status": "ok"}')] * TERMINATIONS, web.output()


def test_an_api_read_answers_200_right_after_a_termination(web, nobody):
    token = UserKey.issue(nobody, "db health")[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert web.get("/api/me/", headers)[0] == 200
    dbname = connection.settings_dict["NAME"]
    for _ in range(3):
        terminate_app_connections(dbname)
        status, body = web.get("/api/me/", headers)
        assert status == 200, (body, web.output())
        assert json.loads(body) == {"username": "nobody", "memberships": []}
