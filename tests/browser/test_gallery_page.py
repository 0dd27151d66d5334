"""In a real headless Chromium: an admin opens the template gallery, sees which templates can run
and which wait for missing blocks (every shipped template can run: a template with missing blocks
is defined by the test), fills in the early-warning template's form and lands on the new
workflow's canvas page."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

from edumlops.datasets.models import ingest
from edumlops.ml.datasets import Roles
from edumlops.ml.synth import generate_district
from edumlops.schools.models import District
from tests.browser.conftest import log_in
from tests.workflows import draft_template
from workflows.gallery import TEMPLATES
from workflows.models import Workflow

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db, ml_stores):
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115
    district = District.objects.get(slug="riverside")
    roles = Roles(
        label="at_risk", positive=["yes"], sensitive=["ses", "english_learner"], school="school"
    )
    data = generate_district(400, seed=3).to_csv(index=False).encode()
    version, _ = ingest(district=district, name="Students 2024-26", data=data, roles=roles)
    return version


def test_an_admin_makes_the_early_warning_workflow_from_the_gallery(
    page, live_server, demo, tmp_path, monkeypatch
):
    draft_template.install(tmp_path, monkeypatch)
    log_in(page, live_server.url, "admin")
    page.goto(live_server.url + "/workflows/templates/")

    cards = page.get_by_test_id("template-card")
    assert cards.count() == len(TEMPLATES)
    titles = [t.strip() for t in page.locator(".tg-card h2").all_inner_texts()]
    for key in ("early-warning", "drift-retrain", "short-answer-scoring", "enrollment-forecast"):
        assert TEMPLATES[key].title in titles

    unfinished = page.locator(f"[data-template={draft_template.KEY}]")
    assert unfinished.get_by_test_id("missing-badge").count() == 2
    assert "Cannot run yet" in unfinished.get_by_test_id("template-missing-note").inner_text()
    assert unfinished.get_by_text("Train an essay-feedback model").first.is_visible()
    scoring = page.locator("[data-template=short-answer-scoring]")
    assert scoring.get_by_test_id("missing-badge").count() == 0
    assert "Ready to run" in scoring.get_by_test_id("template-ready").inner_text()
    early = page.locator("[data-template=early-warning]")
    assert early.get_by_test_id("missing-badge").count() == 0
    assert "Ready to run" in early.get_by_test_id("template-ready").inner_text()
    assert early.locator("ol.tg-steps li").count() == 13

    form = early.get_by_test_id("use-early-warning")
    form.get_by_label("Workflow name").fill("Early warning for Riverside")
    form.get_by_label("Dataset version").select_option(str(demo.pk))
    form.get_by_label("Riverside High School").check()
    form.get_by_label("Pine Hollow Elementary").check()
    form.get_by_role("button", name="Use this template").click()

    page.wait_for_url(re.compile(r"/workflows/\d+/$"))
    workflow = Workflow.objects.get(name="Early warning for Riverside")
    assert page.url == f"{live_server.url}/workflows/{workflow.pk}/"
    version = workflow.latest_version()
    assert not version.draft and version.errors == []
    params = {n["id"]: n["params"] for n in version.graph["nodes"]}
    assert params["data"] == {"dataset_version": demo.pk}
    assert sorted(params["pilot"]["schools"]) == ["phe", "rhs"]


def test_a_bad_choice_is_shown_on_its_card(page, live_server, demo):
    log_in(page, live_server.url, "admin")
    page.goto(live_server.url + "/workflows/templates/")
    form = page.get_by_test_id("use-early-warning")
    form.get_by_label("Workflow name").fill("Early warning")
    form.get_by_label("Model name").fill("Not a Name")
    form.get_by_role("button", name="Use this template").click()
    error = page.get_by_test_id("use-error")
    assert "Model name:" in error.inner_text()
    assert page.get_by_test_id("use-early-warning").get_by_label("Model name").input_value() == (
        "Not a Name"
    )
    assert not Workflow.objects.exists()
