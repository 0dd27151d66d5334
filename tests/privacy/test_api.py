"""The privacy API and page: budgets, setting them, the ledger, who may do what, bad input."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.datasets.models import Dataset
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyBudget

pytestmark = pytest.mark.django_db


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def cohort(district):
    return Dataset.objects.create(district=district, name="Class of 2027")


@pytest.fixture
def spent(district, cohort, staff):
    return ledger.spend(
        district=district, dataset=cohort, epsilon=1.0, kind="training", what="private model",
        actor=staff, mechanism="diffprivlib LogisticRegression",
    )  # fmt: skip


def test_staff_read_each_cohorts_standing(district, cohort, staff, spent):
    answer = _api(staff).get("/api/privacy/budgets/")
    assert answer.status_code == 200
    rows = {r["cohort"]: r for r in answer.json()}
    assert set(rows) == {"Live predictions", "Class of 2027"}
    row = rows["Class of 2027"]
    assert row["spent_epsilon"] == 1.0 and row["remaining_epsilon"] == 3.0
    assert row["own_budget"] is False and row["school_year"] == ledger.school_year(district)


def test_an_admin_sets_a_cohorts_budget_and_the_default(district, cohort, district_admin):
    answer = _api(district_admin).put(
        f"/api/privacy/budgets/{cohort.pk}/",
        {"total_epsilon": 2, "max_per_release": 0.5, "min_cell": 5},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["total_epsilon"] == 2.0 and answer.json()["own_budget"] is True
    budget = PrivacyBudget.objects.get(dataset=cohort)
    assert (budget.max_per_release, budget.min_cell) == (0.5, 5)
    assert AuditRecord.objects.filter(action="privacy_budget").count() == 1
    answer = _api(district_admin).put(
        "/api/privacy/budgets/default/", {"total_epsilon": 6, "max_per_release": 1}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["dataset"] is None
    assert PrivacyBudget.objects.get(dataset=None, district=district).total_epsilon == 6.0


def test_staff_may_read_but_not_set_budgets(cohort, staff):
    answer = _api(staff).put(
        "/api/privacy/budgets/default/", {"total_epsilon": 6, "max_per_release": 1}, format="json"
    )
    assert answer.status_code == 403 and "manage" in answer.json()["detail"]


def test_teachers_and_other_districts_see_nothing(cohort, teacher_a, outsider, spent):
    answer = _api(teacher_a).get("/api/privacy/budgets/")
    assert answer.status_code == 403
    assert answer.json()["detail"] == "The privacy ledger is for district staff and admins."
    assert _api(teacher_a).get("/api/privacy/releases/").status_code == 403
    # staff of another district: their own (empty) ledger, and no door to this one's cohort
    assert _api(outsider).get("/api/privacy/releases/").json() == []
    assert _api(outsider).get(f"/api/privacy/releases/?dataset={cohort.pk}").status_code == 404
    answer = _api(outsider).put(
        f"/api/privacy/budgets/{cohort.pk}/",
        {"total_epsilon": 9, "max_per_release": 1},
        format="json",
    )
    assert answer.status_code == 404


def test_bad_budgets_are_refused_naming_the_field(cohort, district_admin):
    answer = _api(district_admin).put(
        f"/api/privacy/budgets/{cohort.pk}/",
        {"total_epsilon": -1, "max_per_release": 0},
        format="json",
    )
    assert answer.status_code == 400
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"total_epsilon", "max_per_release"}
    answer = _api(district_admin).put(
        "/api/privacy/budgets/everyone/", {"total_epsilon": 1, "max_per_release": 1}, format="json"
    )
    assert answer.status_code == 400 and "use a dataset id or" in answer.json()["detail"]
    assert not PrivacyBudget.objects.filter(dataset=cohort).exists()


def test_the_ledger_lists_a_years_releases_per_cohort(district, cohort, staff, spent):
    answer = _api(staff).get(f"/api/privacy/releases/?dataset={cohort.pk}")
    assert answer.status_code == 200
    (release,) = answer.json()
    assert release["epsilon"] == 1.0 and release["kind"] == "training"
    assert release["actor_name"] == "staff" and release["cohort"] == "Class of 2027"
    assert _api(staff).get("/api/privacy/releases/?dataset=live").json() == []
    past = ledger.school_year(district) - 1
    assert _api(staff).get(f"/api/privacy/releases/?year={past}").json() == []
    bad = _api(staff).get("/api/privacy/releases/?dataset=all&year=soon")
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"dataset", "year"}


def test_the_api_is_in_the_openapi_schema(staff):
    schema = _api(staff).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/privacy/budgets/",
        "/api/privacy/budgets/{cohort}/",
        "/api/privacy/releases/",
    ):
        assert path in schema["paths"], path
    assert "put" in schema["paths"]["/api/privacy/budgets/{cohort}/"]


# --- the page ----------------------------------------------------------------------------------
def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_the_bar_the_ledger_and_a_form_for_admins(
    cohort, staff, district_admin, spent
):
    page = _client(staff).get("/privacy/").content.decode()
    assert 'data-testid="budget-bar"' in page and "private model" in page
    assert "3</strong> of ε 4 left" in page
    assert 'data-testid="budget-form"' not in page  # staff read, admins set
    assert 'data-testid="budget-form"' in _client(district_admin).get("/privacy/").content.decode()
    assert _client(staff).post("/privacy/", {"cohort": "default"}).status_code == 403


def test_the_form_names_the_field_and_the_fix(cohort, district_admin):
    answer = _client(district_admin).post(
        "/privacy/",
        {"cohort": str(cohort.pk), "total_epsilon": "lots", "max_per_release": "0", "min_cell": ""},
    )
    assert answer.status_code == 400
    text = answer.content.decode()
    assert "Total ε: give a number such as 4 or 0.5." in text
    assert "Maximum per release: use a number above 0, such as 1." in text
    assert "Minimum cell size: give a whole number of students, such as 10." in text
    assert not PrivacyBudget.objects.filter(dataset=cohort).exists()
    ok = _client(district_admin).post(
        "/privacy/",
        {"cohort": str(cohort.pk), "total_epsilon": "2", "max_per_release": "1", "min_cell": "5"},
    )
    assert ok.status_code == 302
    assert PrivacyBudget.objects.get(dataset=cohort).total_epsilon == 2.0


def test_teachers_have_no_privacy_page(teacher_a):
    assert _client(teacher_a).get("/privacy/").status_code == 403
