"""Notifications say what their link opens, and link to pages: links stored before as the run's
API URL (/api/runs/<id>/) now open the run's page, and "run run <id>" in their text reads
"run #<id>"."""

import re

from django.db import migrations, models

API_RUN = re.compile(r"^/api/runs/(\d+)/$")


def to_pages(apps, schema_editor):
    Notification = apps.get_model("workflows", "Notification")
    for note in Notification.objects.filter(link__startswith="/api/"):
        found = API_RUN.match(note.link)
        if found:
            run_id = found.group(1)
            note.link = f"/runs/{run_id}/"
            note.link_label = f"Open run #{run_id}"
        else:  # no page known for it: better no link than one to raw JSON
            note.link = ""
        note.body = re.sub(r"\brun run (\d+)", r"run #\1", note.body)
        note.save(update_fields=["link", "link_label", "body"])
    for note in Notification.objects.filter(link="/approvals/", link_label=""):
        note.link_label = "Decide in the approvals inbox"
        note.save(update_fields=["link_label"])


class Migration(migrations.Migration):
    dependencies = [("workflows", "0005_one_trigger_scanner")]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="link_label",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.RunPython(to_pages, migrations.RunPython.noop),
    ]
