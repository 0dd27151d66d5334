"""The typical school year used by the demo and the synthetic data."""

from __future__ import annotations

import datetime as dt

import pytest

from edumlops.schools.calendar import school_year_of, typical_school_year


@pytest.mark.parametrize(
    ("day", "year"),
    [(dt.date(2026, 11, 24), 2026), (dt.date(2027, 3, 1), 2026), (dt.date(2027, 8, 1), 2027)],
)
def test_the_school_year_starts_in_august(day, year):
    assert school_year_of(day) == year


@pytest.mark.parametrize("year", [2024, 2025, 2026, 2027])
def test_three_terms_that_start_on_mondays_and_do_not_overlap(year):
    periods = typical_school_year(year)
    terms = [p for p in periods if p.kind == "term"]
    assert len(terms) == 3
    assert all(t.start.weekday() == 0 and t.end.weekday() == 4 for t in terms)
    assert all(a.end < b.start for a, b in zip(terms, terms[1:], strict=False))


@pytest.mark.parametrize("year", [2025, 2026])
def test_breaks_fill_the_gaps_between_terms_and_testing_windows_sit_inside_terms(year):
    periods = typical_school_year(year)
    terms = [p for p in periods if p.kind == "term"]
    breaks = {p.name: p for p in periods if p.kind == "break"}
    assert breaks["Winter break"].start == terms[0].end + dt.timedelta(days=1)
    assert breaks["Winter break"].end == terms[1].start - dt.timedelta(days=1)
    assert breaks["Spring break"].end == terms[2].start - dt.timedelta(days=1)
    for window in (p for p in periods if p.kind == "testing"):
        assert any(t.start <= window.start and window.end <= t.end for t in terms)
