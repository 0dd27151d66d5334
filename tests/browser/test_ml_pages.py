"""In a real headless Chromium: district staff upload a CSV, read its profile, mark its roles,
train a model from the page, watch the run and read the model card."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from edumlops.ml.synth import generate_district
from edumlops.registry.models import ModelVersion
from tests.browser.conftest import log_in
from tests.registry.conftest import run_here
from workflows.models import Run, StepRun

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(transactional_db, settings, tmp_path):
    settings.DATASET_DIR = tmp_path / "datasets"
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings.MLFLOW_ARTIFACT_ROOT = (tmp_path / "mlartifacts").as_uri()
    settings.SIGNING_KEY_PATH = tmp_path / "keys" / "signing.pem"
    call_command("seed_demo", "--without-datasets", stdout=open("/dev/null", "w"))  # noqa: SIM115


def test_staff_upload_profile_mark_roles_train_and_read_the_card(page, live_server, demo, tmp_path):
    csv = tmp_path / "students.csv"
    generate_district(2500, seed=4).to_csv(csv, index=False, sep=";")
    log_in(page, live_server.url, "dana")
    page.get_by_role("link", name="Datasets").click()

    # a bad file first: the page says what is wrong and nothing is listed
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page.set_input_files("input[name=file]", str(empty))
    page.get_by_role("button", name="Upload").click()
    assert "empty" in page.get_by_test_id("upload-error").inner_text().lower()
    assert "No datasets yet" in page.get_by_test_id("dataset-table").inner_text()

    page.get_by_label("Name").fill("Students 2024-26")
    page.set_input_files("input[name=file]", str(csv))
    page.get_by_role("button", name="Upload").click()
    assert page.get_by_test_id("profile-title").inner_text() == "Students 2024-26 v1"
    assert page.locator("tr[data-column=attendance_rate] svg rect").count() > 5
    assert page.locator("tr[data-column=student_id] .kind").inner_text() == "identifier"
    assert page.locator("tr[data-column=teacher_note] .kind").inner_text() == "text"

    # choosing the label fetches its values (htmx) to pick the positive class from
    page.locator("select[name=label]").select_option("at_risk")
    page.locator("#positive-values input[value=yes]").check()
    for column in ("ses", "english_learner", "disability", "sex"):
        page.locator(f"input[name=sensitive][value={column}]").check()
    page.locator("select[name=school]").select_option("school")
    page.locator("select[name=time]").select_option("term")
    page.get_by_role("button", name="Save roles").click()
    assert "Roles saved" in page.locator(".message").inner_text()

    page.get_by_test_id("train-link").click()
    page.locator("select[name=algorithm]").select_option("logistic_regression")
    page.locator("input[name=max_difference]").fill("0.5")
    page.get_by_test_id("train-submit").click()
    assert "/runs/" in page.url
    run = Run.objects.get()
    assert page.locator("li.step").count() == 10

    # the worker reports fitting stages; the page shows them while the step runs
    train = StepRun.objects.get(run=run, node_id="train")
    StepRun.objects.filter(pk=train.pk).update(status="running")
    from workflows.compiler import plan
    from workflows.engine import StepContext

    train.refresh_from_db()
    StepContext(run, train, plan(run.version.graph)).progress("fitting", 0.4)
    page.wait_for_selector("[data-testid=progress]")
    assert "fitting" in page.get_by_test_id("progress").inner_text()
    StepRun.objects.filter(pk=train.pk).update(status="queued", progress={})

    # a step waiting on the world says why and when it is checked again, holding no worker
    wake = timezone.now() + dt.timedelta(minutes=5)
    StepRun.objects.filter(pk=train.pk).update(
        status="waiting", reason="waiting for edge servers: 1 of 2", wake_at=wake
    )
    page.wait_for_selector("li.step[data-node=train] [data-testid=wake]")
    waiting = page.locator("li.step[data-node=train]").inner_text()
    assert "waiting for edge servers: 1 of 2" in waiting and "Holds no worker" in waiting
    StepRun.objects.filter(pk=train.pk).update(status="queued", reason="", wake_at=None)

    # four sensitive attributes and their pairs on 625 held-out rows: some groups are too small
    # to judge, so the gate pauses the run for district staff instead of deciding alone
    assert run_here(run) == "waiting_approval"
    page.wait_for_selector("[data-testid=run-status]:has-text('waiting for approval')")
    assert "inconclusive" in page.locator("li.step[data-node=bias]").inner_text()
    shown = page.locator("li.step[data-node=bias] [data-testid=proposal]").inner_text()
    assert f"Asked for approval: Going on with {ModelVersion.objects.get()}" in shown
    page.get_by_test_id("decision").get_by_label("Comment").fill("Small groups read by hand.")
    page.get_by_test_id("decision").get_by_role("button", name="Approve").click()
    assert run_here(run) == "succeeded"
    page.wait_for_selector("[data-testid=run-status]:has-text('done')")
    page.get_by_test_id("model-link").click()
    model = ModelVersion.objects.get()
    assert page.get_by_test_id("card-title").inner_text().endswith(f"version {model.version}")
    assert page.get_by_test_id("bias-outcome").inner_text() == model.bias_outcome
    assert page.get_by_test_id("group-chart").count() >= 4
    assert "challenger" in page.get_by_test_id("alias").all_inner_texts()

    with page.expect_download() as download:
        page.get_by_test_id("download-md").click()
    text = Path(download.value.path()).read_text()
    assert text.startswith(f"# Model card: {model.name} version {model.version}")
    assert model.dataset_sha256 in text

    page.get_by_test_id("make-champion").click()
    assert "champion" in page.get_by_test_id("alias").all_inner_texts()
