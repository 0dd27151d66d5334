"""In a real headless Chromium: a teacher sees their school, district staff see the district."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_a_teacher_logs_in_and_sees_the_school_dashboard(page, live_server, demo):
    log_in(page, live_server.url, "tom")
    title = page.get_by_test_id("dashboard-title")
    assert title.inner_text() == "Riverside High School"
    assert "School dashboard" in page.locator(".lead").inner_text()
    assert page.get_by_test_id("whoami").inner_text() == "Tom Teller"
    assert page.locator(".timeline .bar.term").count() == 3
    # htmx came from the package's static files and loaded in the page
    assert page.evaluate("typeof htmx") == "object"
    nav = page.get_by_role("navigation", name="Main").inner_text()
    assert "Riverside Unified School District" not in nav
    assert "Pine Hollow Elementary" not in nav


def test_district_staff_log_in_and_see_the_district(page, live_server, demo):
    log_in(page, live_server.url, "dana")
    assert (
        page.get_by_test_id("dashboard-title").inner_text() == "Riverside Unified School District"
    )
    rows = page.get_by_test_id("schools").locator("tbody tr")
    assert rows.count() == 6
    page.get_by_role("link", name="Pine Hollow Elementary").first.click()
    assert page.get_by_test_id("dashboard-title").inner_text() == "Pine Hollow Elementary"


def test_a_wrong_password_is_told_and_nothing_opens(page, live_server, demo):
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("tom")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    assert "didn't match" in page.get_by_role("alert").inner_text()
    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login/")


def test_logging_out_returns_to_the_login_page(page, live_server, demo):
    log_in(page, live_server.url, "tara")
    assert page.get_by_test_id("dashboard-title").inner_text() == "Pine Hollow Elementary"
    page.get_by_role("button", name="Log out").click()
    assert page.url.startswith(live_server.url + "/login/")
