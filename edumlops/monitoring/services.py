"""Raising, acknowledging and resolving alerts: one open alert per monitor, school and cause
(a repeat refreshes it), every decision with a comment, interventions in the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.monitoring.models import Alert
from edumlops.schools.models import District, School


class AlertError(ValueError):
    pass


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
        transaction.on_commit(lambda: start_alert_workflows(alert.pk))
    return alert, True


SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def start_alert_workflows(alert_id: int) -> list[Any]:
    """Start every workflow of the district whose latest version has an 'on alert' trigger that
    matches this alert (once per workflow and alert)."""
    from workflows import engine
    from workflows.models import TriggerFiring, Workflow

    alert = Alert.objects.select_related("school").get(pk=alert_id)
    started = []
    for workflow in Workflow.objects.filter(district=alert.district):
        version = workflow.runnable_version()
        for node in version.graph.get("nodes", []) if version else []:
            if node.get("kind") != "on_alert_trigger":
                continue
            params = node.get("params", {})
            if params.get("monitor", "drift") not in ("any", alert.monitor):
                continue
            if SEVERITY[alert.severity] < SEVERITY[params.get("min_severity", "critical")]:
                continue
            firing, created = TriggerFiring.objects.get_or_create(
                workflow=workflow, node_id=node["id"], key=f"alert-{alert.pk}"
            )
            if created:
                try:
                    run = engine.start_run(
                        workflow,
                        conf={
                            "alert": alert.pk,
                            "school": alert.school_id,
                            "summary": f"{alert.severity} {alert.monitor} alert: {alert.cause}",
                        },
                        trigger_node=node["id"],
                    )
                except engine.BrokerUnavailable as exc:
                    run = exc.run  # saved: the reconciler sends it once the broker is back
                firing.run = run
                firing.save(update_fields=["run"])
                started.append(run)
    return started


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
