"""Check that the database and the broker answer (manage.py runs the check before this command)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Check that the database and the Celery broker are reachable; exit 1 with one line if not."
    )

    def handle(self, *args: object, **options: object) -> None:
        broker = "embedded filesystem transport" if settings.CELERY_EMBEDDED_TRANSPORT else "Redis"
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.stdout.write(f"preflight: database ({engine}) and broker ({broker}) answer")
