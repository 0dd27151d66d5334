"""In a real headless Chromium: a teacher opens the Thresholds page, changes their school's drift
sensitivity and saves (htmx swaps in the result); the bias-gate gap, set by district staff, is
read-only; the change is in the audit trail with its old and new value."""

from __future__ import annotations

from pathlib import Path

import pytest

from edumlops.audit.models import AuditRecord
from tests.conftest import PASSWORD, ROOT
from tests.workflows.test_thresholds import monitors_graph
from workflows.models import Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts"


@pytest.fixture
def workflow(transactional_db, district, school_a, teacher_a, platform_admin) -> Workflow:
    workflow = Workflow.objects.create(district=district, name="Watch the model")
    workflow.save_version(monitors_graph(), "first", platform_admin)
    return workflow


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_teacher_changes_a_threshold_and_cannot_change_a_read_only_one(
    page, live_server, workflow, teacher_a
):
    _log_in(page, live_server.url, "teacher_a")
    page.get_by_role("link", name="Thresholds", exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text() == "Thresholds — Alder School"

    sensitivity = page.get_by_label("Drift sensitivity")
    assert sensitivity.input_value() == "0.2"
    help_ids = sensitivity.get_attribute("aria-describedby").split()
    described = " ".join(page.locator(f"#{i}").inner_text() for i in help_ids)
    assert "population stability index" in described
    assert "Allowed: a number more than 0 and at most 2" in described

    gap = page.get_by_label("Bias-gate gap")
    assert gap.is_disabled() and not gap.is_editable()
    gap_help = " ".join(
        page.locator(f"#{i}").inner_text() for i in gap.get_attribute("aria-describedby").split()
    )
    assert "Read-only: set by district staff" in gap_help
    with pytest.raises(Exception, match="not enabled|disabled|Timeout"):  # noqa: PT011
        gap.fill("0.5", timeout=1000)

    sensitivity.fill("0.15")
    page.get_by_label("Reason (optional, kept in the audit trail)").fill("start of term")
    page.get_by_role("button", name="Save thresholds").click()
    saved = page.get_by_test_id("saved")
    saved.wait_for()
    assert "Drift sensitivity: psi_threshold 0.2 → 0.15" in saved.inner_text()
    page.locator("[data-testid='saved']:focus").wait_for()  # focus moved
    assert page.get_by_label("Drift sensitivity").input_value() == "0.15"
    recent = page.get_by_test_id("recent-changes").inner_text()
    assert "teacher_a changed Drift sensitivity from 0.2 to 0.15 (version 2)" in recent
    assert page.get_by_label("Bias-gate gap").is_disabled()
    _shot(page, "thresholds-teacher-saved.png")

    record = AuditRecord.objects.get(action=AuditRecord.Action.THRESHOLD)
    assert record.actor_name == "teacher_a" and record.reason == "start of term"
    assert (record.before["value"], record.after["value"]) == (0.2, 0.15)
    assert record.after["school"] == "a" and record.after["field"] == "psi_threshold"
    assert workflow.runnable_version().number == 2
    node = next(n for n in workflow.runnable_version().graph["nodes"] if n["id"] == "bias")
    assert "max_difference" not in node["params"]  # the read-only one did not move


def test_an_out_of_range_value_is_shown_on_its_field_and_nothing_is_saved(
    page, live_server, workflow, teacher_a
):
    _log_in(page, live_server.url, "teacher_a")
    page.goto(live_server.url + "/thresholds/")
    ratio = page.get_by_label("Latency alert ratio")
    # skip the browser's own range check: the server must refuse it just as clearly
    page.locator("form[hx-post]").evaluate("form => form.setAttribute('novalidate', '')")
    ratio.fill("50")
    page.get_by_role("button", name="Save thresholds").click()
    error = page.locator(".field-error")
    error.wait_for()
    assert error.inner_text() == (
        "Error: Latency alert ratio (max_ratio): 50 × normal is out of range. "
        "Enter a number from 1.1 to 20."
    )
    ratio = page.get_by_label("Latency alert ratio")
    assert ratio.get_attribute("aria-invalid") == "true"
    page.locator("[name='latency.max_ratio']:focus").wait_for()
    _shot(page, "thresholds-teacher-error.png")
    assert workflow.versions.count() == 1
    assert not AuditRecord.objects.filter(action=AuditRecord.Action.THRESHOLD).exists()


def test_district_staff_change_a_district_value_for_every_school(
    page, live_server, workflow, staff, district, school_b
):
    _log_in(page, live_server.url, "staff")
    page.goto(live_server.url + "/thresholds/")
    assert page.get_by_label("Show values for").input_value() == f"district-{district.pk}"
    gap = page.get_by_label("Bias-gate gap")
    assert gap.is_editable()
    gap.fill("0.05")
    page.get_by_role("button", name="Save thresholds").click()
    page.get_by_test_id("saved").wait_for()
    assert "max_difference 0.1 → 0.05" in page.get_by_test_id("saved").inner_text()
    _shot(page, "thresholds-staff-district.png")
    node = next(n for n in workflow.runnable_version().graph["nodes"] if n["id"] == "bias")
    assert node["params"]["max_difference"] == 0.05
    record = AuditRecord.objects.get(action=AuditRecord.Action.THRESHOLD)
    assert record.after["school"] is None and record.actor_name == "staff"

    page.get_by_label("Show values for").select_option(label="Birch School")
    page.get_by_role("button", name="Show").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Thresholds — Birch School"
    assert page.get_by_label("Bias-gate gap").is_disabled()  # one value for the district
    assert page.get_by_label("Bias-gate gap").input_value() == "0.05"


def test_zero_is_refused_by_the_browser_and_by_the_server_in_the_full_page(
    page, live_server, workflow, teacher_a
):
    """Drift sensitivity must be more than 0: the browser refuses 0 before sending, and when it
    is sent anyway the error shows inside the whole page (menu, stylesheet, title kept)."""
    _log_in(page, live_server.url, "teacher_a")
    page.goto(live_server.url + "/thresholds/")
    sensitivity = page.get_by_label("Drift sensitivity")
    sensitivity.fill("0")
    assert sensitivity.evaluate("el => el.checkValidity()") is False
    assert "Out of range" in sensitivity.evaluate("el => el.validationMessage")
    page.get_by_role("button", name="Save thresholds").click()
    assert page.locator(".field-error").count() == 0  # not sent
    assert workflow.versions.count() == 1

    page.locator("form[hx-post]").evaluate("form => form.setAttribute('novalidate', '')")
    page.get_by_role("button", name="Save thresholds").click()
    error = page.locator(".field-error")
    error.wait_for()
    assert "Drift sensitivity (psi_threshold): 0 is out of range" in error.inner_text()
    assert page.title() == "Thresholds · EduMLOps"
    assert page.get_by_role("navigation", name="Main").is_visible()
    assert page.get_by_role("heading", level=1).inner_text() == "Thresholds — Alder School"
    assert page.locator("link[rel=stylesheet][href$='/app.css']").count() == 1  # not nested
    assert page.locator("section.thresholds").count() == 1  # swapped in place, not nested
    _shot(page, "thresholds-zero-refused.png")
    assert page.locator("section.thresholds section.thresholds").count() == 0
    assert workflow.versions.count() == 1


def test_a_form_posted_without_htmx_answers_the_whole_page(client, workflow, teacher_a):
    client.force_login(teacher_a)
    page = client.get("/thresholds/")
    version = workflow.runnable_version().number
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        answer = client.post(
            "/thresholds/",
            {"workflow": workflow.pk, "version": version, "drift.psi_threshold": "0"},
            **headers,
        )
        assert answer.status_code == 400
        html = answer.content.decode()
        assert "<title>Thresholds · EduMLOps</title>" in html and 'aria-label="Main"' in html
        assert "is out of range" in html
    assert page.status_code == 200


# --- replay before you save ---------------------------------------------------------------------
@pytest.fixture
def district(district):
    """Today inside a term (as tests/monitoring/conftest.py does): the replay reads a term."""
    from tests.conftest import put_today_in_term

    put_today_in_term(district)
    return district


@pytest.fixture
def replay_data(ml_stores, district, school_a, staff):
    """Three weeks of stored aggregates of Alder School, one with attendance far down."""
    import pandas as pd

    from edumlops.deployments import services
    from edumlops.ml import drift
    from edumlops.monitoring.models import DailyAggregate
    from tests.deployments.conftest import make_model
    from tests.monitoring.test_checks import students
    from tests.monitoring.test_replay import term_days

    model = make_model(district, seed=0)
    services.roll_out(model, scope="district", user=staff)
    reference = {k: drift.FeatureReference.from_dict(v) for k, v in model.drift_reference.items()}
    days = term_days(district, 3)
    for i, day in enumerate(days):
        frame = pd.DataFrame(students(model, 200, seed=10 + i, attendance_shift=0.3 * (i == 1)))
        frame["__prediction__"] = 0.3
        DailyAggregate.objects.create(
            school=school_a, day=day, model_version=model, source="central", count=200,
            bands={"low": 200}, histograms=drift.histograms(reference, frame),
        )  # fmt: skip
    return days


def test_typing_a_value_replays_the_last_term_before_saving(
    page, live_server, workflow, teacher_a, replay_data
):
    _log_in(page, live_server.url, "teacher_a")
    page.goto(live_server.url + "/thresholds/")
    who = page.get_by_test_id("who-drift.js_threshold").inner_text()
    assert "teachers of a school may give their school its own" in who
    assert page.get_by_label("Significance level (p-value)").is_disabled()  # district staff's
    page.get_by_label("Drift sensitivity", exact=True).fill("0.15")
    result = page.get_by_test_id("replay-drift.psi_threshold").get_by_test_id("replay-result")
    result.wait_for()
    text = result.inner_text()
    assert text.startswith("With 0.15:") and "alert" in text
    assert "the value in force now, 0.2, is not changed until you save" in text
    assert "attendance_rate" in result.locator("table").inner_text()
    assert "Alder School" in result.locator("table").inner_text()
    path = ARTIFACTS / "monitoring"
    path.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path / "thresholds-replay.png"), full_page=True)
    assert workflow.versions.count() == 1  # nothing saved


# --- the drift chart draws the rule in force ----------------------------------------------------
def test_the_school_drift_chart_draws_the_schools_own_threshold_and_folds_the_rest(
    page, live_server, workflow, district, school_a, teacher_a, staff, ml_stores
):
    import datetime as dt

    from django.utils import timezone

    from edumlops.core import clock
    from edumlops.deployments import services
    from edumlops.monitoring.models import DriftCheck
    from tests.deployments.conftest import make_model
    from workflows import thresholds

    services.roll_out(make_model(district, seed=0), scope="district", user=staff)
    thresholds.apply_changes(workflow, teacher_a, school_a, {"drift.psi_threshold": "0.15"})
    names = [f"feature_{i}" for i in range(8)]
    for week in range(6):
        day = clock.today() - dt.timedelta(days=7 * (5 - week))
        DriftCheck.objects.create(
            school=school_a, group=school_a.name, baseline="the training data",
            checked_at=timezone.make_aware(dt.datetime.combine(day, dt.time(6))),
            window_start=day - dt.timedelta(days=13), window_end=day, status="no_drift",
            features=[
                {"name": n, "psi": round(0.02 * (i + 1) * (1 + week / 5), 4), "js": 0.01,
                 "drifted": False}
                for i, n in enumerate(names)
            ],
        )  # fmt: skip
    _log_in(page, live_server.url, "teacher_a")
    page.goto(live_server.url + f"/schools/{school_a.pk}/")
    chart = page.get_by_test_id("drift-chart")
    assert chart.locator("polyline").count() == 5
    labels = chart.get_by_test_id("drift-series-label").all_text_contents()
    assert [label.split()[0] for label in labels] == [f"feature_{i}" for i in (7, 6, 5, 4, 3)]
    folded = page.get_by_test_id("drift-folded").inner_text()
    assert folded.startswith("3 more features not drawn") and "feature_0" in folded
    said = page.get_by_test_id("drift-threshold-text").inner_text()
    assert said.startswith("Alert above PSI 0.15 (this school's own value, Watch the model)")
    assert "Jensen–Shannon distance is above 0.1" in said
    line = chart.get_by_test_id("drift-threshold")
    y = float(line.get_attribute("y1"))
    ticks = chart.locator("text").all_text_contents()
    assert "alert above 0.15" in ticks
    assert 12 < y < 206  # inside the plot
    assert chart.locator("rect[data-kind='term']").count() >= 1  # the school calendar shaded
    path = ARTIFACTS / "monitoring"
    path.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("drift-chart-figure").screenshot(path=str(path / "drift-chart.png"))
