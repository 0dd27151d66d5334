"""Workflows, their immutable versions, runs and steps, approvals and notifications.

State changes live here as methods; `workflows.engine` runs one step, `workflows.tasks` wraps it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.schools.models import District

TERMINAL_RUN = {"succeeded", "failed", "rejected", "cancelled"}


class Workflow(models.Model):
    district = models.ForeignKey(District, on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["district", "name"], name="unique_workflow_name")
        ]

    def __str__(self) -> str:
        return self.name

    def permission_scope(self) -> District:
        return self.district

    def latest_version(self) -> WorkflowVersion | None:
        return self.versions.order_by("-number").first()

    def runnable_version(self) -> WorkflowVersion | None:
        """The newest version that is not a draft: what runs and what triggers listen to."""
        return self.versions.filter(draft=False).order_by("-number").first()

    @transaction.atomic
    def save_version(
        self,
        graph: dict[str, Any],
        message: str,
        user: Any,
        *,
        errors: list[dict[str, Any]] | None = None,
    ) -> WorkflowVersion:
        """A new immutable version. The caller has validated the graph; a graph with `errors`
        is saved as a draft, which can be opened and edited but not run."""
        last = (
            WorkflowVersion.objects.select_for_update()
            .filter(workflow=self)
            .order_by("-number")
            .first()
        )
        version = WorkflowVersion.objects.create(
            workflow=self,
            number=(last.number + 1) if last else 1,
            graph=graph,
            message=message,
            created_by=user,
            draft=bool(errors),
            errors=errors or [],
        )
        audit.record(
            action=audit.AuditRecord.Action.WORKFLOW_VERSION,
            actor=user,
            target=self,
            before={"version": last.number} if last else {},
            after={
                "version": version.number,
                "nodes": len(graph.get("nodes", [])),
                **({"draft": True, "errors": len(errors)} if errors else {}),
            },
            reason=message,
        )
        return version


class WorkflowVersion(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # saved with validation errors: kept so work is not lost, but never run
    draft = models.BooleanField(default=False)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.workflow} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Workflow versions are immutable: save a new version instead.")
        super().save(*args, **kwargs)


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING_APPROVAL = "waiting_approval"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REJECTED = "rejected"
        CANCELLED = "cancelled"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger_node = models.CharField(max_length=64)
    conf = models.JSONField(default=dict, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.workflow}"

    def permission_scope(self) -> District:
        return self.workflow.district

    @property
    def started_by_label(self) -> str:
        if self.started_by:
            return self.started_by.get_full_name() or self.started_by.get_username()
        return "a trigger"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_RUN

    def end(self, status: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason or self.reason
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "reason", "finished_at"])


class StepRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        BLOCKED = "blocked"
        SKIPPED = "skipped"
        WAITING_APPROVAL = "waiting_approval"
        # waiting on the world (edge servers confirming, a pilot's minimum days): no worker is
        # held; the reconciler sends the step again at `wake_at`
        WAITING = "waiting"
        REJECTED = "rejected"
        CANCELLED = "cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    logs = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)  # {"stage": ..., "fraction": 0..1}
    error = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    # The outbox: set in the transaction that made the step ready, with each (re-)send of its
    # message; a queued step whose message is older than a grace period is sent again.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatches = models.PositiveIntegerField(default=0)
    wake_at = models.DateTimeField(null=True, blank=True)  # a waiting step's next check
    state = models.JSONField(default=dict, blank=True)  # a waiting block's memory between checks
    # what a step asked district staff to approve; after approval exactly this is applied
    proposal = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id"], name="unique_step_per_node")
        ]
        indexes = [
            # the reconciler's sweep reads only unfinished steps: a small partial index
            models.Index(
                fields=["status"],
                condition=Q(status__in=["queued", "running", "waiting"]),
                name="steprun_unfinished",
            )
        ]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status})"

    def finish(self, status: str, **fields: Any) -> None:
        now = timezone.now()
        self.status = status
        self.finished_at = now
        if self.started_at:
            self.duration_seconds = (now - self.started_at).total_seconds()
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(
            update_fields=["status", "finished_at", "duration_seconds", "logs", "metrics", *fields]
        )


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="approvals")
    node_id = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_id", "user"], name="one_decision_each")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.decision}d {self.node_id} of run {self.run_id}"


class Notification(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)  # a page, never an API URL
    link_label = models.CharField(max_length=100, blank=True)  # what the link opens, in words
    step = models.ForeignKey(
        StepRun, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["step", "user"],
                condition=Q(step__isnull=False),
                name="one_notification_per_step_and_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.title} → {self.user}"

    @property
    def read(self) -> bool:
        return self.read_at is not None

    @classmethod
    def mark_read(cls, user: Any, pk: int | None = None) -> int:
        """Mark one of the user's notifications (or all of them) read; the number marked."""
        unread = cls.objects.filter(user=user, read_at__isnull=True)
        if pk is not None:
            unread = unread.filter(pk=pk)
        return unread.update(read_at=timezone.now())


class EngineLease(models.Model):
    """A named lease that one process holds at a time (the reconciler's turn)."""

    name = models.CharField(max_length=40, primary_key=True)
    holder = models.CharField(max_length=200, blank=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.until}"


class TriggerFiring(models.Model):
    """A schedule or calendar trigger fired once for this key (e.g. a term), never twice."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="firings")
    node_id = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="+")
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "node_id", "key"], name="fire_once")
        ]

    def __str__(self) -> str:
        return f"{self.workflow} {self.node_id} fired for {self.key}"


def models_of(run: Run) -> list:
    """The model versions a run works on: made by it, or named in its steps' outputs."""
    from edumlops.registry.models import ModelVersion

    ids = set(ModelVersion.objects.filter(workflow_run=run).values_list("pk", flat=True))
    for outputs in run.steps.values_list("outputs", flat=True):
        for value in (outputs or {}).values():
            if isinstance(value, dict) and isinstance(value.get("model_version"), int):
                ids.add(value["model_version"])
    return list(ModelVersion.objects.filter(pk__in=ids, district=run.workflow.district))


def approval_deadline(step: StepRun, timeout_hours: float) -> dt.datetime | None:
    if not timeout_hours or step.started_at is None:
        return None
    return step.started_at + dt.timedelta(hours=timeout_hours)
