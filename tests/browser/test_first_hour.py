"""The first hour of a real district, in a real headless Chromium with a real Celery worker on
Redis, on a generated data set with a numeric final grade and no yes/no column (issue 17):

district staff upload it and define "at_risk = final_grade < 10"; the ML lead trains from the
early-warning template; staff read the bias report on the approval card and approve; a teacher
tries a student; the ML lead replays a drift threshold on the thresholds page, runs the weekly
monitor now and reads the alert with the rule and baseline it used; the teacher opens the model
card of the model in use at his school.

Screenshots: var/test-artifacts/first-hour/*.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from edumlops.datasets.models import DatasetVersion
from edumlops.deployments.models import Deployment
from edumlops.ml.synth import generate_district
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from tests.browser.conftest import log_in
from tests.conftest import ROOT, put_today_in_term
from tests.workflows.conftest import wait_for
from workflows.models import Run, Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "first-hour"


@pytest.fixture
def demo(transactional_db, ml_stores):
    """The demo district with no data."""
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def page(wide_page):
    return wide_page


def _log_in(page, base: str, username: str) -> None:
    """As another person: the previous one's session is dropped first."""
    page.context.clear_cookies()
    log_in(page, base, username)


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _fits(page) -> bool:
    """Nothing runs off the window, and no card's content runs past its card."""
    return page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth && [...document"
        ".querySelectorAll('.card')].every(c => c.scrollWidth <= c.clientWidth + 1)"
    )


def _finished(run: Run, timeout: float = 300) -> str:
    return wait_for(
        lambda: (s := Run.objects.get(pk=run.pk).status) not in ("queued", "running") and s,
        timeout,
        "the run to stop or pause",
    )


def _define_the_outcome(page, base: str, csv) -> DatasetVersion:
    _log_in(page, base, "dana")
    page.get_by_role("link", name="Datasets").click()
    page.get_by_label("Name").fill("Grades 2024-26")
    page.set_input_files("input[name=file]", str(csv))
    page.get_by_role("button", name="Upload").click()
    page.get_by_test_id("profile-title").wait_for()
    page.locator("input[name=sensitive][value=sex]").check()
    page.locator("input[name=sensitive][value=ses]").check()
    page.get_by_label("School column").select_option("school")
    page.get_by_role("button", name="Save roles").click()
    form = page.get_by_test_id("outcome-form")
    form.get_by_label("Name").fill("at_risk")
    form.get_by_label("Yes where column").select_option("final_grade")
    form.get_by_label("Rule").select_option("<")
    form.get_by_label("Value").fill("10")
    form.get_by_role("button", name="Define the outcome").click()
    assert "Outcome defined" in page.locator(".message").inner_text()
    assert "final_grade < 10" in page.get_by_test_id("outcome-rule").inner_text()
    excluded = page.get_by_test_id("outcome-excluded").inner_text()
    assert "grade_term2: it alone predicts at_risk almost perfectly" in excluded
    assert _fits(page), "the dataset page runs off its cards"
    _shot(page, "1-outcome")
    return DatasetVersion.objects.get()


def _train_from_the_template(page, base: str, version: DatasetVersion) -> Run:
    _log_in(page, base, "admin")
    page.goto(base + "/workflows/templates/")
    form = page.get_by_test_id("use-early-warning")
    form.get_by_label("Workflow name").fill("Early warning from grades")
    form.get_by_label("Dataset version").select_option(str(version.pk))
    form.get_by_label("Riverside High School").check()
    form.get_by_role("button", name="Use this template").click()
    page.wait_for_selector("#nodes [data-node-id]")
    page.get_by_role("button", name="Run", exact=True).click()
    workflow = Workflow.objects.get(name="Early warning from grades")
    return wait_for(lambda: Run.objects.filter(workflow=workflow).first(), 15)


def _approve_as_staff(page, base: str, run: Run) -> None:
    """Staff approve what waits (the pilot always; the bias gate when it is inconclusive),
    reading the bias report once on each approval card."""
    _log_in(page, base, "dana")
    for i in range(3):
        status = _finished(run)
        if status != "waiting_approval":
            break
        page.goto(base + "/")
        page.get_by_role("link", name="Approvals").first.click()
        card = page.locator(f"[data-testid=approval][data-run='{run.pk}']").first
        card.wait_for()
        assert card.get_by_test_id("fairness").count() == 1  # the report, once
        if not card.get_by_test_id("fairness").is_visible():
            card.locator("[data-testid=bias-details] > summary").click()  # folded on a pilot's
            card.get_by_test_id("fairness").wait_for()
        expect(card.get_by_test_id("fairness")).to_contain_text("held-out students")
        report = card.get_by_test_id("fairness").inner_text()
        assert "at-risk students" in report and "held-out students" in report, report
        assert "false-negative rate" in report, report
        for code in ("false_negative_rate", "max_difference", "insufficient"):
            assert code not in card.inner_text()
        _shot(page, f"2-approval-{i}")
        card.get_by_label("Comment").fill("Read the bias report; pilot first.")
        card.get_by_role("button", name="Approve").click()
        page.wait_for_selector(".message")
    assert Run.objects.get(pk=run.pk).status == "succeeded"


def _store_weeks_of_predictions(model: ModelVersion, school: School, district) -> None:
    """Three school weeks of this term at the pilot school, kept the way the daily job keeps
    them (counts on the model's reference bins); in the last two, attendance fell by half."""
    from edumlops.ml import drift
    from edumlops.monitoring.models import DailyAggregate
    from tests.monitoring.test_replay import term_days

    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    days = term_days(district, 3)
    assert len(days) == 3
    for i, day in enumerate(days):
        frame = generate_district(300, seed=40 + i, grades=True)
        if i >= 1:
            frame["attendance_rate"] = frame["attendance_rate"] * 0.5
        frame["__prediction__"] = 0.3
        DailyAggregate.objects.create(
            school=school, day=day, model_version=model, source="central", count=len(frame),
            bands={"low": len(frame)}, histograms=drift.histograms(reference, frame),
        )  # fmt: skip


def _watch_from_the_template(page, base: str, version: DatasetVersion) -> Workflow:
    _log_in(page, base, "admin")
    page.goto(base + "/workflows/templates/")
    form = page.get_by_test_id("use-watch-model")
    form.get_by_label("Workflow name").fill("Weekly watch")
    form.get_by_label("Dataset version").select_option(str(version.pk))
    form.get_by_role("button", name="Use this template").click()
    page.wait_for_selector("#nodes [data-node-id]")
    return Workflow.objects.get(name="Weekly watch")


def test_the_first_hour_of_a_district(page, live_server, real_worker, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    csv = tmp_path / "grades.csv"
    frame = generate_district(1500, seed=5, grades=True)
    frame.to_csv(csv, index=False)

    version = _define_the_outcome(page, base, csv)
    run = _train_from_the_template(page, base, version)
    _approve_as_staff(page, base, run)
    model = ModelVersion.objects.get(workflow_run=run)
    assert "final_grade" not in model.feature_spec().columns
    rhs = School.objects.get(code="rhs")
    assert Deployment.objects.filter(model_version=model, schools=rhs).exists()

    # a teacher tries a student on his school's page
    _log_in(page, base, "tom")
    card = page.get_by_test_id("try-student")
    card.get_by_test_id("try-student-form").wait_for()
    row = frame.iloc[0]
    for name in model.feature_spec().columns:
        value = row[name]
        card.get_by_test_id(f"try-{name}").fill("" if value != value else str(value))
    card.get_by_test_id("try-submit").click()
    card.get_by_test_id("try-band").wait_for()
    assert card.get_by_test_id("try-reasons").locator("li").count() >= 1
    _shot(page, "3-try-a-student")

    # the teacher opens the card of the model in use at his school
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    page.get_by_test_id("model-in-use-card").click()
    assert "final_grade < 10" in page.get_by_test_id("outcome-rule").inner_text()
    assert _fits(page), "the model card runs off its cards"
    _shot(page, "4-teacher-card")

    # the ML lead sets up the weekly monitor from its template (real outcomes: the same version)
    district = rhs.district
    put_today_in_term(district)
    _store_weeks_of_predictions(model, rhs, district)
    watch = _watch_from_the_template(page, base, version)

    # the teacher replays a drift threshold on the thresholds page before saving it
    _log_in(page, base, "tom")
    page.goto(base + "/thresholds/")
    page.get_by_label("Drift sensitivity", exact=True).first.fill("0.15")
    result = page.get_by_test_id("replay-drift.psi_threshold").first.get_by_test_id("replay-result")
    result.wait_for()
    replayed = result.inner_text()
    assert replayed.startswith("With 0.15:") and "alert" in replayed, replayed
    assert "attendance_rate" in result.locator("table").inner_text()
    assert "Riverside High School" in result.locator("table").inner_text()
    _shot(page, "5-replay")
    assert watch.versions.count() == 1  # replaying saves nothing

    # the ML lead runs the weekly monitor now and reads the alert: the rule and the baseline
    _log_in(page, base, "admin")
    page.goto(f"{base}/workflows/{watch.pk}/")
    page.wait_for_selector("#nodes [data-node-id]")
    page.get_by_role("button", name="Run", exact=True).click()
    run = wait_for(lambda: Run.objects.filter(workflow=watch).first(), 15)
    assert _finished(run) == "succeeded", real_worker.output()[-3000:]
    page.goto(f"{base}/runs/{run.pk}/")
    started = page.get_by_test_id("run-started").inner_text()
    assert started.startswith("Started by hand by Ada Admin"), started
    _shot(page, "6-run-now")
    alert = Alert.objects.get(school=rhs, monitor="drift", cause="attendance_rate")
    page.goto(base + "/alerts/")
    row = page.locator(f"[data-alert='{alert.pk}']")
    text = row.inner_text()
    assert "training data" in text, text  # the baseline used: there is no last year here
    assert "last year" not in text
    assert "PSI" in text or "Jensen" in text, text  # the rule that decided
    assert "insufficient_data" not in page.content()
    _shot(page, "7-alert")

    # the school page charts drift with the rule in force and the predictions per day
    page.goto(f"{base}/schools/{rhs.pk}/")
    page.get_by_test_id("drift-chart").wait_for()
    assert page.get_by_test_id("drift-threshold-text").inner_text().startswith("Alert above PSI")
    assert "__prediction__" not in page.get_by_test_id("open-alerts").inner_text()
    _shot(page, "8-school")
