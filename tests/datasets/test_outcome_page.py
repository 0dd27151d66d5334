"""The dataset page's outcome form: defines the rule (the same checks as the API), shows the
counts and why each column is left out, keeps the leak override, and removes the rule."""

from __future__ import annotations

import pytest
from django.test import Client

from edumlops.audit.models import AuditRecord
from edumlops.datasets.models import DatasetVersion, ingest
from tests.datasets.test_outcome_api import grades_csv


@pytest.fixture(autouse=True)
def _dataset_dir(settings, tmp_path):
    settings.DATASET_DIR = tmp_path / "datasets"


@pytest.fixture
def version(district) -> DatasetVersion:
    from edumlops.ml.datasets import Roles

    version, _ = ingest(
        district=district, name="Grades", data=grades_csv(), roles=Roles(sensitive=["sex"])
    )
    return version


@pytest.fixture
def browser(staff) -> Client:
    c = Client()
    c.force_login(staff)
    return c


def url(version) -> str:
    return f"/datasets/versions/{version.pk}/"


def define(browser, version, **fields):
    body = {"form": "outcome", "name": "at_risk", "column": "G3", "op": "<", "value": "10"}
    return browser.post(url(version), {**body, **fields})


def test_defining_the_outcome_shows_rule_counts_and_exclusions(browser, version, staff):
    response = define(browser, version)
    assert response.status_code == 302
    page = browser.get(url(version)).content.decode()
    version.refresh_from_db()
    outcome = version.role_set.outcome
    assert version.role_set.label == "at_risk"
    assert "G3 &lt; 10" in page
    assert f"{outcome.counts['positive']} of {outcome.counts['rows']} rows are positive" in page
    assert 'data-testid="outcome-groups-sex"' in page
    assert "it alone predicts at_risk almost perfectly" in page
    assert "the outcome at_risk is made from it" in page
    assert '<option value="at_risk" selected>' in page
    assert AuditRecord.objects.filter(action="dataset_roles", actor=staff).count() == 1


def test_between_and_categories_from_the_form(browser, version):
    define(browser, version, op="between", value="8", value_hi="12")
    version.refresh_from_db()
    assert version.role_set.outcome.value == [8.0, 12.0]
    define(browser, version, name="care", column="Mjob", op="in", value="health, teacher")
    version.refresh_from_db()
    assert version.role_set.outcome.value == ["health", "teacher"]


def test_a_bad_rule_is_shown_with_its_field_and_changes_nothing(browser, version):
    response = define(browser, version, value="ten")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Value: The value must be a number" in page
    assert 'value="ten"' in page  # what was typed stays in the form
    version.refresh_from_db()
    assert version.role_set.outcome is None


def test_keeping_a_leak_and_removing_the_rule(browser, version):
    define(browser, version, keep_leaky="G2")
    version.refresh_from_db()
    assert [e["column"] for e in version.role_set.outcome.excluded] == ["G3"]
    assert "but is kept as a feature" in browser.get(url(version)).content.decode()
    browser.post(url(version), {"form": "outcome", "remove": "1"})
    version.refresh_from_db()
    assert version.role_set.outcome is None and version.role_set.label is None


def test_saving_roles_keeps_the_outcome(browser, version):
    define(browser, version)
    browser.post(
        url(version),
        {"label": "at_risk", "positive": "yes", "sensitive": ["sex", "Mjob"], "school": "school"},
    )
    version.refresh_from_db()
    assert version.role_set.outcome is not None
    assert set(version.role_set.outcome.counts["by_group"]) == {"sex", "Mjob"}


def test_a_teacher_cannot_post_the_form(version, teacher_a):
    c = Client()
    c.force_login(teacher_a)
    response = define(c, version)
    assert response.status_code in (403, 404)
