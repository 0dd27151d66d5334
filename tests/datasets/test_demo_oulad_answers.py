"""The demo's answer log for knowledge tracing: a seeded sample of OULAD students' scored
assessments, stored once with its attribution and the order column marked."""

from __future__ import annotations

import pytest

from edumlops.datasets.demo import (
    OULAD_ANSWERS_NAME,
    oulad_answers,
    seed_datasets,
    seed_oulad_answers,
)
from edumlops.datasets.models import Dataset, DatasetVersion
from edumlops.ml import oulad

pytestmark = pytest.mark.skipif(
    not all(p.exists() for p in oulad.default_assessment_paths()),
    reason="the OULAD assessment files are not in data/oulad/",
)


def test_the_sample_is_every_answer_of_800_students_the_same_each_time():
    frame = oulad_answers()
    assert frame["student"].nunique() == 800
    assert list(frame.columns) == [
        "student",
        "skill",
        "item",
        "presentation",
        "date_submitted",
        "score",
        "correct",
        "order",
    ]
    whole = oulad.load_oulad_assessments()
    mine = whole[whole["student"].isin(set(frame["student"]))].reset_index(drop=True)
    assert mine.equals(frame)  # each chosen student with all their answers, in order
    assert (frame["correct"] == (frame["score"] >= 40)).all()
    assert frame.groupby("student")["order"].apply(lambda o: list(o) == list(range(len(o)))).all()
    assert 4000 < len(frame) < 8000 and frame["skill"].nunique() >= 10
    assert oulad_answers().equals(frame)
    assert set(oulad_answers(seed=1)["student"]) != set(frame["student"])


def test_seeding_stores_it_once_with_the_attribution_and_the_order_marked(ml_stores, district):
    version, created = seed_oulad_answers(district)
    frame = oulad_answers()
    assert created and version.rows == len(frame)
    dataset = version.dataset
    assert dataset.name == OULAD_ANSWERS_NAME and dataset.source == Dataset.Source.OULAD
    assert dataset.attribution == oulad.ATTRIBUTION
    assert "The scored assessments of 800 students drawn at random" in dataset.description
    assert "Left out of the whole file: 1,908 banked results" in dataset.description
    roles = version.role_set
    assert (roles.time, roles.label, roles.school) == ("order", None, None)
    again, created_again = seed_oulad_answers(district)
    assert again == version and not created_again


def test_the_demo_seeds_the_answer_log_with_the_other_datasets(ml_stores, district):
    stored = seed_datasets(district, rows=300)
    names = [version.dataset.name for version, _ in stored]
    assert names[-1] == OULAD_ANSWERS_NAME and len(names) == len(set(names))
    assert DatasetVersion.objects.filter(dataset__name=OULAD_ANSWERS_NAME).count() == 1
