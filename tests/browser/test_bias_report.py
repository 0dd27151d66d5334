"""In a real headless Chromium: district staff read a bias report that fails on an intersection
(sex × address) on the model card, then decide an inconclusive bias gate in the approvals inbox.
The pages use words (no metric codes), every count says what it counts, groups too small to judge
are greyed but keep their numbers, and intersections are charted. Screenshots go to
var/test-artifacts/bias/."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.conftest import ROOT
from tests.core.test_fairness_charts import failing_intersection
from tests.deployments.conftest import make_model
from tests.registry.conftest import run_here
from tests.registry.test_bias_gate import sex_and_address, train

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "var" / "test-artifacts" / "bias"
CODES = ("false_negative_rate", "max_difference", "min_ratio", "selection_rate")
MUTED = "rgb(93, 102, 119)"  # --muted in app.css


@pytest.fixture
def demo(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    return District.objects.get(slug="riverside")


def test_the_card_charts_the_failing_intersection_and_greys_small_groups(page, live_server, demo):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    model = make_model(demo)
    report, sex, address, y = failing_intersection()
    model.bias_report, model.bias_outcome = report, report["outcome"]
    model.save()
    log_in(page, live_server.url, "dana")
    page.goto(f"{live_server.url}/models/{model.pk}/")

    fairness = page.get_by_test_id("fairness")
    assert page.get_by_test_id("bias-outcome").inner_text() == "failed"
    text = fairness.inner_text()
    assert not [code for code in CODES if code in text]
    assert "Missed at-risk students (false-negative rate)" in text
    assert "Largest gap between groups (max difference): at most 0.2" in text

    first = page.get_by_test_id("group-chart").first  # where to act comes first
    assert first.get_attribute("data-attribute") == "sex × address"
    assert "flagged" in first.get_attribute("class")
    assert (
        first.locator("figcaption")
        .inner_text()
        .startswith("Missed at-risk students (false-negative rate) by sex × address")
    )
    fu = (sex == "F") & (address == "U")
    worst = first.locator(".fbar.worst")
    assert worst.get_attribute("data-group") == "F × U"
    assert f"{int(y[fu].sum())} at-risk students of {int(fu.sum())} held-out students" in (
        worst.inner_text()
    )
    assert float(worst.locator(".fill").evaluate("e => e.getBoundingClientRect().width")) > 0
    charted = page.get_by_test_id("group-chart").evaluate_all(
        "charts => charts.map(c => c.dataset.attribute)"
    )
    assert set(charted) == {"sex × address", "sex", "address"}

    small = page.locator("[data-testid=group-chart][data-attribute=address] [data-group=X]")
    assert small.get_attribute("data-judged") == "no"
    words = small.inner_text()
    assert "of 12 held-out students" in words
    assert "not judged: fewer than the 30 held-out students needed" in words
    value = small.locator(".value").inner_text()
    assert value not in ("", "—")  # its number is still shown
    assert small.locator(".value").evaluate("e => getComputedStyle(e).color") == MUTED
    page.screenshot(path=str(ARTIFACTS / "card.png"), full_page=True)


def test_the_approval_asks_for_a_decision_and_shows_the_report_once(page, live_server, demo):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    frame = sex_and_address()
    roles = Roles(label="at_risk", positive=["yes"], sensitive=["sex", "address"], school="school")
    version = ingest(
        district=demo, name="address", data=frame.to_csv(index=False).encode(), roles=roles
    )[0]
    staff = demo.memberships.get(user__username="dana").user
    run = train(version, staff, if_inconclusive="ask_approval", min_group_size=180)
    assert run_here(run) == "waiting_approval"
    model = ModelVersion.objects.get(workflow_run=run)

    log_in(page, live_server.url, "dana")
    page.get_by_role("link", name="Approvals").first.click()
    card = page.locator(f"[data-testid=approval][data-run='{run.pk}']")
    asked = card.get_by_test_id("decision-asked").inner_text()
    assert f"the bias check of {model} is inconclusive" in asked
    assert "Approving lets this run go on with that model exactly as it is" in asked
    assert "Rejecting ends the run" in asked
    assert card.get_by_test_id("fairness").count() == 1
    assert card.inner_text().count(model.bias_report["summary"][:60]) == 1
    assert not [code for code in CODES if code in card.inner_text()]

    pair = card.locator("[data-testid=group-chart][data-attribute='sex × address']")
    assert "flagged-inconclusive" in pair.get_attribute("class")
    fu = next(g for g in model.bias_report["groups"] if g["group"] == "F × U")
    bar = pair.locator("[data-group='F × U']")
    assert bar.get_attribute("data-judged") == "no"
    assert f"{fu['positives']} at-risk students of {fu['n']} held-out students" in bar.inner_text()
    assert "not judged: fewer than the 180 at-risk students needed" in bar.inner_text()
    assert bar.locator(".value").inner_text() == f"{fu['metrics']['false_negative_rate']:.2f}"
    check = card.locator("[data-testid=bias-check][data-attribute='sex × address']").inner_text()
    assert "0 groups with at least 180 at-risk students" in check
    page.screenshot(path=str(ARTIFACTS / "approval.png"), full_page=True)

    card.get_by_label("Comment").fill("Pairs too small to judge; pilot first.")
    card.get_by_role("button", name="Approve").click()
    page.wait_for_selector(".message")
    assert run_here(run) == "succeeded"
