"""Schedule and term-start triggers are fired by one scanner (workflows.scan_triggers) now: remove
the per-trigger celery beat entries of older versions so nothing fires twice."""

from django.db import migrations

OLD_TASKS = ["workflows.start_scheduled_run", "workflows.fire_term_starts"]


def forwards(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=OLD_TASKS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0004_durable_runs"),
        ("django_celery_beat", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
