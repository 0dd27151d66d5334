"""Settings resolve both ways, production passes check --deploy, and bad configuration stops the
process at start with one line naming the variable (each case in a fresh process)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT, clean_env, run_manage

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'name': s.DATABASES['default']['NAME'], 'broker': s.CELERY_BROKER_URL, "
    "'backend': s.CELERY_RESULT_BACKEND, 'mlflow': s.MLFLOW_TRACKING_URI, "
    "'embedded': s.CELERY_EMBEDDED_TRANSPORT, 'debug': s.DEBUG}))"
)


def _settings_in_fresh_process(env: dict[str, str]) -> dict:
    env = {**env, "DJANGO_SETTINGS_MODULE": "edumlops.settings"}
    out = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_default_is_sqlite_the_embedded_transport_and_a_local_mlflow_store(tmp_path):
    resolved = _settings_in_fresh_process(clean_env(EDUMLOPS_VAR_DIR=str(tmp_path)))
    assert resolved["engine"] == "django.db.backends.sqlite3"
    assert resolved["name"] == str(tmp_path / "edumlops.sqlite3")
    assert resolved["broker"] == "filesystem://"
    assert resolved["embedded"] is True
    assert resolved["backend"] == (tmp_path / "celery" / "results").as_uri()
    assert resolved["mlflow"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolved["debug"] is True


def test_database_url_and_redis_url_select_postgresql_and_redis(tmp_path, test_database_url):
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        EDUMLOPS_VAR_DIR=str(tmp_path),
    )
    resolved = _settings_in_fresh_process(env)
    assert resolved["engine"] == "django.db.backends.postgresql"
    assert resolved["broker"] == os.environ["REDIS_URL"]
    assert resolved["backend"] == os.environ["REDIS_URL"]
    assert resolved["embedded"] is False
    preflight = run_manage("preflight", env=env)
    assert preflight.returncode == 0, preflight.stderr
    assert "database (postgresql) and broker (Redis) answer" in preflight.stdout


def test_production_passes_check_deploy_with_no_warnings(tmp_path):
    env = clean_env(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="edumlops.district.example",
        EDUMLOPS_VAR_DIR=str(tmp_path),
    )
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_production_without_secret_key_stops_with_one_line(tmp_path):
    env = clean_env(DJANGO_ENV="production", ALLOWED_HOSTS="x", EDUMLOPS_VAR_DIR=str(tmp_path))
    line = _one_line_error(run_manage("runserver", env=env))
    assert line.startswith("edumlops: SECRET_KEY is not set: set SECRET_KEY to a long random")


def test_production_without_allowed_hosts_stops_with_one_line(tmp_path):
    env = clean_env(DJANGO_ENV="production", SECRET_KEY="k" * 60, EDUMLOPS_VAR_DIR=str(tmp_path))
    line = _one_line_error(run_manage("check", env=env))
    assert line.startswith("edumlops: ALLOWED_HOSTS is not set")


def test_a_malformed_database_url_stops_with_one_line(tmp_path):
    env = clean_env(DATABASE_URL="mysql://root@localhost/x", EDUMLOPS_VAR_DIR=str(tmp_path))
    line = _one_line_error(run_manage("migrate", env=env))
    assert line.startswith("edumlops: DATABASE_URL has the unsupported scheme 'mysql'")


def test_an_unreachable_database_stops_with_one_line(tmp_path):
    env = clean_env(
        DATABASE_URL="postgres://postgres@127.0.0.1:9/edumlops", EDUMLOPS_VAR_DIR=str(tmp_path)
    )
    line = _one_line_error(run_manage("runserver", env=env))
    assert line.startswith("edumlops: DATABASE_URL: cannot connect to the database 127.0.0.1:9/")
    assert line.endswith("start the database or set DATABASE_URL to one that answers")


def test_an_unreachable_redis_stops_the_web_server_with_one_line(tmp_path, test_database_url):
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL="redis://127.0.0.1:9/0",
        EDUMLOPS_VAR_DIR=str(tmp_path),
    )
    line = _one_line_error(run_manage("runserver", env=env))
    assert line.startswith("edumlops: REDIS_URL: cannot reach Redis at 127.0.0.1:9")


@pytest.mark.parametrize("component", ["worker", "beat"])
def test_an_unreachable_redis_stops_worker_and_beat_with_one_line(
    tmp_path, test_database_url, component
):
    env = clean_env(
        DATABASE_URL=test_database_url,
        REDIS_URL="redis://127.0.0.1:9/0",
        EDUMLOPS_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "edumlops", component, "-l", "warning", "-P", "solo"]
        if component == "worker"
        else [sys.executable, "-m", "celery", "-A", "edumlops", component, "-l", "warning"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1]
    assert "edumlops: REDIS_URL: cannot reach Redis at 127.0.0.1:9" in last


def test_an_unmigrated_database_stops_the_worker_with_one_line_naming_migrate(tmp_path):
    env = clean_env(EDUMLOPS_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "edumlops", "worker", "-P", "solo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edumlops: the database has ")
    assert last.endswith(
        "unapplied migration(s), first contenttypes.0001_initial: "
        "run `python manage.py migrate` first"
    )


def test_the_login_lockout_is_set_from_the_environment(tmp_path):
    env = clean_env(
        EDUMLOPS_VAR_DIR=str(tmp_path),
        EDUMLOPS_LOGIN_FAILURES="5",
        EDUMLOPS_LOGIN_COOLOFF_MINUTES="30",
        DJANGO_SETTINGS_MODULE="edumlops.settings",
    )
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, int(s.AXES_COOLOFF_TIME.total_seconds()), "
        "s.AUTHENTICATION_BACKENDS[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.split() == ["5", "1800", "edumlops.site.lockout.LockoutBackend"], out.stderr


def test_a_login_failure_limit_below_one_stops_with_one_line(tmp_path):
    env = clean_env(EDUMLOPS_VAR_DIR=str(tmp_path), EDUMLOPS_LOGIN_FAILURES="0")
    line = _one_line_error(run_manage("check", env=env))
    assert line.startswith("edumlops: EDUMLOPS_LOGIN_FAILURES=0 must be at least 1")
