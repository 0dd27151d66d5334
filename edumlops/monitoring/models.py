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


class DailyAggregate(models.Model):
    """What stays of a school's predictions for a day once raw rows age out: counts, risk bands,
    per-feature histograms on the model's reference bins, latency percentiles. Edge nodes send
    the same shape (source "edge:<node>")."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="daily_aggregates")
    day = models.DateField()
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.CASCADE, related_name="+"
    )
    source = models.CharField(max_length=80, default="central")
    device_profile = models.CharField(max_length=80, blank=True)
    count = models.PositiveIntegerField(default=0)
    bands = models.JSONField(default=dict)  # {"low": n, "medium": n, "high": n}
    histograms = models.JSONField(default=dict)  # {feature: [counts on the reference bins]}
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    # {feature: predictions whose category the model never saw in training}
    unseen_categories = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "day", "model_version", "source", "device_profile"],
                name="one_aggregate_per_school_day_model_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.school} {self.day}: {self.count} predictions ({self.source})"

    def permission_scope(self) -> School:
        return self.school


class TelemetryBatch(models.Model):
    """A batch of aggregates received once: its idempotency key makes a resend count nothing."""

    key = models.CharField(max_length=120, unique=True)
    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    aggregates = models.PositiveIntegerField()

    def __str__(self) -> str:
        return self.key


class DriftCheck(models.Model):
    """One school's result of one drift check (a pooled check is stored for each member)."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="drift_checks")
    group = models.CharField(max_length=200)  # the school, or "rural (pooled)"
    checked_at = models.DateTimeField()
    window_start = models.DateField()
    window_end = models.DateField()
    baseline = models.CharField(max_length=100)
    status = models.CharField(max_length=20)  # drift / no_drift / insufficient_data
    features = models.JSONField(default=list)  # [{name, psi, js, wasserstein, drifted}]
    run_id = models.IntegerField(null=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["school", "checked_at"])]

    def __str__(self) -> str:
        return f"{self.school} {self.checked_at:%Y-%m-%d}: {self.status}"

    def permission_scope(self) -> School:
        return self.school


class PerformanceCheck(models.Model):
    """One school's measured performance once outcomes arrived: overall and per group."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="performance_checks")
    checked_at = models.DateTimeField()
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.CASCADE, related_name="+"
    )
    rows = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)  # recall, precision, brier, auc
    # [{"group": "ses=low", "recall": 0.7, "positives": 40, "found": 28}] (counts since issue 18)
    groups = models.JSONField(default=list)
    run_id = models.IntegerField(null=True)

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.school} {self.checked_at:%Y-%m-%d}: recall {self.metrics.get('recall')}"

    def permission_scope(self) -> School:
        return self.school
