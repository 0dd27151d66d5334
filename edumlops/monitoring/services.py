"""Raising, acknowledging and resolving alerts: one open alert per monitor, school and cause
(a repeat refreshes it), every decision with a comment, interventions in the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.core.hooks import Hook
from edumlops.monitoring.models import Alert
from edumlops.schools.models import District, School


class AlertError(ValueError):
    pass


# Sent once the new alert is committed, with `alert=`: the workflows app starts the workflows
# whose "on alert" trigger matches (a domain app never imports the engine).
alert_raised = Signal()

# {alert id: [what was started because of it]} for the alerts page; registered by workflows
alert_followups: Hook[dict[int, list[Any]]] = Hook("alert_followups", lambda alert_ids: {})


def raise_alert(
    *,
    district: District,
    school: School | None,
    monitor: str,
    cause: str,
    severity: str,
    message: str,
) -> tuple[Alert, bool]:
    """The open alert for (monitor, school, cause), created or refreshed; True when new."""
    lookup = {"monitor": monitor, "school": school, "cause": cause[:200]}
    with transaction.atomic():
        existing = (
            Alert.objects.select_for_update()
            .exclude(status=Alert.Status.RESOLVED)
            .filter(**lookup)
            .first()
        )
        if existing is not None:
            worse = [Alert.Severity.INFO, Alert.Severity.WARNING, Alert.Severity.CRITICAL]
            if worse.index(severity) > worse.index(existing.severity):
                existing.severity = severity
            existing.message = message
            existing.save(update_fields=["severity", "message"])
            return existing, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    district=district, severity=severity, message=message, **lookup
                )
        except IntegrityError:  # raised by a parallel check a moment ago
            return Alert.objects.exclude(status=Alert.Status.RESOLVED).get(**lookup), False
        transaction.on_commit(lambda: alert_raised.send(sender=Alert, alert=alert))
    return alert, True


def decide(alert: Alert, user: Any, status: str, comment: str) -> Alert:
    if status not in (Alert.Status.ACKNOWLEDGED, Alert.Status.RESOLVED):
        raise AlertError("An alert is acknowledged or resolved.")
    if not comment.strip():
        raise AlertError("Write a comment: it is kept with the alert's history.")
    if alert.status == Alert.Status.RESOLVED:
        raise AlertError("This alert is resolved already.")
    with transaction.atomic():
        before = alert.status
        alert.status = status
        if status == Alert.Status.RESOLVED:
            alert.resolved_at = timezone.now()
            alert.resolved_by = user if getattr(user, "is_authenticated", False) else None
        alert.save(update_fields=["status", "resolved_at", "resolved_by"])
        audit.record(
            action=audit.AuditRecord.Action.ALERT,
            actor=user,
            target=alert,
            before={"status": before},
            after={"status": status},
            reason=comment,
        )
    return alert
