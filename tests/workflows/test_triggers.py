"""One scanner fires time and calendar triggers: a schedule once per cron tick, a term start
once per term."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from tests.workflows.conftest import edge, node
from workflows import triggers
from workflows.models import TriggerFiring, Workflow

SCHEDULED = {
    "nodes": [node("tick", "schedule_trigger", cron="30 7 * * 1-5"), node("tell", "notify")],
    "edges": [edge("tick", "start", "tell")],
}
TERMLY = {
    "nodes": [node("term", "term_start_trigger", days_after_start=7), node("tell", "notify")],
    "edges": [edge("term", "start", "tell")],
}


def test_the_scanner_fires_a_schedule_once_per_tick_of_its_cron_line(
    platform_admin, district, django_capture_on_commit_callbacks
):
    wf = Workflow.objects.create(district=district, name="Daily", owner=platform_admin)
    wf.save_version(SCHEDULED, "v1", platform_admin)
    saved = wf.runnable_version().created_at
    monday = timezone.localtime(saved).date() + dt.timedelta(days=7 - saved.weekday())
    at = timezone.make_aware(dt.datetime.combine(monday, dt.time(7, 30)))
    assert triggers.scan(at - dt.timedelta(minutes=1)) == []
    with django_capture_on_commit_callbacks(execute=False):
        [run] = triggers.scan(at + dt.timedelta(minutes=3))  # a late beat still fires it
        assert triggers.scan(at + dt.timedelta(minutes=4)) == []  # once
    assert run.trigger_node == "tick"
    firing = TriggerFiring.objects.get(workflow=wf, run=run)
    assert firing.key == f"cron-{monday:%Y-%m-%d}T07:30"
    saturday = monday + dt.timedelta(days=5)
    assert triggers.scan(timezone.make_aware(dt.datetime.combine(saturday, dt.time(7, 31)))) == []
    # a version without the schedule: the scanner no longer fires it
    wf.save_version(TERMLY, "no schedule any more", platform_admin)
    assert triggers.scan(at + dt.timedelta(days=1, minutes=1)) == []


def test_no_per_workflow_beat_entries_are_left(db):
    """One beat entry scans every trigger; the per-trigger entries of older versions are gone."""
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "workflows.scan_triggers" in tasks
    assert not PeriodicTask.objects.filter(task="workflows.start_scheduled_run").exists()


def _noon(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(12)))


def test_a_term_start_trigger_fires_once_per_term_on_its_day(
    platform_admin, district, django_capture_on_commit_callbacks
):
    wf = Workflow.objects.create(district=district, name="Termly", owner=platform_admin)
    wf.save_version(TERMLY, "v1", platform_admin)
    spring = district.terms().get(name="Spring")
    assert triggers.scan(_noon(spring.start)) == []
    day = spring.start + dt.timedelta(days=7)
    with django_capture_on_commit_callbacks(execute=False):
        [run] = triggers.scan(_noon(day))
        assert triggers.scan(_noon(day)) == []
    assert (run.trigger_node, run.conf) == ("term", {"term": "Spring"})
    assert {s.node_id: s.status for s in run.steps.all()} == {"term": "queued", "tell": "queued"}
