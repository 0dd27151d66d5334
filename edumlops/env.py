"""Read configuration from the environment, failing loudly on bad values.

No Django import here: settings.py and the Celery app both use it. A bad value stops the process
with one line that names the variable and what to set (``ConfigError`` is a ``SystemExit``, so
Python prints the message and exits without a traceback).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url


class ConfigError(SystemExit):
    """A configuration problem: Python prints it as one line on stderr and exits with status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"edumlops: {message}")
        self.message = message


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: set it to true or false")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number: set it to e.g. {default}"
        ) from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


SUPPORTED_DATABASES = {"sqlite", "postgres", "postgresql", "pgsql", "postgis"}


def database_config(url: str, var_dir: Path) -> dict:
    """Turn DATABASE_URL (or the SQLite default under var/) into a Django DATABASES entry."""
    if not url:
        path = var_dir / "edumlops.sqlite3"
        return sqlite_config(path)
    scheme = urlsplit(url).scheme
    if scheme not in SUPPORTED_DATABASES:
        raise ConfigError(
            f"DATABASE_URL has the unsupported scheme {scheme or '(none)'!r}: set it to "
            "postgres://USER:PASSWORD@HOST:5432/NAME, or unset it to use SQLite under var/"
        )
    try:
        config = dj_database_url.parse(url)
    except ValueError as exc:
        raise ConfigError(
            f"DATABASE_URL could not be parsed ({exc}): set it to "
            "postgres://USER:PASSWORD@HOST:5432/NAME"
        ) from None
    if config["ENGINE"].endswith("sqlite3"):
        return sqlite_config(Path(config["NAME"]))
    if not config.get("NAME"):
        raise ConfigError(
            "DATABASE_URL names no database: set it to postgres://USER:PASSWORD@HOST:5432/NAME"
        )
    # A connection pool per process: Celery closes Django's connections around every task, and
    # with the pool that hands the connection back instead of reconnecting (~10 ms) each time.
    config["CONN_MAX_AGE"] = 0
    config.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 20, "timeout": 10}
    # The pool checks a connection before lending it (ConnectionPool.check_connection, an empty
    # query): after a PostgreSQL restart or pg_terminate_backend it reconnects instead of handing
    # out dead ones. Django passes check= itself from CONN_HEALTH_CHECKS; a "check" key in the
    # pool options would be a duplicate keyword (TypeError on the first query).
    config["CONN_HEALTH_CHECKS"] = True
    return config


def sqlite_config(path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # The web server, the worker and beat share the file: WAL lets readers run beside a writer,
        # IMMEDIATE transactions take the write lock up front instead of failing half way.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def broker_config(var_dir: Path) -> dict:
    """Celery broker and result backend: Redis when REDIS_URL/CELERY_BROKER_URL is set.

    Otherwise kombu's filesystem transport in var/celery: a real worker process on the same
    machine, no server. It polls, so the interval is short (FACTS.md: 1 s by default made 20 round
    trips take 20 s).
    """
    broker_url = env_str("CELERY_BROKER_URL") or env_str("REDIS_URL")
    if broker_url:
        scheme = urlsplit(broker_url).scheme
        if scheme not in {"redis", "rediss"}:
            name = "CELERY_BROKER_URL" if env_str("CELERY_BROKER_URL") else "REDIS_URL"
            raise ConfigError(
                f"{name} has the scheme {scheme or '(none)'!r}: set it to redis://HOST:6379/0, "
                "or unset it to use the embedded transport under var/celery"
            )
        return {
            "broker_url": broker_url,
            "result_backend": env_str("CELERY_RESULT_BACKEND") or broker_url,
            "broker_transport_options": {},
            "embedded": False,
        }
    root = var_dir / "celery"
    queue = root / "queue"
    processed = root / "processed"
    results = root / "results"
    for folder in (queue, processed, results):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "result_backend": env_str("CELERY_RESULT_BACKEND") or results.as_uri(),
        "broker_transport_options": {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "store_processed": False,
            "control_folder": str(root / "control"),
            "polling_interval": 0.05,
        },
        "embedded": True,
    }


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
