"""Failed-login lockout (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one account
(from any address) or from one address (for any account), both login doors answer the lockout
page (429) — even to the right password — until the cool-off has passed or an admin lifts it;
each lockout is in the audit trail."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command

from edumlops.audit.models import AuditRecord
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

DOORS = ["/login/", "/admin/login/"]


@pytest.fixture
def root(make_user):
    """Can log in at both doors (the admin's needs is_staff)."""
    return make_user("root", "admin", is_staff=True, is_superuser=True)


def _try(client, door: str, password: str, username: str = "root", address: str = "10.0.0.1"):
    return client.post(door, {"username": username, "password": password}, REMOTE_ADDR=address)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _lock(client, door: str, **kwargs) -> object:
    for _ in range(9):
        assert _try(client, door, "wrong", **kwargs).status_code == 200
    return _try(client, door, "wrong", **kwargs)


@pytest.mark.parametrize("door", DOORS)
def test_ten_wrong_passwords_lock_the_door_even_to_the_right_one(client, root, door):
    tenth = _lock(client, door)
    assert tenth.status_code == 429
    right = _try(client, door, PASSWORD)
    assert right.status_code == 429
    assert not _logged_in(client)
    page = right.content.decode()
    assert "Too many failed logins" in page and "Try again after" in page
    assert 'data-testid="retry-at"' in page
    assert right["Retry-After"] == str(15 * 60)
    assert '<form method="post" action="/logout/">' not in page  # nobody is signed in


def test_the_lockout_is_audited_once(client, root):
    _lock(client, "/login/")
    for _ in range(3):
        _try(client, "/login/", "wrong")
    record = AuditRecord.objects.get(action="login_lockout")
    assert record.target_label == "root" and record.target_id == str(root.pk)
    assert record.after == {
        "username": "root",
        "address": "10.0.0.1",
        "failures": 10,
        "locked_minutes": 15,
    }
    assert record.reason == "10 failed logins for 'root' or from 10.0.0.1"


def test_the_account_is_locked_from_every_address(client, root):
    _lock(client, "/login/")
    assert _try(client, "/login/", PASSWORD, address="10.0.0.2").status_code == 429
    assert not _logged_in(client)


def test_guesses_spread_over_addresses_lock_the_account(client, root):
    for i in range(9):
        assert _try(client, "/login/", "wrong", address=f"10.0.1.{i}").status_code == 200
    assert _try(client, "/login/", "wrong", address="10.0.1.99").status_code == 429
    assert _try(client, "/login/", PASSWORD, address="10.0.2.1").status_code == 429


def test_one_address_spraying_accounts_is_locked(client, root, make_user):
    for i in range(9):
        assert _try(client, "/login/", "wrong", username=f"user{i}").status_code == 200
    assert _try(client, "/login/", "wrong", username="user9").status_code == 429
    assert _try(client, "/login/", PASSWORD).status_code == 429  # root, from that address
    assert _try(client, "/login/", PASSWORD, address="10.0.0.2").status_code == 302


def test_another_account_from_another_address_is_not_locked(client, root, teacher_a):
    _lock(client, "/login/")
    assert (
        _try(client, "/login/", PASSWORD, username="teacher_a", address="10.0.0.2").status_code
        == 302
    )


@pytest.mark.parametrize("door", DOORS)
def test_after_the_cool_off_the_right_password_logs_in(client, root, door):
    _lock(client, door)
    AccessAttempt.objects.update(attempt_time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16))
    response = _try(client, door, PASSWORD)
    assert response.status_code == 302 and _logged_in(client)


def test_an_admin_lifts_a_lockout_by_username(client, root):
    _lock(client, "/login/")
    assert _try(client, "/login/", PASSWORD).status_code == 429
    call_command("axes_reset_username", "root", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert _try(client, "/login/", PASSWORD).status_code == 302 and _logged_in(client)


def test_a_right_password_before_the_limit_clears_the_count(client, root):
    for _ in range(9):
        _try(client, "/login/", "wrong")
    assert _try(client, "/login/", PASSWORD).status_code == 302
    client.logout()
    for _ in range(9):
        assert _try(client, "/login/", "wrong").status_code == 200


def test_the_limit_comes_from_the_settings(client, root, settings):
    settings.AXES_FAILURE_LIMIT = 3
    assert _try(client, "/login/", "wrong").status_code == 200
    assert _try(client, "/login/", "wrong").status_code == 200
    assert _try(client, "/login/", "wrong").status_code == 429
    assert AuditRecord.objects.filter(action="login_lockout").count() == 1
