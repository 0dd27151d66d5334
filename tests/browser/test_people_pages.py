"""In a real headless Chromium, each person sees what concerns them: a teacher opens the card of
the model his school uses from the Models page; district staff's home shows the approval waiting
for them and the newest alert; the notifications menu counts unread ones and opens their page;
the audit trail reads field: old → new and never runs off the right edge; /favicon.ico answers.
Screenshots go to var/test-artifacts/people/."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from edumlops.audit.models import record
from edumlops.deployments.models import Deployment
from edumlops.monitoring.models import Alert, DailyAggregate
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District, School
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from workflows.models import Notification, Run, StepRun, Workflow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "people"
GRAPH = {
    "nodes": [
        {"id": "start", "kind": "manual_trigger", "version": 1, "params": {}},
        {"id": "ok", "kind": "approval_gate", "version": 1, "params": {}, "label": "Pilot OK?"},
    ],
    "edges": [{"source": "start", "source_port": "start", "target": "ok", "target_port": "input"}],
}


@pytest.fixture
def world(transactional_db):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    district = District.objects.get(slug="riverside")
    school = School.objects.get(name="Riverside High School")
    users = get_user_model().objects
    dana, admin = users.get(username="dana"), users.get(username="admin")
    model = ModelVersion.objects.create(
        district=district,
        name="early-warning",
        version="3",
        run_id="run-3",
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )
    Deployment.objects.create(district=district, model_version=model, scope="district")
    today = dt.date.today()
    for days_ago, count in ((0, 42), (1, 17), (6, 30), (13, 8)):
        DailyAggregate.objects.create(
            school=school, day=today - dt.timedelta(days=days_ago), model_version=model, count=count
        )
    Alert.objects.create(
        district=district,
        school=school,
        monitor="drift",
        cause="attendance_rate",
        severity="critical",
        message="attendance_rate drifted (PSI 0.31 against the training data)",
    )
    workflow = Workflow.objects.create(district=district, name="Spring retrain", owner=admin)
    version = workflow.save_version(GRAPH, "first", admin)
    run = Run.objects.create(
        workflow=workflow, version=version, trigger_node="start", status="waiting_approval"
    )
    StepRun.objects.create(run=run, node_id="start", kind="manual_trigger", status="succeeded")
    step = StepRun.objects.create(
        run=run, node_id="ok", kind="approval_gate", status="waiting_approval"
    )
    Notification.objects.create(
        user=dana,
        step=step,
        title="Approval needed: Pilot OK? in Spring retrain",
        body="Let the run go on past this point",
        link="/approvals/",
        link_label="Decide in the approvals inbox",
    )
    Notification.objects.create(
        user=dana, title="Model ready", link=f"/runs/{run.pk}/", link_label=f"Open run #{run.pk}"
    )
    record(
        action="threshold_change",
        actor=dana,
        district=district,
        target_type="threshold",
        target_id="psi",
        target_label="Drift threshold at Riverside High School",
        before={"psi": 0.2, "note": "set at installation"},
        after={"psi": 0.15, "note": "x" * 300, "sha256": "f" * 64 + "e" * 64},
    )
    return {"run": run, "school": school, "model": model}


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_teacher_opens_the_card_of_his_schools_model(page, live_server, world):
    log_in(page, live_server.url, "tom")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    assert "No model yet" not in page.content()
    page.get_by_test_id("model-in-use-card").click()
    assert page.get_by_test_id("card-title").inner_text() == ("Model card: early-warning version 3")
    assert "Riverside High School" in page.get_by_test_id("in-use-at").inner_text()
    assert page.get_by_test_id("make-champion").count() == 0
    assert page.get_by_test_id("download-md").count() == 0
    page.screenshot(path=str(ARTIFACTS / "teacher-card.png"), full_page=True)
    # the school page links to the same card, and shows predictions per day with dates
    page.goto(f"{live_server.url}/schools/{world['school'].pk}/")
    assert page.get_by_test_id("school-model-card").get_attribute("href") == (
        f"/schools/{world['school'].pk}/model/"
    )
    chart = page.get_by_test_id("volume-chart")
    assert chart.locator("rect.bar").count() == 30
    dates = chart.get_by_test_id("volume-chart-date").all_text_contents()
    assert dates[-1] == dt.date.today().strftime("%-d %b") and len(dates) == 5
    assert chart.locator("text.tick.y").all_text_contents() == ["0", "50", "100"]
    assert "97 in all" in page.locator("h3", has_text="Predictions per day").inner_text()
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "school-volume.png"), full_page=True)
    # another version's card stays the district's
    page.goto(f"{live_server.url}/models/{world['model'].pk}/")
    assert "Nothing here" in page.content()


def test_district_staff_home_shows_the_approval_waiting_and_the_newest_alert(
    page, live_server, world
):
    log_in(page, live_server.url, "dana")
    pending = page.get_by_test_id("pending-approvals")
    assert "Pilot OK?" in pending.inner_text() and "Spring retrain" in pending.inner_text()
    alerts = page.get_by_test_id("recent-alerts").inner_text()
    assert "attendance_rate" in alerts and "Riverside High School" in alerts
    assert "critical" in alerts and "open" in alerts
    assert "insufficient_data" not in page.content() and "no_drift" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "district-home.png"), full_page=True)
    pending.get_by_test_id("decide-link").click()
    assert page.url == live_server.url + "/approvals/"
    assert page.get_by_test_id("approval").count() == 1


def test_the_notifications_menu_counts_unread_and_opens_their_pages(page, live_server, world):
    log_in(page, live_server.url, "dana")
    menu = page.get_by_test_id("notifications-menu")
    assert menu.get_by_test_id("unread-count").inner_text() == "2"
    menu.locator("summary").click()
    assert menu.get_by_role("link", name="Model ready").is_visible()
    page.screenshot(path=str(ARTIFACTS / "notifications-menu.png"))
    menu.get_by_test_id("all-notifications").click()
    assert page.url == live_server.url + "/notifications/"
    items = page.get_by_test_id("notification")
    assert items.count() == 2
    links = page.get_by_test_id("notification-link")
    assert links.all_text_contents() == [
        f"Open run #{world['run'].pk}",
        "Decide in the approvals inbox",
    ]
    assert "/api/" not in page.content() and "run run" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "notifications.png"), full_page=True)
    links.nth(0).click()
    assert page.url == f"{live_server.url}/runs/{world['run'].pk}/"
    assert (
        page.get_by_test_id("notifications-menu").get_by_test_id("unread-count").inner_text() == "1"
    )
    page.goto(live_server.url + "/notifications/")
    page.get_by_test_id("mark-all-read").click()
    assert page.get_by_test_id("notifications-menu").get_by_test_id("unread-count").count() == 0
    assert page.locator('[data-testid="notification"][data-read="false"]').count() == 0


def test_the_audit_trail_reads_old_to_new_and_fits_the_window(page, live_server, world):
    page.set_viewport_size({"width": 1024, "height": 800})
    log_in(page, live_server.url, "dana")
    page.goto(live_server.url + "/audit/")
    change = page.get_by_test_id("change").filter(has_text="psi").first.inner_text()
    assert change == "psi: 0.2 → 0.15"
    assert "{'psi'" not in page.content()
    assert _fits(page), "the audit page is wider than the window"
    page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)


def test_favicon_ico_answers(page, live_server, world):
    answer = page.goto(live_server.url + "/favicon.ico")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
