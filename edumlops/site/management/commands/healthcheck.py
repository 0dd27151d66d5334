"""Health checks for docker-compose: `healthcheck beat` passes when beat sent its heartbeat."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask


class Command(BaseCommand):
    help = (
        "Exit 0 when the named component is healthy (beat: heartbeat sent in the last 3 minutes)."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("component", choices=["beat"])

    def handle(self, *args: object, component: str, **options: object) -> None:
        task = PeriodicTask.objects.filter(name="heartbeat").first()
        if task is None or task.last_run_at is None:
            raise CommandError("beat has not sent its heartbeat yet")
        age = timezone.now() - task.last_run_at
        if age > dt.timedelta(minutes=3):
            raise CommandError(f"beat's last heartbeat was {int(age.total_seconds())} s ago")
        self.stdout.write(f"beat: heartbeat {int(age.total_seconds())} s ago")
