"""The Content-Security-Policy in a real Chromium: the watcher of conftest.py catches a violation,
and the pages that carry the most moving parts — the dashboards' bars, the dialogs, the error
pages and the API docs — run under the policy with none (conftest fails any test that has one)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from tests.browser import conftest
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_the_watcher_reports_inline_script_and_style_a_policy_refuses(page, live_server):
    """Without this, a watcher that heard nothing would pass every page."""
    policy = "default-src 'self'; script-src 'self'; style-src 'self'"
    body = '<p style="color: red">x</p><script>document.title = "ran"</script>'

    def fulfil(route):
        route.fulfill(
            status=200,
            body=body,
            headers={"Content-Type": "text/html", "Content-Security-Policy": policy},
        )

    page.route(live_server.url + "/csp-probe/", fulfil)
    page.goto(live_server.url + "/csp-probe/")
    assert page.title() != "ran"
    page.evaluate("0")  # one round trip: the violation events have reached the binding
    found = list(conftest.CSP_VIOLATIONS)
    conftest.CSP_VIOLATIONS.clear()  # expected here; the autouse check must not fail this test
    assert any("script-src" in v for v in found), found
    assert any("style-src" in v for v in found), found


def test_every_page_answers_with_the_policy(live_server, demo, page):
    response = page.goto(live_server.url + "/login/")
    policy = response.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ):
        assert directive in policy


def test_bars_are_placed_and_dialogs_open_without_inline_code(page, live_server, demo):
    log_in(page, live_server.url, "tom")
    bars = page.locator(".timeline .bar.term")
    assert bars.count() == 3
    widths = [bars.nth(i).bounding_box()["width"] for i in range(3)]
    assert all(w > 20 for w in widths), widths  # data-width became a real width
    rollback = page.get_by_test_id("school-rollback")
    if rollback.count():  # the district lets teachers roll back in the demo
        rollback.click()
        assert page.locator("dialog[open]").count() == 1
        page.locator("dialog[open]").get_by_role("button", name="Cancel").click()
        assert page.locator("dialog[open]").count() == 0


def test_the_error_pages_say_why_and_where_to_go(page, live_server, demo):
    log_in(page, live_server.url, "tom")
    response = page.goto(live_server.url + "/approvals/")
    assert response.status == 403
    assert page.get_by_test_id("error-reason").inner_text() == (
        "Approvals are decided by district staff."
    )
    assert page.get_by_role("link", name="Back to your dashboard").count() == 1
    response = page.goto(live_server.url + "/schools/999999/")
    assert response.status == 404
    assert page.get_by_test_id("error-404").is_visible()
    assert page.get_by_test_id("whoami").inner_text() == "Tom Teller"  # in the site's layout


def test_the_api_docs_run_under_the_policy(page, live_server, demo):
    log_in(page, live_server.url, "dana")
    page.goto(live_server.url + "/api/docs/")
    page.locator("#swagger-ui .info .title").wait_for()
    assert "EduMLOps API" in page.locator("#swagger-ui .info .title").inner_text()
    assert page.locator("#swagger-ui .opblock").count() > 10
