"""In a real headless Chromium: district staff upload rows with a numeric final grade and no
yes/no column, define "at_risk = final_grade < 10" on the dataset page, read the counts per
group and the leak warning, keep one leak on purpose, and the page never runs off the window
(the SHA-256 wraps). Screenshot: var/test-artifacts/datasets/outcome.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.datasets.models import DatasetVersion
from edumlops.ml.synth import generate_district
from tests.browser.conftest import log_in
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "datasets"


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.DATASET_DIR = tmp_path / "datasets"
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", [1280, 900])
def test_staff_define_the_outcome_from_a_grade_and_see_counts_and_leaks(
    page, live_server, demo, tmp_path, width
):
    page.set_viewport_size({"width": width, "height": 900})
    csv = tmp_path / "grades.csv"
    generate_district(1500, seed=5, grades=True).to_csv(csv, index=False)
    log_in(page, live_server.url, "dana")
    page.get_by_role("link", name="Datasets").click()
    page.get_by_label("Name").fill("Grades 2024-26")
    page.set_input_files("input[name=file]", str(csv))
    page.get_by_role("button", name="Upload").click()
    assert page.get_by_test_id("profile-title").inner_text() == "Grades 2024-26 v1"
    assert _fits(page), "the dataset page is wider than the window"
    # no yes/no column to pick as the label: only the rule can make one
    labels = page.locator("select[name=label] option").all_inner_texts()
    assert "final_grade" not in labels

    page.locator("input[name=sensitive][value=sex]").check()
    page.get_by_role("button", name="Save roles").click()

    form = page.get_by_test_id("outcome-form")
    form.get_by_label("Name").fill("at_risk")
    form.get_by_label("Yes where column").select_option("final_grade")
    form.get_by_label("Rule").select_option("<")
    form.get_by_label("Value").fill("ten")
    form.get_by_role("button", name="Define the outcome").click()
    assert "must be a number" in page.get_by_test_id("outcome-error").inner_text()

    form.get_by_label("Value").fill("10")
    form.get_by_role("button", name="Define the outcome").click()
    assert "Outcome defined" in page.locator(".message").inner_text()
    version = DatasetVersion.objects.get()
    outcome = version.role_set.outcome
    assert "final_grade < 10" in page.get_by_test_id("outcome-rule").inner_text()
    counts = page.get_by_test_id("outcome-counts").inner_text()
    assert f"{outcome.counts['positive']} of {outcome.counts['rows']} rows are positive" in counts
    groups = page.get_by_test_id("outcome-groups-sex").inner_text()
    for group in outcome.counts["by_group"]["sex"]:
        assert f"{group['group']}\t{group['rows']}\t{group['positive']}" in groups
    excluded = page.get_by_test_id("outcome-excluded").inner_text()
    assert "final_grade: the outcome at_risk is made from it" in excluded
    assert "grade_term2: it alone predicts at_risk almost perfectly" in excluded
    assert "grade_term1" in excluded
    assert page.locator("tr[data-column=grade_term2] .excluded").inner_text() == "not a feature"
    assert page.locator("select[name=label]").input_value() == "at_risk"
    assert _fits(page), "the dataset page is wider than the window"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(ARTIFACTS / ("outcome.png" if width == 1280 else f"outcome-{width}.png")),
        full_page=True,
    )

    # keep one leak on purpose: it stays a feature, with a warning
    page.locator("input[name=keep_leaky][value=grade_term1]").check()
    page.get_by_role("button", name="Update the outcome").click()
    assert "grade_term1 alone predicts" in page.get_by_test_id("leak-kept").inner_text()
    version.refresh_from_db()
    assert "grade_term1" not in version.role_set.not_features
    assert page.get_by_test_id("train-link").is_visible()
