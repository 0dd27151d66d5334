"""Ten years of enrollment per school, grade and registration cycle: the history the enrollment
forecast (`edumlops.ml.forecast`) trains, backtests and is monitored on.

The calendar. A school year has `terms_per_year` registration cycles, each with its own head
count. Three by default — fall, spring and summer, the three terms of the district generator
(`synth.TERMS` and `synth.school_calendar`: September, January, April) — or two, fall and spring
(semesters). The season of every forecast is the number of terms a year. `year` is the calendar
year a school year starts in, and `period` reads "2019-20 fall", as the district generator's
terms read "2024-25 T1".

How the counts come about (numpy, one seed):

- Schools are the district generator's six (`synth.DEFAULT_SCHOOLS`, with their sizes) and, past
  six, made-up ones. A school serves the grades its name says: elementary K–5, middle 6–8,
  high 9–12, any other (an academy) K–12; grade 0 is kindergarten.
- Trend: each school grows or shrinks steadily, between `growth / 2` and `growth` a year (the
  sign drawn per school), and each school and grade also takes a small random step every fall
  that stays (a random walk of the level).
- Seasonality: fall is the largest count; students leave during the year (by default spring is
  96% and summer 92% of fall).
- Noise: 1.5% per term and series, independent, then rounded to whole students.
- An opening (`Opening`): the school has no students before its first term — zeros, then its
  full size — so its history is short.
- A boundary change (`BoundaryChange`): from a given term on, a share of one school's students
  in the grades both schools serve are counted at another school. The step is exact: what one
  loses the other gains, term by term, and every other count is what it would have been.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edumlops.ml.synth import DEFAULT_SCHOOLS

TERM_NAMES = {2: ("fall", "spring"), 3: ("fall", "spring", "summer")}
SEASONALITY = {2: (1.0, 0.96), 3: (1.0, 0.96, 0.92)}
GRADE_SPANS = {  # a word in the school's name -> the grades it serves
    "elementary": range(0, 6),
    "middle": range(6, 9),
    "high": range(9, 13),
}
ALL_GRADES = range(0, 13)
STUDENTS_PER_GRADE = {"elementary": 60, "middle": 150, "high": 240, "other": 35}
SIZE_FACTOR = {"small": 0.5, "medium": 1.0, "large": 1.5}
_PLACES = (
    "Oak Grove", "Maple Park", "Willow Bend", "Stone Bridge", "Elm Street", "Harbor View",
    "Meadowbrook", "Fox Run", "Brookside", "Sunset Ridge", "Clearwater", "North Field",
    "Granite Falls", "Aspen Hills", "Silver Lake", "Eastgate", "Juniper Way", "Bayside",
)  # fmt: skip
_KINDS = ("Elementary", "Elementary", "Middle School", "High School")


@dataclass(frozen=True)
class Opening:
    """A school that opens partway: no students before `year`'s `term`. None picks the default:
    the last school, opening in the fall two school years before the end."""

    school: str | None = None
    year: int | None = None
    term: str | None = None


@dataclass(frozen=True)
class BoundaryChange:
    """From `year`'s `term` on, `share` of `source`'s students (in the grades both serve) are
    counted at `target`. None picks the default: the first two schools (not the one that
    opens) that serve the same grades, else share the most, in the fall of the middle year."""

    source: str | None = None
    target: str | None = None
    year: int | None = None
    term: str | None = None
    share: float = 0.2


DEFAULT_OPENING = Opening()
DEFAULT_BOUNDARY_CHANGE = BoundaryChange()


def school_grades(name: str) -> range:
    """The grades a school serves, read from its name (K–12 when the name says nothing)."""
    words = name.lower().split()
    for word, span in GRADE_SPANS.items():
        if word in words:
            return span
    return ALL_GRADES


def _kind(name: str) -> str:
    words = name.lower().split()
    return next((word for word in GRADE_SPANS if word in words), "other")


def school_names(n: int) -> list[str]:
    """The district generator's schools first, then made-up ones (up to 6 + 18 x 4)."""
    names = [s.name for s in DEFAULT_SCHOOLS]
    for i in range(len(_PLACES) * len(_KINDS)):
        names.append(f"{_PLACES[i % len(_PLACES)]} {_KINDS[(i // len(_PLACES)) % len(_KINDS)]}")
    if n > len(names):
        raise ValueError(f"At most {len(names)} generated schools: pass their names instead.")
    return names[:n]


def period_label(year: int, term: str) -> str:
    """'2019-20 fall' for the fall term of the school year that starts in 2019."""
    return f"{year}-{(year + 1) % 100:02d} {term}"


def _term_index(label: str, value: str | None, terms: Sequence[str], default: int) -> int:
    if value is None:
        return default
    if value not in terms:
        raise ValueError(f"{label} term '{value}' is not one of {', '.join(terms)}.")
    return list(terms).index(value)


def _period_index(what: str, year: int | None, term: str | None, years: list[int], terms, default):
    if year is None:
        year = years[default]
    if year not in years:
        raise ValueError(
            f"The {what} year {year} is outside the history ({years[0]} to {years[-1]}): "
            "choose a year in it."
        )
    return years.index(year) * len(terms) + _term_index(f"The {what}", term, terms, 0)


def simulate_enrollment(
    schools: int | Sequence[str] = 6,
    grades: Sequence[int] | None = None,
    *,
    years: int = 10,
    first_year: int = 2016,
    terms_per_year: int = 3,
    seed: int = 0,
    growth: float = 0.04,
    noise: float = 0.015,
    opening: Opening | None = DEFAULT_OPENING,
    boundary_change: BoundaryChange | None = DEFAULT_BOUNDARY_CHANGE,
) -> pd.DataFrame:
    """One row per school, grade served and term: columns school, grade, year, term, period and
    enrollment (int), sorted by school, grade and time.

    `schools` is a number of schools (named by `school_names`) or their names; `grades` keeps
    only those grades (each school still serves only its own). `opening` and `boundary_change`
    default to one of each on the default schools; pass None for none."""
    if terms_per_year not in TERM_NAMES:
        raise ValueError("terms_per_year must be 2 (fall, spring) or 3 (fall, spring, summer).")
    if years < 1:
        raise ValueError("years must be at least 1.")
    if not 0 <= growth < 1 or not 0 <= noise < 0.5:
        raise ValueError("growth (yearly rate) must be in [0, 1) and noise in [0, 0.5).")
    names = school_names(schools) if isinstance(schools, int) else [str(s) for s in schools]
    if not names:
        raise ValueError("Give at least one school.")
    if len(set(names)) != len(names):
        raise ValueError("School names must be distinct.")
    terms = TERM_NAMES[terms_per_year]
    year_list = list(range(first_year, first_year + years))
    n_t = years * terms_per_year
    rng = np.random.default_rng(seed)

    sizes = {s.name: s.size for s in DEFAULT_SCHOOLS}
    keep = None if grades is None else {int(g) for g in grades}
    # the series: every school and grade it serves (before `grades` filters them, so the random
    # draws do not depend on the filter)
    series = [(name, g) for name in names for g in school_grades(name)]
    n_s = len(series)
    school_of = np.array([names.index(name) for name, _ in series])
    factor = np.array(
        [SIZE_FACTOR.get(sizes.get(n, ""), 0.0) or rng.uniform(0.6, 1.4) for n in names]
    )
    base = np.array([STUDENTS_PER_GRADE[_kind(name)] for name, _ in series]) * factor[school_of]
    base = base * rng.lognormal(0.0, 0.15, n_s)
    rate = rng.choice([-1.0, 1.0], len(names)) * rng.uniform(growth / 2, growth, len(names))
    t = np.arange(n_t)
    year_idx = t // terms_per_year
    walk = np.cumsum(rng.normal(0.0, 0.02, (n_s, years)), axis=1)
    level = base[:, None] * np.exp(
        rate[school_of][:, None] * t[None, :] / terms_per_year + walk[:, year_idx]
    )
    season = np.array(SEASONALITY[terms_per_year])[t % terms_per_year]
    counts = np.round(level * season * (1 + rng.normal(0.0, noise, (n_s, n_t)))).clip(0)
    counts = counts.astype(np.int64)

    opens: tuple[str, int] | None = None
    if opening is not None:
        school = opening.school or names[-1]
        if school not in names:
            raise ValueError(f"The opening school '{school}' is not one of the schools.")
        opens = (school, _period_index("opening", opening.year, opening.term, year_list, terms, -2))
        counts[school_of == names.index(school), : opens[1]] = 0
    if boundary_change is not None:
        counts = _move(counts, series, names, boundary_change, year_list, terms, opens)

    rows = pd.DataFrame(
        {
            "school": np.repeat([name for name, _ in series], n_t),
            "grade": np.repeat([g for _, g in series], n_t),
            "year": np.tile(np.array(year_list)[year_idx], n_s),
            "term": np.tile(np.array(terms, dtype=object)[t % terms_per_year], n_s),
            "enrollment": counts.ravel(),
        }
    )
    labels = [period_label(y, term) for y, term in zip(rows["year"], rows["term"], strict=True)]
    rows.insert(4, "period", labels)
    if keep is not None:
        rows = rows[rows["grade"].isin(keep)].reset_index(drop=True)
        if rows.empty:
            raise ValueError("No school serves those grades: choose grades from 0 (K) to 12.")
    return rows


def _move(counts, series, names, change: BoundaryChange, year_list, terms, opens) -> np.ndarray:
    """Move `change.share` of the source's students to the target from the change's term on.
    A missing source or target is filled in (see `BoundaryChange`)."""
    source, target = change.source, change.target
    if source is None or target is None:
        closed = opens[0] if opens else None
        pairs = [
            (a, b)
            for a in ([source] if source else names)
            for b in ([target] if target else names)
            if a != b and closed not in (a, b) and set(school_grades(a)) & set(school_grades(b))
        ]
        if not pairs:
            raise ValueError(
                "No two of these schools (besides the one that opens) serve a grade in common "
                "for the default boundary change: name its source and target, or pass "
                "boundary_change=None."
            )

        # the first pair (in the schools' order) serving the same grades, else sharing the most
        def fit(pair: tuple[str, str]) -> tuple[int, int]:
            a, b = set(school_grades(pair[0])), set(school_grades(pair[1]))
            return a == b, len(a & b)

        source, target = max(pairs, key=fit)
    for label, name in (("source", source), ("target", target)):
        if name not in names:
            raise ValueError(f"The boundary change's {label} school '{name}' is not one of them.")
    if source == target:
        raise ValueError("A boundary change moves students between two different schools.")
    if not 0 < change.share < 1:
        raise ValueError("The boundary change's share must be between 0 and 1 (e.g. 0.2).")
    middle = len(year_list) // 2
    start = _period_index("boundary change", change.year, change.term, year_list, terms, middle)
    if opens is not None and target == opens[0] and start < opens[1]:
        raise ValueError(
            f"The boundary change moves students to '{target}' before it opens: change on or "
            "after the opening term."
        )
    both = set(school_grades(source)) & set(school_grades(target))
    if not both:
        raise ValueError(f"'{source}' and '{target}' serve no grade in common: nothing can move.")
    index = {key: i for i, key in enumerate(series)}
    counts = counts.copy()
    for g in sorted(both):
        i, j = index[(source, g)], index[(target, g)]
        moved = np.round(change.share * counts[i, start:]).astype(np.int64)
        counts[i, start:] -= moved
        counts[j, start:] += moved
    return counts
