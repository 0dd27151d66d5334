"""In a real headless Chromium: district staff roll a model out to the district, pilot another
on one school, promote it, then press Rollback — the dialog says what will change — and every
school is back on the first version; a teacher rolls back their own school from its page."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.deployments import rollout, services
from edumlops.schools.models import District, School
from tests.browser.conftest import log_in
from tests.deployments.conftest import make_model

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db, ml_stores, monkeypatch):
    # the platform clock runs ahead: a pilot started on the page has run its minimum days
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", str(rollout.DEFAULT_MIN_PILOT_DAYS + 1))
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    return district, make_model(district, seed=0), make_model(district, seed=1)


def _versions(district):
    return {s.name: services.resolve(s).model_version.version for s in district.schools.all()}


def test_roll_out_pilot_promote_and_roll_back_from_the_page(page, live_server, demo):
    district, v1, v2 = demo
    log_in(page, live_server.url, "dana")
    page.get_by_role("link", name="Deployments", exact=True).click()
    form = page.get_by_test_id("rollout-form")
    form.locator("select[name=model_version]").select_option(str(v1.pk))
    form.locator("select[name=scope]").select_option("district")
    form.get_by_label("Reason").fill("first model of the year")
    form.get_by_role("button", name="Roll out").click()
    assert set(_versions(district).values()) == {v1.version}

    pilot_school = district.schools.order_by("name").first()
    form = page.get_by_test_id("rollout-form")
    form.locator("select[name=model_version]").select_option(str(v2.pk))
    form.locator("select[name=scope]").select_option("pilot")
    form.get_by_label(pilot_school.name).check()
    form.get_by_label("Reason").fill("try the new one")
    form.get_by_role("button", name="Roll out").click()
    row = page.locator(f"tr[data-school='{pilot_school.pk}']")
    assert f"v{v2.version}" in row.inner_text()

    pilot = page.get_by_test_id("active-pilot")
    pilot.get_by_label("Reason", exact=True).fill("pilot went well")
    pilot.get_by_role("button", name="Promote to the district").click()
    assert set(_versions(district).values()) == {v2.version}

    whole = page.get_by_test_id("active-district")
    whole.get_by_role("button", name="Rollback").click()
    plan = whole.get_by_test_id("rollback-plan").inner_text()
    assert f"v{v2.version} → " in plan and f"v{v1.version}" in plan
    assert f"for {district.schools.count()} schools" in plan
    whole.get_by_label("Reason (kept in the audit trail)").fill("recall dropped")
    whole.get_by_test_id("confirm-rollback").click()
    page.wait_for_selector(".message")
    assert set(_versions(district).values()) == {v1.version}
    assert "recall dropped" in page.get_by_test_id("history").inner_text()

    tokens = page.get_by_test_id("tokens")
    tokens.get_by_label("Name").fill("SIS nightly scores")
    tokens.get_by_role("button", name="Create token").click()
    assert "Copy its key now" in page.locator(".message").inner_text()
    assert "SIS nightly scores" in page.get_by_test_id("tokens").inner_text()

    page.get_by_role("link", name="Audit").click()
    text = page.get_by_test_id("audit-table").inner_text()
    assert "rollback" in text and "promotion" in text and "recall dropped" in text
    assert "token created" in text


def test_a_teacher_rolls_back_their_own_school(page, live_server, demo):
    district, v1, v2 = demo
    district.teachers_may_roll_back = True
    district.save()
    services.roll_out(v1, scope="district")
    services.roll_out(v2, scope="district")
    log_in(page, live_server.url, "tom")
    school = School.objects.get(name="Riverside High School")
    assert f"version {v2.version}" in page.get_by_test_id("school-model").inner_text()
    page.get_by_test_id("school-rollback").click()
    page.get_by_label("Reason (kept in the audit trail)").fill("scores look wrong")
    page.get_by_test_id("confirm-school-rollback").click()
    assert f"version {v1.version}" in page.get_by_test_id("school-model").inner_text()
    assert services.resolve(school).model_version == v1
    others = {s for s, v in _versions(district).items() if s != school.name}
    assert all(_versions(district)[s] == v2.version for s in others)
