"""Check at start that the database and the broker answer; stop with one line when they don't."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from edumlops.env import ConfigError, env_str


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _connect_once(connection) -> None:  # noqa: ANN001
    """One plain connection, outside any pool (a pool would retry in the background)."""
    if connection.vendor != "postgresql":
        connection.ensure_connection()
        return
    import psycopg

    params = connection.settings_dict
    psycopg.connect(
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        dbname=params["NAME"],
        connect_timeout=3,
    ).close()


def check_database() -> None:
    connection = connections["default"]
    try:
        _connect_once(connection)
    except Exception as exc:  # any driver error means the same thing to the operator
        params = connection.settings_dict
        where = f"{params.get('HOST') or 'localhost'}:{params.get('PORT') or 5432}/{params['NAME']}"
        raise ConfigError(
            f"DATABASE_URL: cannot connect to the database {where} ({_first_line(exc)}): "
            "start the database or set DATABASE_URL to one that answers"
        ) from None


def check_broker() -> None:
    if settings.CELERY_EMBEDDED_TRANSPORT:
        return
    name = "CELERY_BROKER_URL" if env_str("CELERY_BROKER_URL") else "REDIS_URL"
    url = settings.CELERY_BROKER_URL
    parts = urlsplit(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        raise ConfigError(
            f"{name}: cannot reach Redis at {parts.hostname}:{parts.port or 6379} "
            f"({_first_line(exc)}): start Redis or set {name} to one that answers"
        ) from None


def check_migrations() -> None:
    executor = MigrationExecutor(connections["default"])
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        migration = pending[0][0]
        raise ConfigError(
            f"the database has {len(pending)} unapplied migration(s), first "
            f"{migration.app_label}.{migration.name}: run `python manage.py migrate` first"
        )


def check_services(*, migrated: bool = True) -> None:
    """The database answers (and is migrated, unless we are about to migrate), and so does Redis."""
    check_database()
    if migrated:
        check_migrations()
    check_broker()
