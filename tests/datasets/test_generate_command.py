"""`manage.py generate_district_data`: a CSV on disk, or a stored dataset version; bad options
are named."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from edumlops.datasets.models import DatasetVersion


def test_writes_a_csv_with_bias_injected(tmp_path):
    out = tmp_path / "district.csv"
    call_command(
        "generate_district_data", "--rows", "600", "--output", str(out),
        "--bias", "ses=low", "--years", "2023", "2024", "2025", stdout=io.StringIO(),
    )  # fmt: skip
    frame = pd.read_csv(out)
    assert len(frame) == 600
    assert sorted(frame["school_year"].unique()) == ["2023-24", "2024-25", "2025-26"]


@pytest.mark.django_db
def test_stores_a_dataset_version_once(district, settings, tmp_path):
    settings.DATASET_DIR = tmp_path
    args = ["generate_district_data", "--rows", "400", "--dataset", "Gen", "--district", "maple"]
    first, second = io.StringIO(), io.StringIO()
    call_command(*args, stdout=first)
    call_command(*args, stdout=second)
    assert first.getvalue().startswith("Stored Gen v1 (400 rows")
    assert second.getvalue().startswith("Already stored as Gen v1")
    assert DatasetVersion.objects.count() == 1


def test_bad_options_are_named():
    with pytest.raises(CommandError, match="--bias takes ATTRIBUTE=GROUP"):
        call_command("generate_district_data", "--bias", "english_learner")
    with pytest.raises(CommandError, match="Cannot inject bias on 'height'"):
        call_command("generate_district_data", "--bias", "height=tall", "--rows", "10")


@pytest.mark.django_db
def test_grades_store_a_version_without_a_label_whose_outcome_is_then_defined(
    district, settings, tmp_path
):
    settings.DATASET_DIR = tmp_path
    out = io.StringIO()
    call_command(
        "generate_district_data", "--rows", "600", "--grades", "--dataset", "Grades",
        "--district", "maple", stdout=out,
    )  # fmt: skip
    version = DatasetVersion.objects.get()
    assert version.role_set.label is None and "sex" in version.role_set.sensitive
    assert {"final_grade", "grade_term1", "grade_term2"} <= set(version.column_names())
    assert "at_risk" not in version.column_names()
    version.change_roles(
        {"outcome": {"name": "at_risk", "column": "final_grade", "op": "<", "value": 10}}
    )
    excluded = [e["column"] for e in version.role_set.outcome.excluded]
    assert excluded[0] == "final_grade"
    assert set(excluded[1:]) == {"grade_term1", "grade_term2"}


def test_the_grades_option_is_in_the_help():
    from edumlops.datasets.management.commands.generate_district_data import Command

    text = Command().create_parser("manage.py", "generate_district_data").format_help()
    assert "--grades" in text and "final_grade" in text and "grade_term1" in text
