"""Each person sees what concerns them: a teacher opens the card of the model in use at their
school (and nothing of the district's own), district staff's home lists the approvals waiting for
them and the newest alerts, and everyone has notifications that link to pages."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from rest_framework.test import APIClient

from edumlops.deployments.models import Deployment
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion
from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import Notification, StepRun

pytestmark = pytest.mark.django_db


def _model(district, version: str) -> ModelVersion:
    return ModelVersion.objects.create(
        district=district,
        name="early-warning",
        version=version,
        run_id=f"run-{version}",
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def served(district, school_a, school_b):
    """Version 1 serves the district; version 2 is piloted at school B only."""
    v1, v2 = _model(district, "1"), _model(district, "2")
    Deployment.objects.create(district=district, model_version=v1, scope="district")
    pilot = Deployment.objects.create(district=district, model_version=v2, scope="pilot")
    pilot.schools.add(school_b)
    return v1, v2


# --- the teacher's model card ------------------------------------------------------------------
def test_a_teacher_opens_the_card_of_the_model_in_use_at_their_school(teacher_a, school_a, served):
    v1, _ = served
    page = _client(teacher_a).get(f"/schools/{school_a.pk}/model/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Model card: early-warning version 1" in text
    assert "the model in use at" in text
    # what the district keeps to itself: alias buttons, downloads, the dataset and run pages
    for district_only in ("Make champion", "card.md", "/datasets/versions/", "/runs/"):
        assert district_only not in text, district_only


def test_a_teacher_sees_the_pilot_version_where_it_serves_and_no_other(
    teacher_a, teacher_b, school_a, school_b, served
):
    v1, v2 = served
    assert "version 2" in _client(teacher_b).get(f"/schools/{school_b.pk}/model/").content.decode()
    # neither teacher opens a version through the registry's own card, nor the other school's
    for teacher, version in ((teacher_a, v1), (teacher_a, v2), (teacher_b, v2)):
        assert _client(teacher).get(f"/models/{version.pk}/").status_code == 404
    assert _client(teacher_a).get(f"/schools/{school_b.pk}/model/").status_code == 404


def test_a_school_no_model_serves_has_no_card(teacher_a, school_a):
    assert _client(teacher_a).get(f"/schools/{school_a.pk}/model/").status_code == 404


def test_district_staff_get_the_full_card_with_its_alias_buttons(staff, school_a, served):
    v1, _ = served
    text = _client(staff).get(f"/schools/{school_a.pk}/model/").content.decode()
    assert "Make champion" in text and f'action="/models/{v1.pk}/"' in text


def test_a_teachers_models_page_shows_the_model_their_school_uses(teacher_a, school_a, served):
    text = _client(teacher_a).get("/models/").content.decode()
    assert "No model yet" not in text and "Train a model" not in text
    assert f'href="/schools/{school_a.pk}/model/"' in text
    assert "early-warning version 1" in text


def test_a_teachers_models_page_says_when_no_model_serves_the_school(teacher_a, school_a):
    text = _client(teacher_a).get("/models/").content.decode()
    assert "No model serves your school yet" in text and "train one" not in text


def test_district_staff_still_see_every_version_on_the_models_page(staff, served):
    text = _client(staff).get("/models/").content.decode()
    assert all(f'href="/models/{v.pk}/"' in text for v in served)
    assert "Train a model" in text and 'data-testid="models-in-use"' not in text


# --- district staff's home ---------------------------------------------------------------------
@pytest.fixture
def waiting(make_workflow, platform_admin, staff, django_capture_on_commit_callbacks):
    """A run paused at an approval step (its notification went to district staff)."""
    workflow = make_workflow(
        {
            "nodes": [node("start", "manual_trigger"), node("ok", "approval_gate")],
            "edges": [edge("start", "start", "ok")],
        },
        name="Spring retrain",
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = engine.start_run(workflow, user=platform_admin)
    me = engine.worker_id()
    assert engine.execute_step(run.pk, "start", me=me) == "succeeded"
    assert engine.execute_step(run.pk, "ok", me=me) == StepRun.Status.WAITING_APPROVAL
    return run


def test_district_home_lists_the_approvals_waiting_and_links_to_act(staff, district, waiting):
    text = _client(staff).get(f"/districts/{district.pk}/").content.decode()
    assert 'data-testid="pending-approvals"' in text
    assert "Ask for approval" in text and "Spring retrain" in text
    assert f'href="/runs/{waiting.pk}/"' in text and 'href="/approvals/"' in text


def test_district_home_says_when_nothing_waits_and_hides_approvals_from_admins(
    staff, district_admin, district
):
    assert "Nothing is waiting for your decision" in (
        _client(staff).get(f"/districts/{district.pk}/").content.decode()
    )
    text = _client(district_admin).get(f"/districts/{district.pk}/").content.decode()
    assert 'data-testid="pending-approvals"' not in text


def test_district_home_shows_the_newest_alerts_in_words(staff, district, school_a):
    Alert.objects.create(
        district=district,
        school=school_a,
        monitor="drift",
        cause="absences",
        severity="critical",
        message="PSI 0.31",
    )
    text = _client(staff).get(f"/districts/{district.pk}/").content.decode()
    section = text.split('data-testid="recent-alerts"')[1].split("</section>")[0]
    assert "absences" in section and school_a.name in section and "critical" in section
    assert "(open," in section


# --- notifications -----------------------------------------------------------------------------
def test_an_approval_notification_links_to_the_inbox_with_words(staff, waiting):
    note = Notification.objects.get(user=staff)
    assert (note.link, note.link_label) == ("/approvals/", "Decide in the approvals inbox")


def test_a_run_notification_links_to_the_run_page_never_the_api(
    make_workflow, platform_admin, staff, django_capture_on_commit_callbacks
):
    workflow = make_workflow(
        {
            "nodes": [
                node("start", "manual_trigger"),
                node("tell", "notify", title="Model ready", message="{workflow} (run {run})"),
            ],
            "edges": [edge("start", "start", "tell")],
        }
    )
    with django_capture_on_commit_callbacks(execute=False):
        run = engine.start_run(workflow, user=platform_admin)
    me = engine.worker_id()
    engine.execute_step(run.pk, "start", me=me)
    assert engine.execute_step(run.pk, "tell", me=me) == "succeeded"
    note = Notification.objects.get(user=staff)
    assert note.link == f"/runs/{run.pk}/"
    assert note.link_label == f"Open run #{run.pk} of Test workflow"
    assert note.body == f"Test workflow (run #{run.pk})"


def _note(user, title: str, link: str = "/approvals/") -> Notification:
    return Notification.objects.create(user=user, title=title, link=link, link_label="Go there")


def test_the_header_counts_unread_notifications_and_lists_the_newest(staff, teacher_a):
    _note(staff, "First"), _note(staff, "Second")
    _note(teacher_a, "Not yours")
    text = _client(staff).get("/notifications/").content.decode()
    assert 'data-testid="unread-count">2<' in text
    assert "Second" in text and "First" in text and "Not yours" not in text


def test_opening_a_notification_marks_it_read_and_goes_to_its_page(staff):
    note = _note(staff, "Approve it")
    answer = _client(staff).get(f"/notifications/{note.pk}/open/")
    assert (answer.status_code, answer["Location"]) == (302, "/approvals/")
    note.refresh_from_db()
    assert note.read
    after = _client(staff).get("/notifications/").content.decode()
    assert 'data-testid="unread-count"' not in after


def test_a_notification_never_sends_anyone_off_site(staff):
    note = _note(staff, "Odd", link="https://evil.example/")
    assert _client(staff).get(f"/notifications/{note.pk}/open/")["Location"] == "/notifications/"


def test_someone_elses_notification_is_a_404(staff, teacher_a):
    note = _note(teacher_a, "Theirs")
    client = _client(staff)
    assert client.get(f"/notifications/{note.pk}/open/").status_code == 404
    assert client.post("/notifications/read/", {"notification": note.pk}).status_code == 404
    assert client.post("/notifications/read/", {"notification": "abc"}).status_code == 404
    note.refresh_from_db()
    assert not note.read


def test_mark_one_or_all_read(staff):
    one, two, three = _note(staff, "1"), _note(staff, "2"), _note(staff, "3")
    client = _client(staff)
    assert client.post("/notifications/read/", {"notification": one.pk}).status_code == 302
    assert list(Notification.objects.filter(read_at__isnull=True).order_by("pk")) == [two, three]
    client.post("/notifications/read/")
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_the_api_lists_and_marks_notifications_read(staff, teacher_a):
    note = _note(staff, "Approve it")
    theirs = _note(teacher_a, "Theirs")
    api = APIClient()
    api.force_authenticate(staff)
    listed = api.get("/api/notifications/").json()
    assert [(n["title"], n["link"], n["link_label"], n["read"]) for n in listed] == [
        ("Approve it", "/approvals/", "Go there", False)
    ]
    assert api.post(f"/api/notifications/{note.pk}/read/").json()["read"] is True
    missing = api.post(f"/api/notifications/{theirs.pk}/read/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


# --- smaller things ----------------------------------------------------------------------------
def test_favicon_ico_is_the_svg_icon(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"].endswith("/img/favicon.svg")
    assert finders.find("img/favicon.svg") is not None
    assert 'rel="icon"' in client.get("/login/").content.decode()
