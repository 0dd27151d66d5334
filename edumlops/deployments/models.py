"""Who gets which model: deployments of a model version on a scope (pilot schools or the whole
district), their history, and the predictions they answered (minimised, for monitoring).

Each school resolves exactly one active version: the active pilot it belongs to, else the
district-wide deployment. A deployment is never edited into another one: rolling out, promoting
and rolling back end the active deployment (superseded / rolled back, with the reason) and start
a new one that remembers the one it replaced, so "last known good" is a walk back that chain.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from edumlops.schools.models import District, School


class Deployment(models.Model):
    class Scope(models.TextChoices):
        PILOT = "pilot", "pilot schools"
        DISTRICT = "district", "whole district"

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        SUPERSEDED = "superseded", "superseded"
        PROMOTED = "promoted", "promoted to the district"
        ROLLED_BACK = "rolled_back", "rolled back"
        ENDED = "ended", "ended"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="deployments"
    )
    scope = models.CharField(max_length=10, choices=Scope.choices)
    schools = models.ManyToManyField(School, blank=True, related_name="pilot_deployments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_reason = models.TextField(blank=True)
    workflow_run = models.ForeignKey(
        "workflows.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["district"],
                condition=Q(scope="district", status="active"),
                name="one_active_district_deployment",
            )
        ]

    def __str__(self) -> str:
        where = "district" if self.scope == self.Scope.DISTRICT else "pilot"
        return f"{self.model_version} on {where} (#{self.pk})"

    def permission_scope(self) -> District:
        return self.district

    @property
    def active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Prediction(models.Model):
    """One accepted prediction, minimised: the model's features only (the request may carry no
    other field), the probability, the band, and which deployment answered. No identifiers."""

    # An append-only log written in batches by one writer (edumlops.deployments.recorder) with
    # ids it has just read: no foreign-key constraints in the database (they cost PostgreSQL
    # more than the rest of a row's insert). Django still cascades a deleted school's rows and
    # protects a deployment or version that has rows. The school's own index is the first half
    # of (school, created_at).
    school = models.ForeignKey(
        School,
        on_delete=models.CASCADE,
        related_name="predictions",
        db_constraint=False,
        db_index=False,
    )
    deployment = models.ForeignKey(
        Deployment, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    features = models.JSONField()
    probability = models.FloatField()
    band = models.CharField(max_length=10)
    latency_ms = models.FloatField()
    # the categorical features whose value the model never saw in training (scored, flagged)
    unseen_categories = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["school", "created_at"])]

    def __str__(self) -> str:
        return f"{self.probability:.3f} ({self.band}) for {self.school} by {self.model_version}"

    def permission_scope(self) -> School:
        return self.school


class IntegrationToken(models.Model):
    """A key for a school information system or an app to call the predict API of one district
    (or one school). Only its SHA-256 is stored; the key is shown once, when it is created."""

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="tokens")
    school = models.ForeignKey(
        School, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)  # the first characters, to recognise a key
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def permission_scope(self) -> District:
        return self.district

    def may_predict_for(self, school: School) -> bool:
        return (
            self.revoked_at is None
            and school.district_id == self.district_id
            and (self.school_id is None or self.school_id == school.pk)
        )


class ServingState(models.Model):
    """One row whose `generation` grows with every change to what the predict API answers with:
    a deployment started, rolled back, promoted or ended, a pilot's schools, a token revoked or
    deleted, a school deleted. Bumped inside the transaction that makes the change, so a
    process that reads the new number also sees the change; each serving process reads it once
    per request and drops its cached tokens and deployments when it moved
    (edumlops.deployments.hotpath)."""

    generation = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"serving generation {self.generation}"
