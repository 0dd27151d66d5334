"""The Celery app. Broker and result backend come from settings (Redis or the embedded transport).

A worker or beat that cannot reach the database or the broker stops at start with one line that
names the variable to fix, instead of retrying forever.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import import_modules

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edumlops.settings")

app = Celery("edumlops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@import_modules.connect
def _check_services_at_start(**_: object) -> None:
    """Sent when a worker or beat loads its modules, before either touches the broker or the
    database (the web process and other producers never send it)."""
    from edumlops.preflight import check_services

    check_services()
