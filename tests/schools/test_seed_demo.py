"""`manage.py seed_demo` builds the demo district once, however often it runs."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from edumlops.schools.models import CalendarPeriod, District, Membership, School
from edumlops.schools.permissions import Action, can


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_the_demo_has_a_calendar_six_varied_schools_and_users_per_role(db):
    output = _seed()
    district = District.objects.get(slug="riverside")
    schools = list(School.objects.filter(district=district))
    assert len(schools) == 6
    assert {s.size_band for s in schools} == {"small", "medium", "large"}
    assert {s.locality for s in schools} == {"urban", "rural"}
    assert len({s.hardware for s in schools}) >= 3
    today = timezone.localdate()
    terms = district.terms()
    assert terms.count() == 3
    assert terms.first().start <= max(today, terms.first().start)
    assert district.calendar.filter(kind="break").exists()
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {
        "admin": "admin",
        "dana": "district_staff",
        "tom": "teacher",
        "tara": "teacher",
    }
    tom_school = Membership.objects.get(user__username="tom").school
    tara_school = Membership.objects.get(user__username="tara").school
    assert tom_school != tara_school
    for username in ("admin", "dana", "tom", "tara"):
        assert f"{username:<6} / edumlops-demo" in output


def test_seeding_twice_changes_nothing(db):
    from workflows.models import Workflow

    _seed()
    watch = Workflow.objects.get(name="Watch the deployed models")
    version = watch.runnable_version()  # the monitoring template, runnable, for the thresholds
    assert version is not None and not version.draft
    assert {n["kind"] for n in version.graph["nodes"]} >= {"drift_monitor", "performance_monitor"}
    counts = (
        Workflow.objects.count(),
        watch.versions.count(),
        District.objects.count(),
        School.objects.count(),
        CalendarPeriod.objects.count(),
        get_user_model().objects.count(),
        Membership.objects.count(),
    )
    _seed()
    assert counts == (
        Workflow.objects.count(),
        watch.versions.count(),
        District.objects.count(),
        School.objects.count(),
        CalendarPeriod.objects.count(),
        get_user_model().objects.count(),
        Membership.objects.count(),
    )


def test_demo_users_can_log_in_and_only_dana_approves(db, client):
    _seed()
    district = District.objects.get(slug="riverside")
    User = get_user_model()
    assert client.login(username="tara", password="edumlops-demo")
    assert [u.username for u in User.objects.all() if can(u, Action.APPROVE, district)] == ["dana"]
