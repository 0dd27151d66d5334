"""Check the audit trail's hash chain; exit 1 naming the first record where it breaks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from edumlops.audit.models import AuditRecord, verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and report the first record where it breaks."

    def handle(self, *args: Any, **opts: Any) -> None:
        checked, broken = verify()
        if broken is None:
            self.stdout.write(f"Audit trail intact: {checked} record(s), chain verified.")
            return
        row = AuditRecord.objects.filter(pk=broken.record_id).first()
        what = (
            f"{row.action} of {row.target_type}:{row.target_id} by {row.actor_name} at "
            f"{row.created_at.isoformat()}"
            if row
            else "?"
        )
        raise CommandError(
            f"Audit chain broken at record #{broken.record_id} ({what}): {broken.problem}. "
            f"The {checked} record(s) before it are intact."
        )
