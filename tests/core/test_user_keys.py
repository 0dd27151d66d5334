"""User API keys (usr_…): made while signed in and shown once, stored as a hash only, acting as
their user over `Authorization: Bearer`, revocable by their owner only, each change audited;
the old plain-text DRF tokens migrated into them."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.core.keys import hash_key
from edumlops.core.models import UserKey
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _session(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _rows_containing(text: str) -> list[str]:
    """Every table whose rows, read as text, contain `text` (PostgreSQL's row-to-text cast)."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            name = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {name} t WHERE t::text LIKE %s", [f"%{text}%"])
            if cursor.fetchone()[0]:
                found.append(table)
    return found


def test_a_key_is_shown_once_and_stored_only_as_its_hash(teacher_a):
    response = _session(teacher_a).post("/api/me/keys/", {"name": "notebook"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    key = body["key"]
    assert key.startswith("usr_") and len(key) > 40
    assert body["prefix"] == key[:12] and body["name"] == "notebook" and body["legacy"] is False
    stored = UserKey.objects.get()
    assert stored.user == teacher_a and stored.key_hash == hash_key(key)
    assert _rows_containing(key) == []
    assert _rows_containing(stored.key_hash) == ["core_userkey"]
    listed = _session(teacher_a).get("/api/me/keys/").json()
    assert [k["name"] for k in listed] == ["notebook"] and "key" not in listed[0]
    record = AuditRecord.objects.get(reason="API key created")
    assert record.actor == teacher_a and record.target_type == "core.userkey"


def test_a_bearer_key_acts_as_its_user_and_records_its_use(teacher_a, school_a):
    _, key = UserKey.issue(teacher_a, "script")
    response = _bearer(key).get("/api/me/")
    assert response.status_code == 200, response.json()
    assert response.json()["username"] == "teacher_a"
    assert UserKey.objects.get().last_used_at is not None
    assert _bearer(key).get(f"/api/schools/{school_a.pk}/").status_code == 200


@pytest.mark.parametrize("header", ["Bearer usr_not-a-key", "Token not-a-key", "Token usr_x"])
def test_an_unknown_key_is_a_401_in_the_error_shape(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "This API key is unknown or revoked: make a new one under API keys in your menu.",
        "code": "authentication_failed",
        "errors": [],
    }
    assert response["WWW-Authenticate"] == "Bearer"


def test_no_credentials_is_a_401_that_names_the_scheme(db):
    response = APIClient().get("/api/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_key_is_refused_and_revoking_twice_is_a_conflict(teacher_a):
    row, key = UserKey.issue(teacher_a, "old laptop")
    owner = _session(teacher_a)
    response = owner.post(f"/api/me/keys/{row.pk}/revoke/")
    assert response.status_code == 200 and response.json()["revoked_at"] is not None
    refused = _bearer(key).get("/api/me/")
    assert refused.status_code == 401 and refused.json()["code"] == "authentication_failed"
    again = owner.post(f"/api/me/keys/{row.pk}/revoke/")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert AuditRecord.objects.filter(reason="API key revoked").count() == 1


def test_a_key_of_an_inactive_user_is_refused(teacher_a):
    _, key = UserKey.issue(teacher_a, "script")
    teacher_a.is_active = False
    teacher_a.save()
    response = _bearer(key).get("/api/me/")
    assert response.status_code == 401
    assert "deactivated" in response.json()["detail"]


def test_another_users_key_cannot_be_revoked_or_seen(teacher_a, teacher_b):
    row, key = UserKey.issue(teacher_a, "mine")
    other = _session(teacher_b)
    response = other.post(f"/api/me/keys/{row.pk}/revoke/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert other.get("/api/me/keys/").json() == []
    assert _bearer(key).get("/api/me/").status_code == 200


def test_a_key_may_not_make_keys(teacher_a):
    _, key = UserKey.issue(teacher_a, "script")
    response = _bearer(key).post("/api/me/keys/", {"name": "successor"}, format="json")
    assert response.status_code == 403 and "a key may not make keys" in response.json()["detail"]
    assert UserKey.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": ""}, "name"), ({}, "name"), ([], ""), ({"name": "x" * 101}, "name")],
)
def test_a_bad_name_is_a_400_naming_the_field(teacher_a, body, field):
    response = _session(teacher_a).post("/api/me/keys/", body, format="json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not UserKey.objects.exists()


def test_the_migration_turns_drf_tokens_into_hashed_keys_and_drops_the_table(teacher_a):
    migration = importlib.import_module("edumlops.core.migrations.0002_retire_drf_tokens")
    old = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, now() - interval '3 days', %s)",
            [old, teacher_a.pk],
        )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001', now())"
        )
    with connection.schema_editor() as editor:
        migration.retire_drf_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    key = UserKey.objects.get()
    assert key.user == teacher_a and key.key_hash == hash_key(old) and key.legacy
    assert key.name == "Migrated API token" and key.prefix == old[:8]
    assert _rows_containing(old) == []
    # the client that had the token keeps working until the key is revoked
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert client.get("/api/me/").json()["username"] == "teacher_a"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {old}")
    assert client.get("/api/me/").status_code == 401


def test_the_page_makes_lists_and_revokes_keys(client, teacher_a, teacher_b):
    assert client.login(username="teacher_a", password=PASSWORD)
    page = client.get(reverse("api-keys"))
    assert page.status_code == 200
    assert "You have no API keys yet" in page.content.decode()
    assert f'href="{reverse("api-keys")}"' in page.content.decode()  # the user-menu link

    made = client.post(reverse("api-keys"), {"do": "create", "name": "grading notebook"})
    html = made.content.decode()
    row = UserKey.objects.get()
    assert made.status_code == 200 and 'data-testid="new-key"' in html
    key = html.split('data-testid="key">')[1].split("<")[0]
    assert key.startswith("usr_") and hash_key(key) == row.key_hash
    assert key not in client.get(reverse("api-keys")).content.decode()  # shown once

    other = row.pk + 1000
    assert client.post(reverse("api-keys"), {"do": "revoke", "key": other}).status_code == 404
    mine_for_b = UserKey.issue(teacher_b, "b's")[0]
    assert (
        client.post(reverse("api-keys"), {"do": "revoke", "key": mine_for_b.pk}).status_code == 404
    )

    revoked = client.post(
        reverse("api-keys"), {"do": "revoke", "key": row.pk}, HTTP_HX_REQUEST="true"
    )
    fragment = revoked.content.decode()
    assert revoked.status_code == 200 and "<html" not in fragment  # htmx gets the fragment
    assert "is revoked" in fragment and "revoked " in fragment
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert _bearer(key).get("/api/me/").status_code == 401


def test_the_page_needs_a_login(client, db):
    response = client.get(reverse("api-keys"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_page_name_that_is_blank_is_told(client, teacher_a):
    client.force_login(teacher_a)
    response = client.post(reverse("api-keys"), {"do": "create", "name": "  "})
    assert "Name the key" in response.content.decode()
    assert not UserKey.objects.exists()
