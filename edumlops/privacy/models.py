"""The privacy budget: how much ε a district lets each cohort spend per school year, and the
append-only ledger of every differentially private release.

A cohort is a dataset (the students it describes); the live predictions of a district, which no
dataset holds, are a cohort of their own (`dataset` empty). A school year is the district's:
it starts with the first term of the year in its academic calendar (edumlops.privacy.ledger).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from edumlops.datasets.models import Dataset
from edumlops.schools.models import District

# A district that never set a budget gets these: enough for a private model (ε = 1) and a
# season of published aggregates (ε = 0.1 each) per cohort and school year.
DEFAULT_TOTAL_EPSILON = 4.0
DEFAULT_MAX_PER_RELEASE = 2.0
# Counts below this are not published when no budget is left (and are flagged when noised).
DEFAULT_MIN_CELL = 10


class LedgerError(RuntimeError):
    pass


class PrivacyBudget(models.Model):
    """The budget of one cohort (or, with `dataset` empty, the district's default for every
    cohort that has none of its own, and its live predictions)."""

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="privacy_budgets")
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="privacy_budgets"
    )
    total_epsilon = models.FloatField(
        default=DEFAULT_TOTAL_EPSILON,
        validators=[MinValueValidator(0.0)],
        help_text="Total ε the cohort may spend per school year.",
    )
    max_per_release = models.FloatField(
        default=DEFAULT_MAX_PER_RELEASE,
        validators=[MinValueValidator(0.0)],
        help_text="The most ε one release (a private model, a published table) may spend.",
    )
    min_cell = models.PositiveIntegerField(
        default=DEFAULT_MIN_CELL,
        help_text="Counts below this are suppressed when no budget is left to noise them.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["district", "dataset"], name="one_budget_per_cohort"),
            models.UniqueConstraint(
                fields=["district"],
                condition=Q(dataset__isnull=True),
                name="one_default_budget_per_district",
            ),
            models.CheckConstraint(
                condition=Q(total_epsilon__gte=0) & Q(max_per_release__gt=0),
                name="budget_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset or 'default'}: ε {self.total_epsilon:g} per school year"

    def permission_scope(self) -> District:
        return self.district


class PrivacyRelease(models.Model):
    """One differentially private release. Never changed or deleted: the ledger is append-only,
    and each entry is also a record in the audit chain (`audit_record_id`)."""

    class Kind(models.TextChoices):
        TRAINING = "training", "private model"
        FEDERATED = "federated", "federated model (noise on the updates)"
        AGGREGATE = "aggregate", "published aggregate"

    district = models.ForeignKey(District, on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="privacy_releases"
    )
    school_year = models.PositiveIntegerField(
        help_text="The school year the release is charged to (2026 = 2026–27)."
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    epsilon = models.FloatField()
    delta = models.FloatField(default=0.0)
    mechanism = models.CharField(max_length=120, blank=True)
    what = models.CharField(max_length=300, help_text="What was released, in words.")
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=60, blank=True)
    key = models.CharField(
        max_length=200,
        blank=True,
        help_text="Identifies a release that is published once and then reused (a table).",
    )
    details = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    audit_record_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["district", "dataset", "school_year"])]
        constraints = [
            models.CheckConstraint(condition=Q(epsilon__gt=0), name="release_spends_something"),
        ]

    def __str__(self) -> str:
        return f"ε {self.epsilon:g} for {self.what} ({self.school_year})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise LedgerError("The privacy ledger is append-only: a release is never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise LedgerError("The privacy ledger is append-only: a release is never deleted.")

    def permission_scope(self) -> District:
        return self.district
