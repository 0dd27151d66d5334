"""In a real headless Chromium: a teacher opens their school page, fills "Try a student" with a
made-up student, sees the risk band, the probability and the main reasons; types a locality the
model never saw and sees the warning; nothing is recorded as a prediction. Screenshot:
var/test-artifacts/deployments/try-student.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.deployments import services
from edumlops.deployments.models import Prediction
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.deployments.conftest import make_model, rows_for

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "deployments"


@pytest.fixture
def deployed(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    model = make_model(district, seed=0)  # logistic regression: it gives reasons
    services.roll_out(model, scope="district")
    return model


def _fill(card, row: dict) -> None:
    for name, value in row.items():
        card.get_by_test_id(f"try-{name}").fill("" if value is None else str(value))


def test_a_teacher_tries_a_student_and_sees_an_unseen_category_flagged(page, live_server, deployed):
    log_in(page, live_server.url, "tom")  # a teacher lands on his school's page
    card = page.get_by_test_id("try-student")
    card.get_by_test_id("try-student-form").wait_for()  # loaded by htmx
    assert "Nothing is recorded" in card.get_by_test_id("try-not-recorded").inner_text()

    row = rows_for(1, seed=4)[0]
    _fill(card, row)
    card.get_by_test_id("try-submit").click()
    band = card.get_by_test_id("try-band")
    band.wait_for()
    assert band.inner_text() in ("High risk", "Medium risk", "Low risk")
    assert card.get_by_test_id("try-probability").inner_text().endswith("%")
    reasons = card.get_by_test_id("try-reasons").locator("li")
    assert reasons.count() == 3
    assert "risk" in reasons.first.inner_text()
    assert card.get_by_test_id("try-warnings").count() == 0

    card.get_by_test_id("try-locality").fill("lunar")
    card.get_by_test_id("try-submit").click()
    warnings = card.get_by_test_id("try-warnings")
    warnings.wait_for()
    assert "'lunar' never occurred in the training data" in warnings.inner_text()
    assert card.get_by_test_id("try-band").is_visible()  # still scored
    assert card.get_by_test_id("try-locality").input_value() == "lunar"  # what was typed stays

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "try-student.png"), full_page=True)
    assert not Prediction.objects.exists()  # a tried student is not a real one
