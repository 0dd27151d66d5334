from django.db import migrations, models


def create_row(apps, schema_editor):
    apps.get_model("deployments", "ServingState").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("deployments", "0003_prediction_unseen_categories")]

    operations = [
        migrations.CreateModel(
            name="ServingState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("generation", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(create_row, migrations.RunPython.noop),
    ]
