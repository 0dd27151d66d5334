"""The demo's enrollment history: ten years per school, grade and term at the six demo schools,
with Mill Road Elementary opening and a boundary change, stored once with its roles marked."""

from __future__ import annotations

import pandas as pd

from edumlops.datasets.demo import ENROLLMENT_NAME, enrollment_history, seed_enrollment
from edumlops.datasets.models import Dataset
from edumlops.ml.synth import DEFAULT_SCHOOLS


def totals(frame: pd.DataFrame, school: str) -> pd.Series:
    return frame[frame["school"] == school].groupby("period", sort=False)["enrollment"].sum()


def test_the_history_has_the_demo_schools_an_opening_and_a_boundary_change():
    frame = enrollment_history()
    assert list(frame.columns) == ["school", "grade", "year", "term", "period", "enrollment"]
    assert set(frame["school"]) == {s.name for s in DEFAULT_SCHOOLS}
    assert frame["period"].nunique() == 30 and frame["year"].agg(["min", "max"]).tolist() == [
        2016,
        2025,
    ]
    mill = totals(frame, "Mill Road Elementary")
    opened = list(mill.index).index("2024-25 fall")
    assert (mill.iloc[:opened] == 0).all() and (mill.iloc[opened:] > 0).all()
    riverside = totals(frame, "Riverside High School")
    change = list(riverside.index).index("2021-22 fall")
    fall_before, fall_after = riverside.iloc[change - 3], riverside.iloc[change]
    assert fall_after < 0.9 * fall_before  # a fifth of its students are counted at Hillview
    assert enrollment_history().equals(frame)


def test_seeding_stores_it_once_with_the_school_grade_and_term_marked(ml_stores, district):
    version, created = seed_enrollment(district)
    assert created and version.rows == 1080
    assert version.dataset.name == ENROLLMENT_NAME
    assert version.dataset.source == Dataset.Source.GENERATED
    assert "Mill Road Elementary opening in the fall of 2024" in version.dataset.description
    roles = version.role_set
    assert (roles.school, roles.grade, roles.time, roles.label) == (
        "school",
        "grade",
        "period",
        None,
    )
    again, created_again = seed_enrollment(district)
    assert again == version and not created_again
