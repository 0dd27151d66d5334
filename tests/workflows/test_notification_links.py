"""Notifications stored before links went to pages: the migration moves their API run links to
the run's page, says what the link opens, and mends "run run 3"."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from workflows.models import Notification

pytestmark = pytest.mark.django_db

migration = importlib.import_module("workflows.migrations.0006_notification_link_label")


def test_old_api_links_become_pages_with_words(staff):
    run_note = Notification.objects.create(
        user=staff, title="Model ready", body="W found drift (run run 3).", link="/api/runs/3/"
    )
    odd = Notification.objects.create(user=staff, title="Odd", link="/api/models/9/")
    inbox = Notification.objects.create(user=staff, title="Approve", link="/approvals/")
    kept = Notification.objects.create(user=staff, title="Page", link="/runs/4/", link_label="Go")
    migration.to_pages(apps, None)
    for note in (run_note, odd, inbox, kept):
        note.refresh_from_db()
    assert (run_note.link, run_note.link_label) == ("/runs/3/", "Open run #3")
    assert run_note.body == "W found drift (run #3)."
    assert odd.link == ""  # no page known: no link rather than raw JSON
    assert inbox.link_label == "Decide in the approvals inbox"
    assert (kept.link, kept.link_label) == ("/runs/4/", "Go")
