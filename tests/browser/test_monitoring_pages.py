"""In a real headless Chromium: after a drift check, a teacher's school page shows the drift
chart with one line per feature, the alert that fired and why, and the prediction volume."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.deployments import services
from edumlops.schools.models import District, School
from tests.deployments.conftest import make_model
from tests.monitoring.test_drift_monitor import monitor, record, students

pytestmark = pytest.mark.browser


@pytest.fixture
def checked(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    model = make_model(district, seed=0)
    deployment = services.roll_out(model, scope="district")
    school = School.objects.get(name="Riverside High School")
    rows = students(300, model, seed=3)
    for row in rows:
        if row["attendance_rate"] is not None:
            row["attendance_rate"] = max(0.0, row["attendance_rate"] - 0.15)
    record(deployment, school, rows)
    from django.contrib.auth import get_user_model

    dana = get_user_model().objects.get(username="dana")
    monitor(district, dana, baseline="training")
    monitor(district, dana, baseline="training")  # two checks: a line, not a point
    return school


def test_the_school_page_shows_drift_alerts_and_volume(page, live_server, checked):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill("edumlops-demo")
    page.get_by_role("button", name="Log in").click()
    chart = page.get_by_test_id("drift-chart")
    assert chart.locator("polyline").count() == 5  # the top features; the rest folded
    labels = chart.get_by_test_id("drift-series-label").all_text_contents()
    assert any(label.startswith("attendance_rate ") for label in labels)
    alerts = page.get_by_test_id("open-alerts").inner_text()
    assert "attendance_rate" in alerts and "drifted" in alerts
    assert page.get_by_test_id("volume-chart").locator("rect[height]").count() == 30
    heights = (
        page.get_by_test_id("volume-chart")
        .locator("rect")
        .evaluate_all("rects => rects.map(r => parseFloat(r.getAttribute('height')))")
    )
    assert max(heights) > 0
    page.get_by_role("link", name="Alerts").first.click()
    assert "attendance_rate" in page.get_by_test_id("alerts").inner_text()


def test_the_district_page_shows_each_schools_model_alerts_and_latency(page, live_server, checked):
    import datetime as dt

    from edumlops.monitoring.models import DailyAggregate

    deployment = services.resolve(checked)
    for days_ago in range(10):
        for profile, p95 in (("old laptop", 40.0), ("server", 3.0)):
            DailyAggregate.objects.create(
                school=checked, day=dt.date.today() - dt.timedelta(days=days_ago),
                model_version=deployment.model_version, source="edge:n1", device_profile=profile,
                count=10, bands={}, histograms={}, latency_p50_ms=p95 / 2, latency_p95_ms=p95,
            )  # fmt: skip
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("edumlops-demo")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Riverside Unified School District").click()
    table = page.get_by_test_id("school-status").inner_text()
    assert "Riverside High School" in table and "v1" in table and "drift" in table
    chart = page.get_by_test_id("latency-chart")
    assert chart.locator("polyline.series").count() == 2
    assert set(chart.locator("text.series-label").all_text_contents()) == {"old laptop", "server"}
