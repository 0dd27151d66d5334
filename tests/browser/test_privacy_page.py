"""In a real headless Chromium: district staff read the Privacy page (the remaining budget as a
bar, the ledger); a district admin changes a cohort's budget (an error first, naming the field);
a teacher's school page shows a small group's recall noised, then — with no budget left for a
new check — suppressed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edumlops.datasets.models import Dataset
from edumlops.monitoring.models import PerformanceCheck
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyBudget, PrivacyRelease
from edumlops.registry.models import ModelVersion
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD, ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "privacy"


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def world(transactional_db, district, school_a, teacher_a, staff, district_admin):
    cohort = Dataset.objects.create(district=district, name="Class of 2027")
    ledger.spend(
        district=district, dataset=cohort, epsilon=1.5, kind="training",
        what="private logistic regression", actor=staff, mechanism="diffprivlib",
    )  # fmt: skip
    model = ModelVersion.objects.create(
        district=district, name="ew", version="1", run_id="r1", algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )  # fmt: skip
    return {"cohort": cohort, "model": model, "school": school_a}


def _check(world, day: str, low_positives: int) -> PerformanceCheck:
    return PerformanceCheck.objects.create(
        school=world["school"],
        checked_at=f"{day}T10:00:00Z",
        model_version=world["model"],
        rows=400,
        metrics={"recall": 0.75, "positives": 60, "found": 45},
        groups=[
            {"group": "ses=low", "recall": 0.75, "positives": low_positives, "found": 3},
            {"group": "ses=high", "recall": 0.75, "positives": 56, "found": 42},
        ],
    )


def test_staff_read_the_ledger_and_an_admin_changes_a_budget(page, live_server, world):
    log_in(page, live_server.url, "staff", PASSWORD)
    page.get_by_role("link", name="Privacy", exact=True).click()
    cohort = page.locator(f'[data-testid="cohort"][data-cohort="{world["cohort"].pk}"]')
    assert "2.5 of ε 4 left" in cohort.get_by_test_id("budget-numbers").inner_text()
    used = cohort.locator("rect.budget-used")
    assert float(used.get_attribute("width")) == pytest.approx(240 * 1.5 / 4, abs=0.1)
    row = cohort.get_by_test_id("release")
    assert "private logistic regression" in row.inner_text() and "staff" in row.inner_text()
    assert page.get_by_test_id("budget-form").count() == 0  # staff read; admins set
    _shot(page, "privacy-page-staff.png")

    page.get_by_role("button", name="Log out").click()
    log_in(page, live_server.url, "district_admin", PASSWORD)
    page.goto(live_server.url + "/privacy/")
    form = page.get_by_test_id("budget-form")
    form.get_by_label("Cohort").select_option(label="Class of 2027")
    form.get_by_label("Total ε per school year").fill("1")
    form.get_by_label("Most ε one release may spend").fill("0")
    form.get_by_label("Smallest count shown (minimum cell size)").fill("5")
    page.get_by_test_id("save-budget").click()
    assert "use a number above 0" in page.get_by_test_id("error-max_per_release").inner_text()
    page.get_by_label("Most ε one release may spend").fill("1")
    page.get_by_test_id("save-budget").click()
    cohort = page.locator(f'[data-testid="cohort"][data-cohort="{world["cohort"].pk}"]')
    # 1.5 already spent of a new total of 1: nothing left, the bar full
    assert "0 of ε 1 left" in cohort.get_by_test_id("budget-numbers").inner_text()
    assert float(cohort.locator("rect.budget-used").get_attribute("width")) == 240
    assert PrivacyBudget.objects.get(dataset=world["cohort"]).min_cell == 5
    _shot(page, "privacy-page-admin.png")


def test_a_teachers_school_page_shows_a_small_group_noised_then_suppressed(
    page, live_server, world, staff
):
    _check(world, "2026-10-01", 4)
    log_in(page, live_server.url, "teacher_a", PASSWORD)
    page.goto(f"{live_server.url}/schools/{world['school'].pk}/")
    low = page.locator('[data-testid="recall-row"][data-group="ses=low"]')
    assert low.get_attribute("data-state") == "noised"
    assert "noised, ε 0.5" in low.inner_text()
    assert "differential privacy" in page.get_by_test_id("recall-privacy").first.inner_text()
    _shot(page, "school-page-noised.png")
    assert PrivacyRelease.objects.filter(kind="aggregate").count() == 1

    # no budget left for the live predictions: the next check's small group is not shown
    ledger.set_budget(
        district=world["school"].district, dataset=None, total_epsilon=0.5,
        max_per_release=0.5, min_cell=10, actor=staff,
    )  # fmt: skip
    _check(world, "2026-11-01", 3)
    page.reload()
    low = page.locator('[data-testid="recall-row"][data-group="ses=low"]')
    assert low.get_attribute("data-state") == "suppressed"
    assert "not shown: fewer than 10 students" in low.inner_text()
    high = page.locator('[data-testid="recall-row"][data-group="ses=high"]')
    assert high.get_attribute("data-state") == "exact"
    _shot(page, "school-page-suppressed.png")
    assert PrivacyRelease.objects.filter(kind="aggregate").count() == 1
