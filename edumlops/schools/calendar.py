"""A typical three-term school year, for the demo and the synthetic data. No Django import."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple


class Period(NamedTuple):
    kind: str  # "term", "break" or "testing"
    name: str
    start: dt.date
    end: dt.date


def school_year_of(day: dt.date) -> int:
    """The calendar year in which the school year containing `day` starts (August onwards)."""
    return day.year if day.month >= 8 else day.year - 1


def _monday_on_or_after(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


def _friday_before(day: dt.date) -> dt.date:
    back = (day.weekday() - 4) % 7 or 7
    return day - dt.timedelta(days=back)


def typical_school_year(year: int) -> list[Period]:
    """Autumn, spring and summer terms with a mid-autumn break, winter and spring breaks, and two
    testing windows, aligned to whole weeks."""
    autumn = _monday_on_or_after(dt.date(year, 9, 1))
    spring = _monday_on_or_after(dt.date(year + 1, 1, 5))
    summer = _monday_on_or_after(dt.date(year + 1, 4, 12))
    autumn_break = _monday_on_or_after(dt.date(year, 10, 26))
    spring_tests = _monday_on_or_after(dt.date(year + 1, 3, 2))
    summer_tests = _monday_on_or_after(dt.date(year + 1, 5, 17))
    return [
        Period("term", f"Autumn term {year}", autumn, _friday_before(dt.date(year, 12, 21))),
        Period("break", "Autumn break", autumn_break, autumn_break + dt.timedelta(days=6)),
        Period(
            "break",
            "Winter break",
            _friday_before(dt.date(year, 12, 21)) + dt.timedelta(days=1),
            spring - dt.timedelta(days=1),
        ),
        Period(
            "term",
            f"Spring term {year + 1}",
            spring,
            _friday_before(summer - dt.timedelta(days=14)),
        ),
        Period(
            "testing", "Spring testing window", spring_tests, spring_tests + dt.timedelta(days=11)
        ),
        Period(
            "break",
            "Spring break",
            _friday_before(summer - dt.timedelta(days=14)) + dt.timedelta(days=1),
            summer - dt.timedelta(days=1),
        ),
        Period("term", f"Summer term {year + 1}", summer, _friday_before(dt.date(year + 1, 6, 28))),
        Period(
            "testing",
            "End-of-year testing window",
            summer_tests,
            summer_tests + dt.timedelta(days=11),
        ),
    ]
