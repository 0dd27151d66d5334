"""Districts, their academic calendars, schools, and who may act where."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class District(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    teachers_may_roll_back = models.BooleanField(
        default=False,
        help_text="Teachers may press Rollback for their own school.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # --- the academic calendar -----------------------------------------------------------
    def terms(self) -> models.QuerySet[CalendarPeriod]:
        return self.calendar.filter(kind=CalendarPeriod.Kind.TERM)

    def period_on(self, day: dt.date) -> CalendarPeriod | None:
        """The break or testing window on `day` if there is one, else the term, else None."""
        periods = list(self.calendar.filter(start__lte=day, end__gte=day))
        periods.sort(key=lambda p: p.kind == CalendarPeriod.Kind.TERM)
        return periods[0] if periods else None

    def term_on(self, day: dt.date) -> CalendarPeriod | None:
        return self.terms().filter(start__lte=day, end__gte=day).first()

    def next_term_start(self, day: dt.date) -> CalendarPeriod | None:
        return self.terms().filter(start__gt=day).order_by("start").first()


class CalendarPeriod(models.Model):
    """A named stretch of the school year: a term, a break, or a testing window."""

    class Kind(models.TextChoices):
        TERM = "term", "Term"
        BREAK = "break", "Break"
        TESTING = "testing", "Testing window"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="calendar")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=100)
    start = models.DateField()
    end = models.DateField(help_text="Last day, inclusive.")

    class Meta:
        ordering = ["start", "kind"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gte=models.F("start")), name="period_ends_after_start"
            ),
            models.UniqueConstraint(
                fields=["district", "kind", "name", "start"], name="unique_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display().lower()}, {self.start} – {self.end})"

    def clean(self) -> None:
        if self.start and self.end and self.end < self.start:
            raise ValidationError({"end": "The last day comes before the first: swap the dates."})
        if self.kind == self.Kind.TERM and self.district_id and self.start and self.end:
            overlapping = (
                CalendarPeriod.objects.filter(
                    district_id=self.district_id,
                    kind=self.Kind.TERM,
                    start__lte=self.end,
                    end__gte=self.start,
                )
                .exclude(pk=self.pk)
                .first()
            )
            if overlapping:
                raise ValidationError(
                    f"Terms may not overlap: this one overlaps {overlapping.name} "
                    f"({overlapping.start} – {overlapping.end}). Move one of them."
                )

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def week_of(self, day: dt.date) -> int:
        """1-based week number of `day` within this period."""
        return (day - self.start).days // 7 + 1


class School(models.Model):
    class SizeBand(models.TextChoices):
        SMALL = "small", "Small (under 300 students)"
        MEDIUM = "medium", "Medium (300–999 students)"
        LARGE = "large", "Large (1,000 students or more)"

    class Locality(models.TextChoices):
        URBAN = "urban", "Urban"
        RURAL = "rural", "Rural"

    class Connectivity(models.TextChoices):
        ALWAYS_ON = "always_on", "Always online"
        INTERMITTENT = "intermittent", "Intermittent"
        OFFLINE = "offline", "Mostly offline"

    class Hardware(models.TextChoices):
        OLD_LAPTOP = "old_laptop", "Old laptop"
        DESKTOP = "desktop", "Desktop PC"
        SERVER = "server", "School server"
        CLOUD = "cloud", "Central cloud only"

    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="schools")
    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=40, help_text="Short code used in data files and URLs.")
    size_band = models.CharField(max_length=10, choices=SizeBand.choices)
    enrollment = models.PositiveIntegerField(default=0)
    locality = models.CharField(max_length=10, choices=Locality.choices)
    connectivity = models.CharField(max_length=15, choices=Connectivity.choices)
    hardware = models.CharField(max_length=15, choices=Hardware.choices)
    tags = models.JSONField(default=list, blank=True, help_text="Free labels, e.g. pilot-2026.")

    class Meta:
        ordering = ["district__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["district", "code"], name="unique_school_code"),
            models.UniqueConstraint(fields=["district", "name"], name="unique_school_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role, scoped to one school (teachers) or one district (staff, admins).

    An admin membership with neither school nor district is platform-wide.
    """

    class Role(models.TextChoices):
        TEACHER = "teacher", "Teacher"
        DISTRICT_STAFF = "district_staff", "District staff"
        ADMIN = "admin", "ML lead / admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    school = models.ForeignKey(
        School, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    district = models.ForeignKey(
        District, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(school__isnull=True) | Q(district__isnull=True),
                name="membership_one_scope",
            ),
            models.CheckConstraint(
                condition=~Q(role="teacher") | Q(school__isnull=False),
                name="teacher_has_school",
            ),
            models.CheckConstraint(
                condition=~Q(role="district_staff") | Q(district__isnull=False),
                name="staff_has_district",
            ),
            models.UniqueConstraint(
                fields=["user", "role", "school", "district"], name="unique_membership"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.scope_label}"

    @property
    def scope_label(self) -> str:
        if self.school_id:
            return str(self.school)
        if self.district_id:
            return str(self.district)
        return "all districts"

    def clean(self) -> None:
        if self.school_id and self.district_id:
            raise ValidationError("Choose a school or a district, not both.")
        if self.role == self.Role.TEACHER and not self.school_id:
            raise ValidationError({"school": "A teacher belongs to a school: choose one."})
        if self.role == self.Role.DISTRICT_STAFF and not self.district_id:
            raise ValidationError({"district": "District staff belong to a district: choose one."})
