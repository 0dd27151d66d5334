"""edumlops/env.py: reading the environment, failing with one line that names the variable."""

from __future__ import annotations

import pytest

from edumlops.env import ConfigError, broker_config, database_config, env_bool, env_int


def test_the_default_database_is_a_sqlite_file_under_var(tmp_path):
    config = database_config("", tmp_path)
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "edumlops.sqlite3")


def test_a_postgres_url_becomes_a_postgresql_database(tmp_path):
    config = database_config("postgres://ann:pw@db.example:5433/schools", tmp_path)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "db.example",
        5433,
        "schools",
        "ann",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "DATABASE_URL has the unsupported scheme 'mysql'"),
        ("localhost:5432/db", "DATABASE_URL has the unsupported scheme 'localhost'"),
        ("postgres://u@h:5432", "DATABASE_URL names no database"),
    ],
)
def test_a_wrong_database_url_names_the_variable_and_the_fix(tmp_path, url, message):
    with pytest.raises(ConfigError) as excinfo:
        database_config(url, tmp_path)
    assert str(excinfo.value.code).startswith(f"edumlops: {message}")
    assert "postgres://USER:PASSWORD@HOST:5432/NAME" in str(excinfo.value.code)


def test_without_redis_the_broker_is_the_embedded_filesystem_transport(tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    config = broker_config(tmp_path)
    assert config["broker_url"] == "filesystem://"
    assert config["embedded"] is True
    assert config["result_backend"] == (tmp_path / "celery" / "results").as_uri()
    assert config["broker_transport_options"]["polling_interval"] <= 0.1
    assert (tmp_path / "celery" / "queue").is_dir()


def test_redis_url_selects_redis_for_broker_and_results(tmp_path, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    config = broker_config(tmp_path)
    assert config["broker_url"] == config["result_backend"] == "redis://cache:6379/2"
    assert config["embedded"] is False


def test_a_broker_url_that_is_not_redis_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "amqp://guest@localhost//")
    with pytest.raises(ConfigError, match="REDIS_URL has the scheme 'amqp'"):
        broker_config(tmp_path)


def test_booleans_and_numbers_are_read_strictly(monkeypatch):
    monkeypatch.setenv("DEBUG", "yes")
    assert env_bool("DEBUG", False) is True
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ConfigError, match="DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", False)
    monkeypatch.setenv("SECURE_HSTS_SECONDS", "a year")
    with pytest.raises(ConfigError, match="SECURE_HSTS_SECONDS='a year' is not a whole number"):
        env_int("SECURE_HSTS_SECONDS", 3600)
