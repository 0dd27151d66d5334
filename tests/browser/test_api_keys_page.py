"""In a real headless Chromium: the user menu leads to API keys; a key is made (shown once) and
revoked through htmx, after the browser's confirm dialog."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.core.keys import hash_key
from edumlops.core.models import UserKey

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_a_teacher_makes_and_revokes_an_api_key(page, live_server, demo):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill("edumlops-demo")
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("api-keys-link").click()
    assert "You have no API keys yet" in page.get_by_test_id("api-keys").inner_text()

    page.get_by_label("Name").fill("grading notebook")
    page.get_by_role("button", name="Make key").click()
    key = page.get_by_test_id("key").inner_text()
    stored = UserKey.objects.get(user__username="tom")
    assert key.startswith("usr_") and hash_key(key) == stored.key_hash
    assert "grading notebook" in page.get_by_test_id("api-keys").inner_text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id(f"revoke-{stored.pk}").click()
    page.get_by_text("is revoked").wait_for()
    assert page.get_by_test_id("new-key").count() == 0  # shown once
    assert "revoked" in page.get_by_test_id(f"key-{stored.pk}").inner_text()
    stored.refresh_from_db()
    assert stored.revoked_at is not None
