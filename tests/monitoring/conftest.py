"""The monitors leave out rows recorded in breaks, and these tests record rows today: the shared
district's calendar is fixed to 2026–27, so on a day outside its terms (the winter break, the
summer) it is moved to put today in the middle of its autumn term."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db.models import F
from django.utils import timezone

from edumlops.schools.models import CalendarPeriod


def put_today_in_term(district) -> None:  # noqa: ANN001
    """Move `district`'s calendar so today is in the middle of its autumn term, where today is
    outside its terms (EDUMLOPS_TEST_SHIFT_CALENDAR=1 moves it on any day, to check this)."""
    today = timezone.localdate()
    if district.term_on(today) is None or os.environ.get("EDUMLOPS_TEST_SHIFT_CALENDAR"):
        autumn = district.terms().get(name="Autumn")
        shift = today - (autumn.start + dt.timedelta(days=56))
        CalendarPeriod.objects.filter(district=district).update(
            start=F("start") + shift, end=F("end") + shift
        )


@pytest.fixture
def district(district):
    put_today_in_term(district)
    return district
