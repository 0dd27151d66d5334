"""Retire DRF's plain-text tokens (rest_framework.authtoken, no longer installed): each becomes a
UserKey holding only the SHA-256 of the old key, named "Migrated API token", so clients that send
`Authorization: Token <key>` keep working until the key is revoked (docs/security.md). Then the
plain-text table is dropped and the app's traces (migration records, content type, permissions)
are removed, as if it had never been installed."""

import hashlib

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder

TABLE = "authtoken_token"


def retire_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if TABLE in connection.introspection.table_names():
        UserKey = apps.get_model("core", "UserKey")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT key, user_id, created FROM {connection.ops.quote_name(TABLE)}")
            rows = cursor.fetchall()
        UserKey.objects.bulk_create(
            UserKey(
                user_id=user_id,
                name="Migrated API token",
                prefix=key[:8],
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                created_at=created,
            )
            for key, user_id, created in rows
        )
        schema_editor.execute(
            schema_editor.sql_delete_table % {"table": schema_editor.quote_name(TABLE)}
        )
    MigrationRecorder(connection).migration_qs.filter(app="authtoken").delete()
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="authtoken").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(retire_drf_tokens, migrations.RunPython.noop)]
