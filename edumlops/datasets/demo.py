"""The demo's datasets: a generated district and the real OULAD data, with their roles marked."""

from __future__ import annotations

import pandas as pd

from edumlops.datasets.models import Dataset, DatasetVersion, ingest, store_generated
from edumlops.ml import oulad
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.schools.models import District

GENERATED_NAME = "Riverside students (synthetic)"
OULAD_NAME = "Open University students (OULAD)"
OULAD_ROLES = Roles(
    label="final_result",
    positive=["Fail", "Withdrawn"],
    sensitive=["imd_band", "disability", "gender", "age_band"],
    time="code_presentation",
)


def seed_datasets(district: District, rows: int = 6000) -> list[tuple[DatasetVersion, bool]]:
    """Store both demo datasets (idempotent: the same bytes find the same versions)."""
    stored = [store_generated(district, GENERATED_NAME, generate_district(rows, seed=0))]
    path = oulad.default_path()
    if path.exists():
        frame = oulad.load_student_info(path).drop(columns=["at_risk"], errors="ignore")
        stored.append(
            ingest(
                district=district,
                name=OULAD_NAME,
                data=frame.to_csv(index=False).encode(),
                roles=OULAD_ROLES,
                original_name="studentInfo.csv",
                source=Dataset.Source.OULAD,
                description=(
                    "32,593 registrations on 7 Open University modules, 2013–2014. Loaded with "
                    "the spreadsheet damage repaired (imd_band '20-Oct' is '10-20%'; missing "
                    "bands are 'unknown'). At risk = Fail or Withdrawn."
                ),
                attribution=oulad.ATTRIBUTION,
            )
        )
    stored.append(seed_enrollment(district))
    stored.append(seed_short_answers(district))
    if all(p.exists() for p in oulad.default_assessment_paths()):
        stored.append(seed_oulad_answers(district))
    return stored


ENROLLMENT_NAME = "Enrollment per school, grade and term (synthetic)"
ENROLLMENT_ROLES = Roles(school="school", grade="grade", time="period")
ENROLLMENT_OPENING = ("Mill Road Elementary", 2024, "fall")
ENROLLMENT_BOUNDARY = ("Riverside High School", "Hillview High", 2021, "fall")


def enrollment_history(seed: int = 0) -> pd.DataFrame:
    """Ten school years (2016-17 to 2025-26) of fall, spring and summer counts for the six demo
    schools and the grades each serves: Mill Road Elementary opens in the fall of 2024, and from
    the fall of 2021 a fifth of Riverside High School's students are counted at Hillview High."""
    from edumlops.ml.enrollment_synth import BoundaryChange, Opening, simulate_enrollment

    return simulate_enrollment(
        6,
        seed=seed,
        opening=Opening(*ENROLLMENT_OPENING),
        boundary_change=BoundaryChange(*ENROLLMENT_BOUNDARY),
    )


def seed_enrollment(district: District) -> tuple[DatasetVersion, bool]:
    """Store the demo's enrollment history (idempotent: the same bytes find the same version):
    what the "Enrollment forecast, retrained at each term start" template trains on."""
    return ingest(
        district=district,
        name=ENROLLMENT_NAME,
        data=enrollment_history().to_csv(index=False).encode(),
        roles=ENROLLMENT_ROLES,
        original_name="enrollment.csv",
        source=Dataset.Source.GENERATED,
        description=(
            "Ten school years (2016-17 to 2025-26) of enrollment per school, grade and term "
            "(fall, spring, summer) at the six demo schools, made by "
            "edumlops.ml.enrollment_synth: steady trends per school, a random walk per grade, "
            "fewer students as the year goes on, Mill Road Elementary opening in the fall of "
            "2024 (zeros before), and a boundary change that moves a fifth of Riverside High "
            "School's students to Hillview High from the fall of 2021."
        ),
    )


SHORT_ANSWERS_NAME = "Short answers scored by teachers (synthetic)"
SHORT_ANSWERS_ROLES = Roles(sensitive=["group"])


def short_answers(seed: int = 0) -> pd.DataFrame:
    """4,000 answers to four questions (1,000 each, scored 0 to 3) from
    edumlops.ml.short_answer_synth: every answer scored by one teacher (score_1), three in ten
    by a second one too (score_2), a home-language group per student; no planted rater bias.
    The generator's true score is left out: a school has only its teachers' scores."""
    from edumlops.ml.short_answer_synth import simulate_answers

    frame = simulate_answers(prompts=4, answers_per_prompt=1000, seed=seed)
    return frame.drop(columns=["true_score"])


def seed_short_answers(district: District) -> tuple[DatasetVersion, bool]:
    """Store the demo's scored short answers (idempotent: the same bytes find the same version):
    what the "Short-answer scoring with human agreement gate" template trains on."""
    return ingest(
        district=district,
        name=SHORT_ANSWERS_NAME,
        data=short_answers().to_csv(index=False).encode(),
        roles=SHORT_ANSWERS_ROLES,
        original_name="short_answers.csv",
        source=Dataset.Source.GENERATED,
        description=(
            "4,000 short answers to four questions (photosynthesis, the water cycle, fractions, "
            "democracy), each scored 0 to 3 by a teacher (score_1) and three in ten scored again "
            "by a second teacher (score_2, empty otherwise), made by "
            "edumlops.ml.short_answer_synth: an answer earns a point per key idea it names, "
            "some words are misspelt, and teachers are off by one point a quarter of the time. "
            "The group column (home language) is marked sensitive for the bias gate; no rater "
            "bias is planted."
        ),
    )


OULAD_ANSWERS_NAME = "Open University assessments as answers (OULAD sample)"
OULAD_ANSWERS_ROLES = Roles(time="order")
OULAD_ANSWERS_STUDENTS = 800


def oulad_answers(students: int = OULAD_ANSWERS_STUDENTS, seed: int = 0) -> pd.DataFrame:
    """The scored assessments of a seeded random sample of OULAD students as an answer log
    (edumlops.ml.oulad.load_oulad_assessments): student, skill (module and assessment type),
    item, presentation, date_submitted, score, correct (score >= 40) and order."""
    import numpy as np

    answers = oulad.load_oulad_assessments()
    ids = np.sort(answers["student"].unique())
    chosen = np.random.default_rng(seed).choice(ids, size=min(students, len(ids)), replace=False)
    return answers[answers["student"].isin(chosen)].reset_index(drop=True)


def seed_oulad_answers(district: District) -> tuple[DatasetVersion, bool]:
    """Store the demo's answer log from OULAD (idempotent: the same sample finds the same
    version): what the "Adaptive practice: retrain mastery weekly" template trains on."""
    frame = oulad_answers()
    dropped = frame.attrs.get("dropped", {})
    return ingest(
        district=district,
        name=OULAD_ANSWERS_NAME,
        data=frame.to_csv(index=False).encode(),
        roles=OULAD_ANSWERS_ROLES,
        original_name="studentAssessment.csv",
        source=Dataset.Source.OULAD,
        description=(
            f"The scored assessments of {frame['student'].nunique()} students drawn at random "
            "(seed 0) from OULAD's studentAssessment.csv, as an answer log for knowledge "
            f"tracing: {len(frame):,} answers, one per submitted assessment. The skill is the "
            "module and its assessment type (assessments.csv: e.g. 'FFF TMA', tutor-marked, "
            "'FFF CMA', computer-marked, 'DDD Exam'); correct = a score of at least 40, the "
            "OU's pass mark; order = each student's assessments by presentation, then day "
            f"submitted. Left out of the whole file: {dropped.get('banked', 0):,} banked "
            "results (carried over from an earlier presentation, not new answers) and "
            f"{dropped.get('without_score', 0):,} rows without a score."
        ),
        attribution=oulad.ATTRIBUTION,
    )
