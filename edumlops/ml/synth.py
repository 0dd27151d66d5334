"""A synthetic school district: one row per student and term, realistic enough to train, gate and
monitor on, and honest about how it is made.

How the rows come about (everything vectorised with numpy):

- Schools differ in size and locality; students are spread over schools by size, have a grade
  (6–12) that goes up by one each school year, and sensitive attributes: socioeconomic status,
  English learner, disability or accessibility needs, sex.
- Each student has a latent engagement `z` (lower for low SES, slightly lower with a disability);
  the features — attendance rate, assignment submission rate, weekly LMS logins, quiz average,
  prior GPA — are noisy views of `z` with **seasonal patterns** (attendance dips in the winter
  term, submissions and logins sag in the last term) and **cohort drift** from one school year to
  the next (more LMS use, slightly lower attendance, more English learners).
- `at_risk` is drawn from a logistic model of the latent engagement, not of the observed
  features, so a model learns a real but imperfect signal.
- **Injected bias** (`Bias`): for the chosen group the features are recorded as healthier than
  the student really is (measurement bias: e.g. attendance taken loosely, quizzes in a language
  the student reads well), so a model trained on everyone misses more at-risk students of that
  group — a higher false-negative rate, which the bias gate must catch.
- A free-text `teacher_note` and a repeated `student_id` are there so that Minimise data has
  something to remove.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SchoolSpec:
    slug: str
    name: str
    locality: str  # urban / suburban / rural
    size: str  # small / medium / large
    weight: float  # share of the district's students
    engagement: float  # school effect on latent engagement


DEFAULT_SCHOOLS: tuple[SchoolSpec, ...] = (
    SchoolSpec("rhs", "Riverside High School", "urban", "large", 0.30, 0.0),
    SchoolSpec("phe", "Pine Hill Elementary", "suburban", "medium", 0.18, 0.2),
    SchoolSpec("lms", "Lakeside Middle School", "suburban", "medium", 0.20, 0.1),
    SchoolSpec("cca", "Cedar Creek Academy", "rural", "small", 0.08, -0.2),
    SchoolSpec("hvh", "Hillview High", "urban", "large", 0.18, -0.1),
    SchoolSpec("mre", "Mill Road Elementary", "rural", "small", 0.06, -0.1),
)

SENSITIVE_VALUES = {
    "ses": ("low", "middle", "high"),
    "english_learner": ("yes", "no"),
    "disability": ("none", "learning", "physical", "sensory"),
    "sex": ("F", "M", "X"),
}
TERMS = (  # (suffix, start month, start day, year offset)
    ("T1", 9, 2, 0),
    ("T2", 1, 6, 1),
    ("T3", 4, 14, 1),
)

_NOTE_OPENINGS = (
    "Quiet in class but",
    "Very engaged in discussions and",
    "Missed several homework deadlines and",
    "Came back from a long absence and",
    "Works well in groups and",
    "Struggles with reading tasks and",
    "Often late to first period and",
    "Asked for extra help this term and",
)
_NOTE_ENDINGS = (
    "should be checked on next month.",
    "is making steady progress.",
    "needs a call with the family.",
    "would benefit from tutoring.",
    "has improved since the last report.",
    "is doing fine overall.",
    "could use more challenge in maths.",
    "should join the study club.",
)


@dataclass(frozen=True)
class Bias:
    """Record the features of `attribute == group` as healthier than they are, by `strength`
    standard deviations of latent engagement (1.0 is a strong, clearly unfair effect)."""

    attribute: str = "english_learner"
    group: str = "yes"
    strength: float = 1.0

    def check(self) -> None:
        if self.attribute not in SENSITIVE_VALUES:
            raise ValueError(
                f"Cannot inject bias on '{self.attribute}': choose one of "
                f"{', '.join(SENSITIVE_VALUES)}."
            )
        if self.group not in SENSITIVE_VALUES[self.attribute]:
            raise ValueError(
                f"'{self.group}' is not a value of {self.attribute}: choose one of "
                f"{', '.join(SENSITIVE_VALUES[self.attribute])}."
            )
        if not 0 <= self.strength <= 5:
            raise ValueError(f"Bias strength {self.strength} is out of range: use 0 to 5.")


def _choice(rng: np.random.Generator, values: Sequence[str], p: Sequence[float], n: int):
    p = np.asarray(p, dtype=float)
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=p / p.sum())]


def generate_district(
    n_rows: int = 5000,
    *,
    school_years: Sequence[int] = (2024, 2025),
    schools: Sequence[SchoolSpec] = DEFAULT_SCHOOLS,
    seed: int = 0,
    bias: Bias | None = None,
    drift: float = 1.0,
    grades: bool = False,
) -> pd.DataFrame:
    """`n_rows` student-term rows over `school_years` (each year has three terms).

    `grades=True` gives the rows a numeric `final_grade` (0–20) instead of the yes/no `at_risk`
    column — the outcome must then be defined from it (e.g. at risk = final_grade < 10) — plus
    two earlier-term grades, `grade_term1` and `grade_term2`, that predict it almost perfectly
    (a leak the outcome check must catch)."""
    if n_rows < 1:
        raise ValueError("n_rows must be at least 1.")
    if not school_years:
        raise ValueError("Give at least one school year, e.g. 2024.")
    if not schools:
        raise ValueError("Give at least one school.")
    if drift < 0:
        raise ValueError("drift must be 0 (none) or more.")
    if bias is not None:
        bias.check()
    years = sorted(int(y) for y in school_years)
    rng = np.random.default_rng(seed)
    n_terms = len(years) * len(TERMS)
    n_students = max(1, -(-n_rows // n_terms))

    # --- students ------------------------------------------------------------------------------
    weights = np.array([s.weight for s in schools], dtype=float)
    school_idx = rng.choice(len(schools), size=n_students, p=weights / weights.sum())
    grade0 = rng.integers(6, 13, size=n_students)
    ses = _choice(rng, SENSITIVE_VALUES["ses"], (0.3, 0.45, 0.25), n_students)
    el_share = 0.2
    el = np.where(rng.random(n_students) < el_share, "yes", "no").astype(object)
    disability = _choice(rng, SENSITIVE_VALUES["disability"], (0.86, 0.09, 0.03, 0.02), n_students)
    sex = _choice(rng, SENSITIVE_VALUES["sex"], (0.49, 0.49, 0.02), n_students)
    school_effect = np.array([s.engagement for s in schools])[school_idx]
    ses_effect = np.select([ses == "low", ses == "high"], [-0.25, 0.2], 0.0)
    z_student = (
        rng.normal(0, 1, n_students)
        + school_effect
        + ses_effect
        - 0.05 * (el == "yes")
        - 0.2 * (disability != "none")
    )
    ids = np.array([f"S{seed % 100:02d}{i:06d}" for i in range(n_students)], dtype=object)

    # --- one row per student and term -----------------------------------------------------------
    s = np.repeat(np.arange(n_students), n_terms)
    t = np.tile(np.arange(n_terms), n_students)
    keep = np.sort(rng.permutation(len(s))[:n_rows])
    s, t = s[keep], t[keep]
    n = len(s)
    year_idx = t // len(TERMS)
    term_idx = t % len(TERMS)
    grade = np.minimum(grade0[s] + year_idx, 12)
    # engagement wanders a little from term to term
    z = z_student[s] + rng.normal(0, 0.35, n)

    # seasonal pattern and cohort drift
    season_att = np.array([0.01, -0.025, -0.01])[term_idx]
    season_sub = np.array([0.02, 0.0, -0.04])[term_idx]
    season_log = np.array([0.5, 0.0, -0.8])[term_idx]
    drift_years = drift * year_idx

    z_seen = z.copy()
    if bias is not None and bias.strength > 0:
        member = {
            "ses": ses,
            "english_learner": el,
            "disability": disability,
            "sex": sex,
        }[bias.attribute][s] == bias.group
        z_seen = np.where(member, z + bias.strength * 1.6, z)

    def noisy(scale: float) -> np.ndarray:
        return rng.normal(0, scale, n)

    attendance = np.clip(
        0.91 + 0.045 * z_seen + season_att - 0.01 * drift_years + noisy(0.03), 0.3, 1.0
    )
    submission = np.clip(0.80 + 0.10 * z_seen + season_sub + noisy(0.08), 0.0, 1.0)
    logins = np.clip(
        np.round(6 + 1.8 * z_seen + season_log + 1.5 * drift_years + noisy(1.5), 1), 0, None
    )
    quiz = np.clip(np.round(72 + 9 * z_seen + noisy(8), 1), 0, 100)
    gpa = np.clip(np.round(2.9 + 0.45 * z_seen + noisy(0.35), 2), 0.0, 4.0)
    # real exports have gaps
    for column, share in ((logins, 0.03), (quiz, 0.02), (gpa, 0.04)):
        column[rng.random(n) < share] = np.nan

    risk = -1.6 - 1.5 * z + 0.15 * (grade >= 9) + noisy(0.3)
    at_risk = np.where(rng.random(n) < 1 / (1 + np.exp(-risk)), "yes", "no")

    school_year = np.array([f"{y}-{(y + 1) % 100:02d}" for y in years], dtype=object)[year_idx]
    term = np.char.add(np.char.add(school_year.astype(str), " "), [TERMS[i][0] for i in term_idx])
    starts = np.array(
        [[f"{y + off}-{month:02d}-{day:02d}" for _, month, day, off in TERMS] for y in years],
        dtype=object,
    )
    term_start = starts[year_idx, term_idx]
    openings = np.asarray(_NOTE_OPENINGS, dtype=object)[rng.integers(0, len(_NOTE_OPENINGS), n)]
    endings = np.asarray(_NOTE_ENDINGS, dtype=object)[rng.integers(0, len(_NOTE_ENDINGS), n)]
    weeks = rng.integers(1, 13, n)
    marks = np.nan_to_num(quiz, nan=0).astype(int)
    note = [
        f"{a} {b} (week {w}, last quiz {m})"
        for a, b, w, m in zip(openings, endings, weeks, marks, strict=True)
    ]
    # teachers leave most notes empty
    note = np.where(rng.random(n) < 0.6, note, "")

    frame = pd.DataFrame(
        {
            "student_id": ids[s],
            "school": np.array([x.name for x in schools], dtype=object)[school_idx[s]],
            "locality": np.array([x.locality for x in schools], dtype=object)[school_idx[s]],
            "school_size": np.array([x.size for x in schools], dtype=object)[school_idx[s]],
            "grade": grade,
            "school_year": school_year,
            "term": term,
            "term_start": term_start,
            "ses": ses[s],
            "english_learner": el[s],
            "disability": disability[s],
            "sex": sex[s],
            "attendance_rate": np.round(attendance, 3),
            "submission_rate": np.round(submission, 3),
            "lms_logins_weekly": logins,
            "quiz_average": quiz,
            "prior_gpa": gpa,
            "teacher_note": note,
            "at_risk": at_risk,
        }
    )
    if grades:
        # the same latent risk, on a 0–20 scale: about the same share below 10 as at risk
        final = np.clip(np.round(11.5 - 2.6 * risk - 2.0 + noisy(0.8)), 0, 20)
        frame = frame.drop(columns="at_risk")
        frame["grade_term1"] = np.clip(np.round(final + noisy(0.9)), 0, 20)
        frame["grade_term2"] = np.clip(np.round(final + noisy(0.6)), 0, 20)
        frame["final_grade"] = final
    frame.loc[frame["teacher_note"] == "", "teacher_note"] = None
    return frame.sort_values(["term", "school", "student_id"], kind="stable").reset_index(drop=True)


# --- weekly rows, for monitoring --------------------------------------------------------------
def school_calendar(years: Sequence[int]) -> list[tuple[str, str, dt.date, dt.date]]:
    """(kind, name, start, end) of three terms and the breaks between them, per school year."""
    periods = []
    for y in years:
        terms = [
            ("Autumn", dt.date(y, 9, 2), dt.date(y, 12, 19)),
            ("Spring", dt.date(y + 1, 1, 6), dt.date(y + 1, 3, 27)),
            ("Summer", dt.date(y + 1, 4, 14), dt.date(y + 1, 6, 26)),
        ]
        for name, start, end in terms:
            periods.append(("term", f"{name} {y}-{(y + 1) % 100:02d}", start, end))
        periods.append(("break", f"Winter break {y}", dt.date(y, 12, 20), dt.date(y + 1, 1, 5)))
        periods.append(
            ("break", f"Spring break {y + 1}", dt.date(y + 1, 3, 28), dt.date(y + 1, 4, 13))
        )
    return periods


def generate_weeks(
    n_students: int = 300,
    *,
    school_years: Sequence[int] = (2024, 2025),
    schools: Sequence[SchoolSpec] = DEFAULT_SCHOOLS,
    seed: int = 0,
    dip: float = 1.0,
    shift: dict[str, tuple[dt.date, dt.date, float]] | None = None,
) -> pd.DataFrame:
    """One row per student and school week (Mondays of term weeks), with a strong start-of-term
    pattern: attendance and LMS logins dip in the first two weeks of every term (`dip` scales
    it). `shift` injects a real change: {feature: (from, to, amount)} adds `amount` to the
    feature on those dates."""
    rng = np.random.default_rng(seed)
    weights = np.array([s.weight for s in schools], dtype=float)
    school_idx = rng.choice(len(schools), size=n_students, p=weights / weights.sum())
    z = rng.normal(0, 1, n_students) + np.array([s.engagement for s in schools])[school_idx]
    grade0 = rng.integers(6, 13, size=n_students)
    mondays, weeks_in, year_of = [], [], []
    for i, (kind, _, start, end) in enumerate(school_calendar(school_years)):
        if kind != "term":
            continue
        day = start - dt.timedelta(days=start.weekday())
        week = 0
        while day <= end:
            mondays.append(day)
            weeks_in.append(week)
            year_of.append(i // 5)
            day += dt.timedelta(days=7)
            week += 1
    n_weeks = len(mondays)
    s = np.repeat(np.arange(n_students), n_weeks)
    w = np.tile(np.arange(n_weeks), n_students)
    n = len(s)
    early = np.asarray(weeks_in)[w] < 2
    noise = rng.normal(0, 1, (3, n))
    frame = pd.DataFrame(
        {
            "week": np.asarray(mondays, dtype="datetime64[D]")[w],
            "school": np.array([x.name for x in schools], dtype=object)[school_idx[s]],
            "locality": np.array([x.locality for x in schools], dtype=object)[school_idx[s]],
            "grade": np.minimum(grade0[s] + np.asarray(year_of)[w], 12),
            "attendance_rate": np.clip(
                0.93 + 0.04 * z[s] - 0.10 * dip * early + 0.03 * noise[0], 0, 1
            ).round(3),
            "lms_logins_weekly": np.clip(
                6 + 1.5 * z[s] - 3.0 * dip * early + 1.2 * noise[1], 0, None
            ).round(1),
            "quiz_average": np.clip(72 + 9 * z[s] + 6 * noise[2], 0, 100).round(1),
        }
    )
    for feature, (start, end, amount) in (shift or {}).items():
        when = (frame["week"] >= np.datetime64(start)) & (frame["week"] <= np.datetime64(end))
        frame.loc[when, feature] = frame.loc[when, feature] + amount
    return frame
