"""Schedule triggers become celery beat entries; term-start triggers fire once per term."""

from __future__ import annotations

import datetime as dt

from django_celery_beat.models import PeriodicTask

from tests.workflows.conftest import edge, node
from workflows import engine
from workflows.models import Workflow

SCHEDULED = {
    "nodes": [node("tick", "schedule_trigger", cron="30 7 * * 1-5"), node("tell", "notify")],
    "edges": [edge("tick", "start", "tell")],
}
TERMLY = {
    "nodes": [node("term", "term_start_trigger", days_after_start=7), node("tell", "notify")],
    "edges": [edge("term", "start", "tell")],
}


def test_saving_a_version_syncs_its_schedule_to_celery_beat(
    platform_admin, district, django_capture_on_commit_callbacks
):
    wf = Workflow.objects.create(district=district, name="Daily", owner=platform_admin)
    with django_capture_on_commit_callbacks(execute=True):
        wf.save_version(SCHEDULED, "v1", platform_admin)
    task = PeriodicTask.objects.get(name=f"workflow-{wf.pk}-tick")
    assert task.task == "workflows.start_scheduled_run"
    assert task.args == f'[{wf.pk}, "tick"]'
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "7", "1-5")
    with django_capture_on_commit_callbacks(execute=True):
        wf.save_version(TERMLY, "no schedule any more", platform_admin)
    assert not PeriodicTask.objects.filter(name__startswith=f"workflow-{wf.pk}-").exists()


def test_a_term_start_trigger_fires_once_per_term_on_its_day(
    platform_admin, district, django_capture_on_commit_callbacks
):
    wf = Workflow.objects.create(district=district, name="Termly", owner=platform_admin)
    wf.save_version(TERMLY, "v1", platform_admin)
    spring = district.terms().get(name="Spring")
    assert engine.fire_term_starts(spring.start) == []
    day = spring.start + dt.timedelta(days=7)
    with django_capture_on_commit_callbacks(execute=False):
        [run] = engine.fire_term_starts(day)
        assert engine.fire_term_starts(day) == []
    assert (run.trigger_node, run.conf) == ("term", {"term": "Spring"})
    assert {s.node_id: s.status for s in run.steps.all()} == {"term": "queued", "tell": "queued"}
