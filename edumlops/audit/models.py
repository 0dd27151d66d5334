"""The append-only, tamper-evident audit trail.

Every approval, rejection, rollout, promotion, rollback, alias change, threshold change, workflow
version save, dataset upload and token creation writes one record: who, what, on which target,
before and after, why, when. Each record stores the SHA-256 of its own canonical content and the
hash of the record before it, so editing or deleting any row breaks the chain from that row on;
`manage.py verify_audit` names the first record where it breaks.

Records are appended under a lock (a PostgreSQL advisory lock; SQLite serialises writers by
itself), inside the caller's transaction: the action and its record commit or roll back together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from edumlops.schools.models import District

GENESIS = "0" * 64
LOCK_KEY = 0x45445541  # "EDUA": one advisory lock for the whole trail


class AuditError(RuntimeError):
    pass


class AuditRecord(models.Model):
    class Action(models.TextChoices):
        APPROVAL = "approval", "approval"
        REJECTION = "rejection", "rejection"
        ROLLOUT = "rollout", "rollout"
        PROMOTION = "promotion", "promotion"
        ROLLBACK = "rollback", "rollback"
        ALIAS = "alias_change", "alias change"
        THRESHOLD = "threshold_change", "threshold change"
        WORKFLOW_VERSION = "workflow_version", "workflow version saved"
        DATASET_UPLOAD = "dataset_upload", "dataset upload"
        DATASET_ROLES = "dataset_roles", "dataset roles / outcome rule changed"
        TOKEN = "token_created", "token created"
        ALERT = "alert_decision", "alert acknowledged / resolved"
        LOGIN_LOCKOUT = "login_lockout", "login locked out"
        PRIVACY_RELEASE = "privacy_release", "privacy budget spent (private release)"
        PRIVACY_BUDGET = "privacy_budget", "privacy budget changed"

    district = models.ForeignKey(
        District, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_records"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)  # kept if the account is deleted
    action = models.CharField(max_length=30, choices=Action.choices)
    target_type = models.CharField(max_length=60)
    target_id = models.CharField(max_length=60)
    target_label = models.CharField(max_length=300, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["district", "action", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target_type}:{self.target_id} by {self.actor_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AuditError("Audit records are append-only: they are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditError("Audit records are append-only: they are never deleted.")

    def permission_scope(self) -> District | None:
        return self.district

    def canonical(self) -> bytes:
        created = self.created_at.astimezone(UTC).isoformat(timespec="microseconds")
        payload = {
            "district": self.district_id,
            "actor": self.actor_id,
            "actor_name": self.actor_name,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_label": self.target_label,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "created_at": created,
            "prev_hash": self.prev_hash,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else {}


def record(
    *,
    action: str,
    actor: Any,
    target: Any = None,
    target_type: str = "",
    target_id: Any = "",
    target_label: str = "",
    district: District | None = None,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditRecord:
    """Append one record (inside the caller's transaction when there is one)."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_label = target_label or str(target)
        if district is None and isinstance(target, District):
            district = target
        elif district is None and hasattr(target, "permission_scope"):
            scope = target.permission_scope()
            district = scope if isinstance(scope, District) else getattr(scope, "district", None)
    user = actor if getattr(actor, "is_authenticated", False) else None
    name = user.get_username() if user else (str(actor) if actor else "system")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        last = AuditRecord.objects.order_by("-id").values_list("hash", flat=True).first()
        entry = AuditRecord(
            district=district,
            actor=user,
            actor_name=name[:150],
            action=action,
            target_type=target_type[:60],
            target_id=str(target_id)[:60],
            target_label=target_label[:300],
            before=_jsonable(before),
            after=_jsonable(after),
            reason=reason,
            created_at=timezone.now(),
            prev_hash=last or GENESIS,
        )
        entry.hash = entry.compute_hash()
        entry.save()
    return entry


def revoke_once(obj: Any, actor: Any, reason: str) -> bool:
    """Revoke a key-like object (a model with `revoked_at`) now, with one audit record; False,
    and nothing written, when it was revoked already (its revocation time stays the first)."""
    with transaction.atomic():
        changed = (
            type(obj)
            .objects.filter(pk=obj.pk, revoked_at__isnull=True)
            .update(revoked_at=timezone.now())
        )
        if changed:
            record(
                action=AuditRecord.Action.TOKEN,
                actor=actor,
                target=obj,
                before={"revoked": False},
                after={"revoked": True},
                reason=reason,
            )
    obj.refresh_from_db(fields=["revoked_at"])
    return bool(changed)


@dataclass(frozen=True)
class Break:
    record_id: int
    problem: str


def verify(batch: int = 2000) -> tuple[int, Break | None]:
    """Walk the chain in order; the number of records checked and the first break, if any."""
    previous = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = list(AuditRecord.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not rows:
            return checked, None
        for row in rows:
            if row.prev_hash != previous:
                return checked, Break(
                    row.id,
                    "its link to the record before it does not match: a record before it was "
                    "deleted, inserted or changed",
                )
            if row.compute_hash() != row.hash:
                return checked, Break(
                    row.id, "its content does not match its hash: the row was edited"
                )
            previous = row.hash
            checked += 1
            last_id = row.id
