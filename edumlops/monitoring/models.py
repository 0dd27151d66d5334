"""Alerts raised about a school or a district. The monitors that raise them (drift, performance,
device latency) come with the monitoring work; deployments already read them: a pilot with an
open alert on one of its schools is not promoted."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from edumlops.schools.models import District, School


class Alert(models.Model):
    class Severity(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        RESOLVED = "resolved", "resolved"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="alerts")
    school = models.ForeignKey(
        School, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    monitor = models.CharField(max_length=60)  # e.g. "drift", "performance", "latency"
    cause = models.CharField(max_length=200)  # e.g. the drifting feature
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [  # one open alert per monitor, school and cause
            models.UniqueConstraint(
                fields=["monitor", "school", "cause"],
                condition=~Q(status="resolved"),
                name="one_unresolved_alert_per_cause",
            )
        ]

    def __str__(self) -> str:
        where = self.school or self.district
        return f"{self.severity} {self.monitor} alert at {where}: {self.cause}"

    def permission_scope(self) -> School | District:
        return self.school or self.district


def open_alerts(schools: list[School]) -> models.QuerySet[Alert]:
    """Unresolved alerts on these schools (or on their whole district)."""
    districts = {s.district_id for s in schools}
    return Alert.objects.exclude(status=Alert.Status.RESOLVED).filter(
        Q(school__in=schools) | Q(school__isnull=True, district_id__in=districts)
    )
