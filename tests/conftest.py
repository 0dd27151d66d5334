"""Shared fixtures: a district with two schools, a second district, and named users per role."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings

from edumlops.schools.models import CalendarPeriod, District, Membership, School

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"

pytest_plugins = ["tests.faults"]  # own_redis, fault_env: fault-injection process fixtures


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine or settings.CELERY_EMBEDDED_TRANSPORT:
        pytest.exit(
            "the tests run against the local PostgreSQL and Redis: run them with `make test`, "
            "or set DATABASE_URL=postgres://... and REDIS_URL=redis://... first",
            returncode=2,
        )


def run_manage(
    *args: str, env: dict[str, str], timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a fresh process with exactly the given environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the project's settings variables set."""
    names = {
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "DJANGO_ENV",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DEBUG",
        "MLFLOW_TRACKING_URI",
        "EDUMLOPS_VAR_DIR",
        "DJANGO_SETTINGS_MODULE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    }
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(overrides)
    return env


@pytest.fixture
def district(db: None) -> District:
    district = District.objects.create(name="Maple Valley", slug="maple")
    CalendarPeriod.objects.create(
        district=district,
        kind="term",
        name="Autumn",
        start=dt.date(2026, 9, 7),
        end=dt.date(2026, 12, 18),
    )
    CalendarPeriod.objects.create(
        district=district,
        kind="break",
        name="Winter break",
        start=dt.date(2026, 12, 19),
        end=dt.date(2027, 1, 3),
    )
    CalendarPeriod.objects.create(
        district=district,
        kind="term",
        name="Spring",
        start=dt.date(2027, 1, 4),
        end=dt.date(2027, 3, 26),
    )
    return district


def _school(district: District, code: str, name: str, **extra: object) -> School:
    fields = {
        "size_band": "medium",
        "enrollment": 500,
        "locality": "urban",
        "connectivity": "always_on",
        "hardware": "desktop",
    }
    fields.update(extra)
    return School.objects.create(district=district, code=code, name=name, **fields)


@pytest.fixture
def school_a(district: District) -> School:
    return _school(district, "a", "Alder School")


@pytest.fixture
def school_b(district: District) -> School:
    return _school(district, "b", "Birch School", size_band="small", locality="rural")


@pytest.fixture
def other_district(db: None) -> District:
    return District.objects.create(name="Far Hills", slug="far-hills")


@pytest.fixture
def other_school(other_district: District) -> School:
    return _school(other_district, "c", "Cedar School")


@pytest.fixture
def make_user(django_user_model: type) -> Callable[..., object]:
    def make(
        username: str, role: str | None = None, school=None, district=None, **extra: object
    ) -> object:
        user = django_user_model.objects.create_user(username, password=PASSWORD, **extra)
        if role:
            Membership.objects.create(user=user, role=role, school=school, district=district)
        return user

    return make


@pytest.fixture
def teacher_a(make_user, school_a):
    return make_user("teacher_a", "teacher", school=school_a)


@pytest.fixture
def teacher_b(make_user, school_b):
    return make_user("teacher_b", "teacher", school=school_b)


@pytest.fixture
def staff(make_user, district):
    return make_user("staff", "district_staff", district=district)


@pytest.fixture
def district_admin(make_user, district):
    return make_user("district_admin", "admin", district=district)


@pytest.fixture
def platform_admin(make_user, db):
    return make_user("platform_admin", "admin")


@pytest.fixture
def outsider(make_user, other_district):
    """District staff, but of another district."""
    return make_user("outsider", "district_staff", district=other_district)


@pytest.fixture
def nobody(make_user, db):
    """Logged in, no membership at all."""
    return make_user("nobody")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2 is slow on purpose; the tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _record_predictions_in_the_request(settings) -> None:
    """In this process the tests read predictions back inside their own transaction, which the
    recorder's thread cannot see: write them in the request. The buffered path runs in the
    servers the tests start (tests/deployments/test_recorder.py)."""
    settings.PREDICTION_FLUSH_SECONDS = 0


@pytest.fixture(autouse=True)
def _forget_kept_tokens_and_deployments() -> None:
    """The predict fast path keeps tokens and deployments per serving generation; a test's
    rolled-back transaction can bring a generation number back, so each test starts empty."""
    from edumlops.deployments import hotpath

    hotpath.forget()


@pytest.fixture
def test_database_url(db: None) -> str:
    """DATABASE_URL of the test database pytest-django made, for processes the test starts."""
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def ml_stores(settings, tmp_path: Path) -> Path:
    """Point this process at tmp_path the way EDUMLOPS_VAR_DIR=tmp_path points a worker."""
    settings.DATASET_DIR = tmp_path / "datasets"
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings.MLFLOW_ARTIFACT_ROOT = (tmp_path / "mlartifacts").as_uri()
    settings.SIGNING_KEY_PATH = tmp_path / "keys" / "bundle-signing.pem"
    return tmp_path


def put_today_in_term(district) -> None:  # noqa: ANN001
    """Move `district`'s calendar so today is in the middle of its autumn term, where today is
    outside its terms (EDUMLOPS_TEST_SHIFT_CALENDAR=1 moves it on any day, to check this)."""
    from django.db.models import F
    from django.utils import timezone

    today = timezone.localdate()
    if district.term_on(today) is None or os.environ.get("EDUMLOPS_TEST_SHIFT_CALENDAR"):
        autumn = district.terms().get(name="Autumn")
        shift = today - (autumn.start + dt.timedelta(days=56))
        CalendarPeriod.objects.filter(district=district).update(
            start=F("start") + shift, end=F("end") + shift
        )
