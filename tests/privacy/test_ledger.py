"""The privacy budget ledger: spending, refusing, the school-year reset, append-only."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from edumlops.audit.models import AuditRecord, verify
from edumlops.datasets.models import Dataset
from edumlops.privacy import ledger
from edumlops.privacy.models import LedgerError, PrivacyBudget, PrivacyRelease
from edumlops.schools.calendar import school_year_of
from edumlops.schools.models import CalendarPeriod


@pytest.fixture
def cohort(district):
    return Dataset.objects.create(district=district, name="Class of 2027")


def _calendar_around_today(district) -> tuple[dt.date, dt.date]:
    """Two school years whose first terms start 10 days ago and 355 days from now."""
    CalendarPeriod.objects.filter(district=district).delete()
    today = timezone.localdate()
    this_start = today - dt.timedelta(days=10)
    next_start = this_start + dt.timedelta(days=365)
    for start in (this_start, next_start):
        CalendarPeriod.objects.create(
            district=district,
            kind="term",
            name=f"First term {start.year}",
            start=start,
            end=start + dt.timedelta(days=100),
        )
    return this_start, next_start


def test_a_release_is_charged_to_the_cohort_and_the_audit_chain(district, cohort, staff):
    release = ledger.spend(
        district=district,
        dataset=cohort,
        epsilon=1.0,
        kind="training",
        what="private logistic regression",
        actor=staff,
        mechanism="diffprivlib LogisticRegression",
    )
    assert ledger.spent(district, cohort) == pytest.approx(1.0)
    assert ledger.remaining(district, cohort) == pytest.approx(
        PrivacyBudget.objects.get(district=district, dataset=None).total_epsilon - 1.0
    )
    entry = AuditRecord.objects.get(pk=release.audit_record_id)
    assert entry.action == "privacy_release"
    assert entry.after["epsilon"] == 1.0 and entry.after["cohort"] == "Class of 2027"
    assert verify()[1] is None
    # other cohorts, and the live predictions, have their own budget
    assert ledger.spent(district, None) == 0.0


def test_a_release_over_budget_is_refused_and_says_how_much_is_left(district, cohort, staff):
    ledger.set_budget(
        district=district,
        dataset=cohort,
        total_epsilon=2.0,
        max_per_release=1.5,
        min_cell=None,
        actor=staff,
    )
    common = dict(district=district, dataset=cohort, kind="aggregate", actor=staff)
    ledger.spend(epsilon=1.5, what="first", **common)
    with pytest.raises(ledger.BudgetExceeded) as refused:
        ledger.spend(epsilon=1.0, what="second", **common)
    assert refused.value.remaining == pytest.approx(0.5)
    assert "0.5 of 2 left" in str(refused.value)
    assert "Class of 2027" in str(refused.value)
    with pytest.raises(ledger.BudgetExceeded, match="more than one release may spend"):
        ledger.spend(epsilon=1.6, what="too big for one release", **common)
    assert PrivacyRelease.objects.filter(dataset=cohort).count() == 1
    assert AuditRecord.objects.filter(action="privacy_release").count() == 1
    ledger.spend(epsilon=0.5, what="the rest", **common)  # exactly what is left is allowed
    assert ledger.remaining(district, cohort) == 0.0


def test_the_budget_resets_when_the_calendar_starts_the_next_school_year(
    district, cohort, staff, monkeypatch
):
    this_start, next_start = _calendar_around_today(district)
    ledger.set_budget(
        district=district,
        dataset=cohort,
        total_epsilon=1.0,
        max_per_release=1.0,
        min_cell=None,
        actor=staff,
    )
    common = dict(district=district, dataset=cohort, kind="training", actor=staff, what="m")
    first = ledger.spend(epsilon=1.0, **common)
    assert first.school_year == school_year_of(this_start)
    with pytest.raises(ledger.BudgetExceeded, match="resets on"):
        ledger.spend(epsilon=0.1, **common)
    assert ledger.next_year_starts(district) == next_start

    # the day before the next school year's first term: still this year's budget
    days = (next_start - timezone.localdate()).days
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", str(days - 1))
    with pytest.raises(ledger.BudgetExceeded):
        ledger.spend(epsilon=0.1, **common)
    # the first day of that term: a new school year, a full budget
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", str(days))
    assert ledger.remaining(district, cohort) == pytest.approx(1.0)
    second = ledger.spend(epsilon=1.0, **common)
    assert second.school_year == first.school_year + 1


def test_the_ledger_is_append_only(district, cohort, staff):
    release = ledger.spend(
        district=district, dataset=cohort, epsilon=0.5, kind="aggregate", what="t", actor=staff
    )
    release.epsilon = 0.0
    with pytest.raises(LedgerError):
        release.save()
    with pytest.raises(LedgerError):
        release.delete()


def test_bad_budgets_are_refused_with_the_field_named(district, staff):
    with pytest.raises(ValueError, match="total_epsilon"):
        ledger.set_budget(
            district=district,
            dataset=None,
            total_epsilon=-1,
            max_per_release=1,
            min_cell=None,
            actor=staff,
        )
    with pytest.raises(ValueError, match="max_per_release"):
        ledger.set_budget(
            district=district,
            dataset=None,
            total_epsilon=1,
            max_per_release=0,
            min_cell=None,
            actor=staff,
        )


@pytest.mark.django_db(transaction=True)
def test_two_releases_cannot_both_take_the_last_epsilon(district, cohort, staff):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    ledger.set_budget(
        district=district,
        dataset=cohort,
        total_epsilon=1.0,
        max_per_release=1.0,
        min_cell=None,
        actor=staff,
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def take() -> None:
        barrier.wait()
        try:
            ledger.spend(
                district=district,
                dataset=cohort,
                epsilon=0.8,
                kind="aggregate",
                what="race",
                actor=staff,
            )
            outcomes.append("spent")
        except ledger.BudgetExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "spent"]
    assert ledger.spent(district, cohort) == pytest.approx(0.8)
