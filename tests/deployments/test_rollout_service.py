"""The rollout rules in edumlops.deployments.rollout, and the same rule at every door: a pilot is
promoted only once it has run its minimum days (on the platform clock) and no alert is open on
a pilot school — through the API, the deployments page and the Promote to district block alike.
Real PostgreSQL; the condition and door tests use model version rows with a bundle manifest (no
model is scored), the block test a real MLflow store."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from edumlops.deployments import rollout, services
from edumlops.deployments.models import Deployment
from edumlops.monitoring import promotion
from edumlops.monitoring.models import Alert
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from tests.deployments.test_promotion_conditions import graph, prepared
from tests.deployments.test_rollout_engine import save
from tests.registry.conftest import run_here, steps_of
from workflows import engine

pytestmark = pytest.mark.django_db

AHEAD = str(rollout.DEFAULT_MIN_PILOT_DAYS + 1)  # clock offset (days): the minimum has passed


def version(district, n: int) -> ModelVersion:
    """A servable model version row: rollouts check its bundle manifest, nothing scores it."""
    return ModelVersion.objects.create(
        district=district, name=f"{district.slug}-at-risk", version=str(n), run_id=f"run{n}",
        algorithm="logistic_regression", dataset_sha256="0" * 64,
        bundle={"artifact_path": "bundle", "manifest": {"model": {"version": str(n)}}},
    )  # fmt: skip


@pytest.fixture
def pilot(district, school_a, school_b, staff):
    """v1 on the district, v2 piloted at Alder School, started just now."""
    services.roll_out(version(district, 1), scope="district", user=staff)
    return rollout.roll_out(version(district, 2), scope="pilot", schools=[school_a], user=staff)


def alert(school, cause="attendance_rate", **extra) -> Alert:
    return Alert.objects.create(
        district=school.district, school=school, monitor="drift", cause=cause,
        severity="warning", message=f"{cause} drifted", **extra,
    )  # fmt: skip


def district_version(district) -> str:
    return services.district_deployment(district).model_version.version


# --- the conditions, asked directly ------------------------------------------------------------


def test_a_pilot_just_started_has_not_run_its_minimum_days(pilot):
    age = rollout.pilot_age(pilot, 14)
    assert not age.enough and 0 <= age.days < 0.01
    assert age.due == pilot.created_at + dt.timedelta(days=14)
    (unmet,) = rollout.unmet_conditions(pilot, 14)
    assert unmet.condition == "the pilot has run 0.0 of its 14 days"
    assert unmet.fix == f"wait until {age.due_text}, or roll the pilot back"
    assert rollout.unmet_conditions(pilot, 0) == []


def test_the_minimum_days_are_counted_on_the_platform_clock(pilot, monkeypatch):
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", "10")
    age = rollout.pilot_age(pilot, 14)
    assert 9.99 < age.days < 10.01 and not age.enough
    assert age.due == pilot.created_at + dt.timedelta(days=4)  # in real time
    assert abs(age.seconds_left - 4 * 86400) < 60
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", AHEAD)
    assert rollout.pilot_age(pilot, 14).enough
    assert rollout.unmet_conditions(pilot, 14) == []


def test_an_open_alert_on_a_pilot_school_or_its_district_is_unmet(
    pilot, district, school_a, school_b, monkeypatch
):
    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", AHEAD)
    assert promotion.no_open_alert in rollout.promotion_checks()  # registered at start-up
    alert(school_b)  # not a pilot school
    alert(school_a, "latency", status="resolved", resolved_at=timezone.now())
    assert rollout.unmet_conditions(pilot) == []

    Alert.objects.create(
        district=district, monitor="performance", cause="recall", severity="critical",
        message="recall fell district-wide",
    )  # fmt: skip
    first = alert(school_a)
    (unmet,) = rollout.unmet_conditions(pilot)
    assert unmet.condition.startswith("open alert(s) on the pilot: ")
    assert str(first) in unmet.condition and "recall" in unmet.condition
    assert "Birch" not in unmet.condition and "latency" not in unmet.condition
    assert unmet.fix == "resolve them"
    assert unmet.sentence("run this again").endswith(". Resolve them, then run this again.")


def test_every_registered_check_is_asked_once(pilot, monkeypatch):
    monkeypatch.setattr(rollout, "_checks", list(rollout.promotion_checks()))
    seen = []

    def term_not_over(p, schools):
        seen.append((p.pk, [s.name for s in schools]))
        return rollout.Unmet("the term is not over", "wait for its end")

    rollout.register_promotion_check(term_not_over)
    rollout.register_promotion_check(term_not_over)
    unmet = rollout.unmet_conditions(pilot, 0)
    assert [u.condition for u in unmet] == ["the term is not over"]
    assert seen == [(pilot.pk, ["Alder School"])]


def test_promote_refuses_naming_each_unmet_condition_and_changes_nothing(
    pilot, district, school_a, staff
):
    alert(school_a)
    with pytest.raises(rollout.NotPromotable) as refused:
        rollout.promote(pilot, user=staff, reason="too soon")
    message = str(refused.value)
    assert message.startswith(f"Pilot #{pilot.pk} cannot be promoted yet: the pilot has run 0.0 ")
    assert "of its 14 days (wait until " in message
    assert "; open alert(s) on the pilot: warning drift alert at Alder School: attendance_rate" in (
        message
    )
    assert message.endswith("(resolve them). Promote it once these hold.")
    assert [u.fix for u in refused.value.unmet][1] == "resolve them"
    pilot.refresh_from_db()
    assert pilot.active and district_version(district) == "1"


def test_only_an_active_pilot_is_promoted(pilot, district, staff):
    whole = services.district_deployment(district)
    with pytest.raises(rollout.DeploymentError, match="Only an active pilot"):
        rollout.promote(whole, user=staff)


# --- choosing the pilot schools ----------------------------------------------------------------


def test_schools_are_chosen_by_name_or_code_by_tag_or_as_a_stratified_sample(
    district, school_a, school_b
):
    choose = rollout.choose_schools
    by_name = rollout.SchoolChoice("names", names=(" alder school", school_b.code.upper()))
    assert choose(district, by_name) == [school_a, school_b]
    with pytest.raises(rollout.DeploymentError, match="No school named nowhere in"):
        choose(district, rollout.SchoolChoice("names", names=("Alder School", "Nowhere")))
    school_b.tags = ["pilot"]
    school_b.save()
    assert choose(district, rollout.SchoolChoice("tag", tag="pilot")) == [school_b]
    assert choose(district, rollout.SchoolChoice("tag", tag="other")) == []
    sample = rollout.SchoolChoice("stratified", sample_size=1, seed=3)
    assert len(choose(district, sample)) == 1
    assert choose(district, sample) == choose(district, sample)  # the seed fixes it


def test_an_approved_pilot_is_looked_up_as_approved_or_says_what_changed(
    district, school_a, school_b
):
    model = version(district, 3)
    asked = {school_a.pk: school_a.name, school_b.pk: school_b.name}
    found = rollout.pilot_as_approved(district, model.pk, str(model), "", asked)
    assert found.model == model and found.schools == [school_a, school_b] and found.changes == []
    model.bias_outcome = "fail"
    model.save()
    School.objects.filter(pk=school_b.pk).delete()
    found = rollout.pilot_as_approved(district, model.pk, str(model), "pass", asked)
    assert found.changes == [
        f"{model} has failed a bias check since",
        f"Birch School no longer is a school of {district}",
    ]
    gone = rollout.pilot_as_approved(district, 0, "old-model v9", "pass", asked)
    assert gone.model is None and gone.changes[0] == "old-model v9 was deleted"


# --- the API door ------------------------------------------------------------------------------


def test_the_api_refuses_an_early_promotion_then_an_alerted_one_then_promotes(
    pilot, district, school_a, staff, monkeypatch
):
    api = APIClient()
    api.force_authenticate(staff)
    url = f"/api/deployments/{pilot.pk}/promote/"

    early = api.post(url, {"reason": "two minutes in"}, format="json")
    assert early.status_code == 400
    detail = early.json()["detail"]
    assert "the pilot has run 0.0 of its 14 days (wait until " in detail
    assert detail.endswith("Promote it once these hold.")

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", AHEAD)  # two weeks on
    open_alert = alert(school_a)
    alerted = api.post(url, {"reason": "two weeks in"}, format="json")
    assert alerted.status_code == 400
    reason = (
        f"Pilot #{pilot.pk} cannot be promoted yet: open alert(s) on the pilot: "
        f"{open_alert} (resolve them). Promote it once these hold."
    )
    assert alerted.json() == {
        "detail": reason,
        "code": "invalid",
        "errors": [{"field": "", "message": reason}],
    }
    assert Deployment.objects.get(pk=pilot.pk).active and district_version(district) == "1"

    open_alert.status = Alert.Status.RESOLVED
    open_alert.save()
    done = api.post(url, {"reason": "conditions hold"}, format="json")
    assert done.status_code == 201, done.json()
    assert done.json()["scope"] == "district" and district_version(district) == "2"
    assert Deployment.objects.get(pk=pilot.pk).status == "promoted"


# --- the page door -----------------------------------------------------------------------------


def test_the_page_refuses_an_early_promotion_with_the_same_message(
    pilot, district, school_a, staff, monkeypatch
):
    client = Client()
    client.force_login(staff)
    post = {"do": "promote", "deployment": pilot.pk, "reason": "looks good"}
    page = client.post(f"/deployments/?district={district.pk}", post, follow=True)
    assert page.status_code == 200
    shown = page.content.decode()
    with pytest.raises(rollout.NotPromotable) as refused:
        rollout.promote(pilot)
    assert f'<p class="message error">{escape(str(refused.value))}</p>' in shown
    assert "has run 0.0 of its 14 days" in shown
    assert district_version(district) == "1"

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", AHEAD)
    page = client.post(f"/deployments/?district={district.pk}", post, follow=True)
    assert "is now the district&#x27;s version." in page.content.decode()
    assert district_version(district) == "2"


# --- the block door ----------------------------------------------------------------------------


def test_the_block_stops_on_the_same_conditions_and_its_messages_are_unchanged(
    two_models, district, school_a, staff, monkeypatch
):
    _, v2 = prepared(two_models, staff)
    two_weeks = graph(school_a, require_pilot_outcomes=False)
    two_weeks["nodes"][3]["params"]["min_days_in_pilot"] = 14
    waiting = engine.start_run(save(district, staff, two_weeks), user=staff)
    assert run_here(waiting) == "running"  # the promotion waits for its days, holding no worker
    step = steps_of(waiting)["promote"]
    pilot = Deployment.objects.get(scope="pilot", status="active")
    due = rollout.pilot_age(pilot, 14).due_text
    assert step.status == "waiting"
    assert step.reason == (
        "waiting for the pilot's minimum days: it has run 0.0 of its 14 days; it is checked "
        f"again from {due} on"
    )

    monkeypatch.setenv("EDUMLOPS_CLOCK_OFFSET_DAYS", AHEAD)
    open_alert = alert(school_a)
    services.rollback(pilot, user=staff, reason="start again")
    stopped = engine.start_run(
        save(district, staff, graph(school_a, require_pilot_outcomes=False)), user=staff
    )
    assert run_here(stopped) == "failed"
    assert steps_of(stopped)["promote"].reason.endswith(
        f": open alert(s) on the pilot: {open_alert}. Resolve them, then run this again."
    )
    assert services.district_deployment(district).model_version != v2
