"""Districts' calendars, schools and memberships keep their rules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from edumlops.schools.models import CalendarPeriod, Membership


def test_period_on_prefers_a_break_inside_a_term(district):
    CalendarPeriod.objects.create(
        district=district,
        kind="testing",
        name="Mid-term tests",
        start=dt.date(2026, 10, 12),
        end=dt.date(2026, 10, 16),
    )
    assert district.period_on(dt.date(2026, 10, 14)).name == "Mid-term tests"
    assert district.term_on(dt.date(2026, 10, 14)).name == "Autumn"
    assert district.period_on(dt.date(2026, 12, 25)).name == "Winter break"
    assert district.term_on(dt.date(2026, 12, 25)) is None
    assert district.period_on(dt.date(2027, 7, 1)) is None


def test_week_of_term_and_next_term_start(district):
    autumn = district.term_on(dt.date(2026, 9, 7))
    assert autumn.week_of(dt.date(2026, 9, 7)) == 1
    assert autumn.week_of(dt.date(2026, 9, 14)) == 2
    assert district.next_term_start(dt.date(2026, 12, 20)).name == "Spring"


def test_overlapping_terms_are_refused_with_the_term_they_overlap(district):
    period = CalendarPeriod(
        district=district,
        kind="term",
        name="Extra",
        start=dt.date(2026, 12, 1),
        end=dt.date(2027, 1, 10),
    )
    with pytest.raises(ValidationError, match="this one overlaps Autumn"):
        period.full_clean()


def test_a_period_cannot_end_before_it_starts(district):
    period = CalendarPeriod(
        district=district,
        kind="break",
        name="Backwards",
        start=dt.date(2027, 2, 10),
        end=dt.date(2027, 2, 1),
    )
    with pytest.raises(ValidationError, match="swap the dates"):
        period.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        period.save()


def test_a_teacher_membership_needs_a_school(make_user, district):
    user = make_user("t")
    membership = Membership(user=user, role="teacher", district=district)
    with pytest.raises(ValidationError, match="A teacher belongs to a school"):
        membership.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        membership.save()


def test_a_membership_has_one_scope(make_user, district, school_a):
    user = make_user("s")
    membership = Membership(user=user, role="admin", district=district, school=school_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        membership.save()
