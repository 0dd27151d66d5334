"""docker-compose.yml passes `docker compose config`; every component has a health check."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT, clean_env


def _compose() -> list[str]:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run `make test`")


def _config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose(), "-f", "docker-compose.yml", "config", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_config_is_valid_with_the_seven_services():
    result = _config("--services", SECRET_KEY="s" * 60, ALLOWED_HOSTS="edu.example.org")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {
        "postgres",
        "redis",
        "mlflow",
        "web",
        "worker",
        "beat",
        "superlink",
    }


def test_every_service_has_a_health_check():
    result = _config(SECRET_KEY="s" * 60, ALLOWED_HOSTS="edu.example.org")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("healthcheck:") == 7


def test_compose_refuses_to_start_without_a_secret_key():
    result = _config(ALLOWED_HOSTS="edu.example.org")
    assert result.returncode != 0
    assert "set SECRET_KEY in .env" in result.stderr
