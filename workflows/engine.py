"""Running workflows: start a run, execute one step, settle the run, approve/reject/cancel.

Celery tasks (workflows.tasks) call into here with ids only. Every state change is a conditional
update or happens under a row lock, so redelivered messages and parallel branches are safe.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import socket
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.schools.models import Membership
from workflows.blocks.base import StepStopped, WaitForApproval
from workflows.compiler import Plan, compile_plan, plan
from workflows.models import (
    Approval,
    Notification,
    Run,
    StepRun,
    TriggerFiring,
    Workflow,
    WorkflowVersion,
    approval_deadline,
)

S = StepRun.Status
R = Run.Status
BAD_UPSTREAM = {S.FAILED, S.BLOCKED, S.REJECTED, S.CANCELLED}
LEASE_SECONDS = 30  # a running step whose heartbeat is older than this may be taken over
HEARTBEAT_SECONDS = 5
PROGRESS_INTERVAL = 0.25  # seconds between two progress writes of one step


class NotReady(Exception):
    """An upstream step (from another segment) has not finished yet: try again shortly."""


class EngineError(Exception):
    """A request the run's state does not allow (e.g. approving a step that is not waiting)."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@functools.lru_cache(maxsize=256)
def _plan_of_version(version_id: int) -> Plan:
    """Versions are immutable, so a worker plans each one once."""
    from workflows.models import WorkflowVersion

    return plan(WorkflowVersion.objects.values_list("graph", flat=True).get(pk=version_id))


def _plan_of(run: Run) -> Plan:
    return _plan_of_version(run.version_id)


# --- starting ---------------------------------------------------------------------------------
def start_run(
    workflow: Workflow,
    *,
    user: Any = None,
    conf: dict[str, Any] | None = None,
    trigger_node: str | None = None,
    version: WorkflowVersion | None = None,
) -> Run:
    """Create the run and its steps, then (on commit) send the first segment to Celery.
    Runs `version` when given, else the newest version that is not a draft."""
    if version is None:
        version = workflow.runnable_version()
        if version is None:
            raise EngineError(
                "The workflow has no runnable version yet: save one without errors to run it."
                if workflow.versions.exists()
                else "The workflow has no saved version yet: save one before running it."
            )
    elif version.workflow_id != workflow.pk:
        raise EngineError(f"Version {version.number} belongs to another workflow.")
    elif version.draft:
        raise EngineError(
            f"Version {version.number} is a draft with {len(version.errors)} error(s): fix them "
            "on the canvas and save a new version to run it."
        )
    p = plan(version.graph)
    triggers = [n for n in p.order if p.block(n).is_trigger]
    if trigger_node is None:
        manual = [n for n in triggers if p.nodes[n].kind == "manual_trigger"]
        if not manual:
            raise EngineError(
                'The workflow has no "Start by hand" trigger: add one to run it from here.'
            )
        trigger_node = manual[0]
    elif trigger_node not in triggers:
        raise EngineError(f'Node "{trigger_node}" is not a trigger of this workflow.')
    active = {trigger_node} | p.descendants(trigger_node)
    with transaction.atomic():
        run = Run.objects.create(
            workflow=workflow,
            version=version,
            trigger_node=trigger_node,
            conf=conf or {},
            started_by=user,
        )
        StepRun.objects.bulk_create(
            StepRun(
                run=run,
                node_id=n,
                kind=p.nodes[n].kind,
                status=S.QUEUED if n in active else S.SKIPPED,
                reason="" if n in active else f'not started by trigger "{trigger_node}"',
            )
            for n in p.order
        )
        first = [n for n in p.first_segment() if n in active]
        signature = compile_plan(p, run.pk, only=first)
        transaction.on_commit(signature.apply_async)
    return run


# --- executing one step -----------------------------------------------------------------------
class StepContext:
    """What a block sees of its run (workflows.blocks.base.Context)."""

    def __init__(self, run: Run, step: StepRun, p: Plan) -> None:
        self.run = run
        self.run_id = run.pk
        self.node_id = step.node_id
        self._step = step
        self._plan = p

    def log(self, message: str) -> None:
        self._step.logs.append({"at": timezone.now().isoformat(), "message": message})

    def progress(self, stage: str, fraction: float) -> None:
        """Report how far a long step is; the run page shows it while the step runs.

        Written straight to the row (at most a few times a second) with the logs so far."""
        now = time.monotonic()
        fraction = max(0.0, min(1.0, float(fraction)))
        last = getattr(self, "_progress_at", 0.0)
        if fraction < 1.0 and now - last < PROGRESS_INTERVAL:
            return
        self._progress_at = now
        self._step.progress = {"stage": stage, "fraction": round(fraction, 4)}
        StepRun.objects.filter(pk=self._step.pk, status=S.RUNNING).update(
            progress=self._step.progress, logs=self._step.logs, heartbeat_at=timezone.now()
        )

    def metric(self, name: str, value: float) -> None:
        self._step.metrics[name] = float(value)

    def upstream_metrics(self) -> dict[str, float]:
        ancestors = self._plan.ancestors(self.node_id)
        order = {n: i for i, n in enumerate(self._plan.order)}
        merged: dict[str, float] = {}
        for step in sorted(
            self.run.steps.filter(node_id__in=ancestors, status=S.SUCCEEDED),
            key=lambda s: order[s.node_id],
        ):
            merged.update(step.metrics)  # nearer ancestors come later and win
        return merged

    def approvals(self) -> list[str]:
        return [
            a.user.get_username()
            for a in Approval.objects.filter(
                run=self.run, node_id=self.node_id, decision=Approval.Decision.APPROVE
            ).select_related("user")
        ]

    def notify(
        self, *, recipients: str, title: str, message: str, email: bool, link: str = ""
    ) -> int:
        users = _recipients(self.run, recipients)
        body = message.format_map(
            _SafeDict(workflow=self.run.workflow.name, run=f"run {self.run.pk}")
        )
        link = link or f"/api/runs/{self.run.pk}/"
        count = 0
        for user in users:
            note, _ = Notification.objects.get_or_create(
                step=self._step, user=user, defaults={"title": title, "body": body, "link": link}
            )
            count += 1
            if email and user.email and note.emailed_at is None:
                send_mail(title, body, settings.DEFAULT_FROM_EMAIL, [user.email])
                Notification.objects.filter(pk=note.pk).update(emailed_at=timezone.now())
        return count


class _SafeDict(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _recipients(run: Run, recipients: str) -> list[Any]:
    district = run.workflow.district
    User = get_user_model()
    if recipients == "owner":
        return [run.workflow.owner] if run.workflow.owner else []
    roles = {"district_staff": "district_staff", "admins": "admin", "teachers": "teacher"}
    role = roles[recipients]
    members = Membership.objects.filter(role=role)
    if role == "teacher":
        members = members.filter(school__district=district)
    else:
        members = members.filter(district=district)
    return list(User.objects.filter(pk__in=members.values("user"), is_active=True).order_by("pk"))


def _claim(step: StepRun, me: str, retrying: bool) -> bool:
    """Take the step for this worker, once. A step another worker holds is taken over only when
    that worker is gone (same host: its process is dead; elsewhere: its heartbeat is stale)."""
    now = timezone.now()
    took = StepRun.objects.filter(pk=step.pk, status=S.QUEUED).update(
        status=S.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        claimed_by=me,
    )
    if took:
        return True
    step.refresh_from_db()
    if step.status != S.RUNNING:
        return False  # done, blocked, cancelled... a redelivered message: nothing to do
    if not (retrying and step.claimed_by == me) and not _holder_gone(step):
        return False
    took = StepRun.objects.filter(pk=step.pk, status=S.RUNNING, attempts=step.attempts).update(
        started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, claimed_by=me
    )
    if took:
        step.started_at, step.heartbeat_at = now, now
        step.attempts += 1
        step.claimed_by = me
    return bool(took)


def _holder_gone(step: StepRun) -> bool:
    host, _, rest = step.claimed_by.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    stale = timezone.now() - dt.timedelta(seconds=LEASE_SECONDS)
    return step.heartbeat_at is None or step.heartbeat_at < stale


class _Heartbeat:
    def __init__(self, step_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(step_id,), daemon=True)

    def _beat(self, step_id: int) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                StepRun.objects.filter(pk=step_id, status=S.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS + 1)


def _inputs(p: Plan, node_id: str, sources: dict[str, StepRun]) -> dict[str, Any]:
    block = p.block(node_id)
    inlets = p.inlets[node_id]
    values: dict[str, Any] = {port.name: [] if port.many else None for port in block.inputs}
    for inlet in inlets:
        value = sources[inlet.source].outputs.get(inlet.source_port)
        if isinstance(values.get(inlet.target_port), list):
            values[inlet.target_port].append(value)
        else:
            values[inlet.target_port] = value
    return values


def execute_step(run_id: int, node_id: str, *, me: str, retrying: bool = False) -> str:
    """Run one step if it is due; returns its status afterwards."""
    step = StepRun.objects.select_related("run__workflow__district").get(
        run_id=run_id, node_id=node_id
    )
    run = step.run
    p = _plan_of(run)
    if run.finished:
        StepRun.objects.filter(pk=step.pk, status=S.QUEUED).update(
            status=S.CANCELLED if run.status == R.CANCELLED else S.SKIPPED,
            reason=f"the run was {run.status}",
        )
        return StepRun.objects.get(pk=step.pk).status
    upstream = list(run.steps.filter(node_id__in=p.upstream(node_id)))
    if step.status == S.QUEUED:
        bad = [u for u in upstream if u.status in BAD_UPSTREAM]
        if bad:
            _mark_blocked(run, [node_id], f'"{bad[0].node_id}" did not succeed: {bad[0].reason}')
            return S.BLOCKED
        if any(u.status == S.SKIPPED for u in upstream):
            StepRun.objects.filter(pk=step.pk, status=S.QUEUED).update(
                status=S.SKIPPED, reason="an input was skipped"
            )
            return S.SKIPPED
        if any(u.status != S.SUCCEEDED for u in upstream):
            paused = run.steps.filter(
                node_id__in=p.ancestors(node_id), status=S.WAITING_APPROVAL
            ).exists()
            if paused:
                return S.QUEUED  # held behind a step waiting for people; approve() sends it
            raise NotReady(node_id)
    if not _claim(step, me, retrying):
        step.refresh_from_db()
        return step.status
    if run.status == R.QUEUED:
        Run.objects.filter(pk=run.pk, status=R.QUEUED).update(status=R.RUNNING)

    block_cls = p.block(node_id)
    node = p.nodes[node_id]
    context = StepContext(run, step, p)
    label = node.label or block_cls.label
    with _Heartbeat(step.pk):
        try:
            params = block_cls.Params.model_validate_json(json.dumps(node.params))
            sources = {u.node_id: u for u in upstream}
            outputs = block_cls().execute(context, _inputs(p, node_id, sources), params)
        except StepStopped as exc:
            reason = f'Stopped at "{label}" ({node_id}): {exc}'
            step.finish(S.FAILED, reason=reason)
            _mark_blocked(run, sorted(p.descendants(node_id)), reason)
            _set_run_reason(run, reason)
            return S.FAILED
        except WaitForApproval as exc:
            step.status = S.WAITING_APPROVAL
            step.reason = str(exc)
            step.save(update_fields=["status", "reason", "logs", "metrics"])
            # district staff hear of it once per step, in the app and by e-mail
            context.notify(
                recipients="district_staff",
                title=f"Approval needed: {label} in {run.workflow.name}"[:200],
                message=f"{exc}\n\nDecide in the approvals inbox.",
                email=True,
                link="/approvals/",
            )
            return S.WAITING_APPROVAL
        except Exception as exc:
            if _is_transient(exc):
                raise
            reason = f'"{label}" ({node_id}) failed: {exc}'
            step.finish(S.FAILED, error=f"{type(exc).__name__}: {exc}", reason=reason)
            _mark_blocked(run, sorted(p.descendants(node_id)), reason)
            _set_run_reason(run, reason)
            return S.FAILED
    step.finish(S.SUCCEEDED, outputs=outputs, reason="")
    return S.SUCCEEDED


def _is_transient(exc: Exception) -> bool:
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return isinstance(exc, OperationalError | InterfaceError | RedisConnectionError)


def _mark_blocked(run: Run, node_ids: list[str], reason: str) -> None:
    run.steps.filter(node_id__in=node_ids, status=S.QUEUED).update(
        status=S.BLOCKED, reason=reason, finished_at=timezone.now()
    )


def _set_run_reason(run: Run, reason: str) -> None:
    Run.objects.filter(pk=run.pk, reason="").update(reason=reason)


# --- settling the run -------------------------------------------------------------------------
def settle(run_id: int) -> str:
    """After a segment: decide the run's status from its steps (idempotent)."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.finished:
            return run.status
        p = _plan_of(run)
        steps = {s.node_id: s for s in run.steps.all()}
        waiting = [n for n, s in steps.items() if s.status == S.WAITING_APPROVAL]
        held: set[str] = set()
        for gate in waiting:
            held |= p.descendants(gate)
        active = [
            n for n, s in steps.items() if s.status in (S.QUEUED, S.RUNNING) and n not in held
        ]
        if active:
            return run.status  # another segment is still on its way and will settle
        if waiting:
            run.status = R.WAITING_APPROVAL
            run.save(update_fields=["status"])
            return run.status
        failed = [s for s in steps.values() if s.status in (S.FAILED, S.BLOCKED)]
        if failed:
            first = next((s for s in failed if s.status == S.FAILED), failed[0])
            run.end(R.FAILED, run.reason or first.reason)
        else:
            run.end(R.SUCCEEDED)
        return run.status


# --- people's decisions -----------------------------------------------------------------------
def _waiting_gate(run: Run, node_id: str | None) -> StepRun:
    waiting = run.steps.filter(status=S.WAITING_APPROVAL)
    if node_id:
        waiting = waiting.filter(node_id=node_id)
    gates = list(waiting)
    if not gates:
        raise EngineError("Nothing in this run is waiting for approval.")
    if len(gates) > 1:
        names = ", ".join(g.node_id for g in gates)
        raise EngineError(f"Several steps wait for approval ({names}): name one with node_id.")
    return gates[0]


def _decide(
    run: Run, user: Any, decision: str, comment: str, node_id: str | None
) -> tuple[Run, StepRun]:
    """Lock the run, find the waiting gate, record this person's one decision on it."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    gate = _waiting_gate(run, node_id)
    if Approval.objects.filter(run=run, node_id=gate.node_id, user=user).exists():
        raise EngineError("You have already decided on this step.")
    Approval.objects.create(
        run=run, node_id=gate.node_id, user=user, decision=decision, comment=comment
    )
    audit.record(
        action=(
            audit.AuditRecord.Action.APPROVAL
            if decision == Approval.Decision.APPROVE
            else audit.AuditRecord.Action.REJECTION
        ),
        actor=user,
        target=run,
        target_label=f"run {run.pk} of {run.workflow.name}, step {gate.node_id}",
        before={"status": gate.status},
        after={"decision": decision, "step": gate.node_id},
        reason=comment,
    )
    return run, gate


def approve(run: Run, user: Any, comment: str, node_id: str | None = None) -> Run:
    with transaction.atomic():
        run, gate = _decide(run, user, Approval.Decision.APPROVE, comment, node_id)
        p = _plan_of(run)
        quorum = p.nodes[gate.node_id].params.get("quorum", 1)
        approvals = Approval.objects.filter(
            run=run, node_id=gate.node_id, decision="approve"
        ).count()
        gate.logs.append(
            {"at": timezone.now().isoformat(), "message": f"Approved by {user}: {comment}"}
        )
        if approvals < quorum:
            gate.reason = f"waiting for {quorum - approvals} more approval(s) from district staff"
            gate.save(update_fields=["logs", "reason"])
            return run
        # Resume: the gate runs again (it now sees its quorum) and releases what it held.
        gate.status = S.QUEUED
        gate.save(update_fields=["status", "logs"])
        run.status = R.RUNNING
        run.save(update_fields=["status"])
        below = p.descendants(gate.node_id)
        waiting = set(run.steps.filter(status=S.WAITING_APPROVAL).values_list("node_id", flat=True))
        held: set[str] = set()  # behind another gate: released by that gate's approval
        for other in p.approval_nodes():
            if other != gate.node_id and (other in below or other in waiting):
                held |= p.descendants(other)
        queued = set(run.steps.filter(status=S.QUEUED).values_list("node_id", flat=True))
        release = [
            n
            for n in p.order
            if n == gate.node_id or (n in below and n in queued and n not in held)
        ]
        transaction.on_commit(compile_plan(p, run.pk, only=release).apply_async)
    return run


def reject(run: Run, user: Any, comment: str, node_id: str | None = None) -> Run:
    with transaction.atomic():
        run, gate = _decide(run, user, Approval.Decision.REJECT, comment, node_id)
        _end_rejected(run, gate, f'Rejected by {user} at "{gate.node_id}": {comment}')
    return run


def _end_rejected(run: Run, gate: StepRun, reason: str) -> None:
    gate.finish(S.REJECTED, reason=reason)
    run.steps.filter(status__in=[S.QUEUED, S.WAITING_APPROVAL]).update(
        status=S.SKIPPED, reason=f"not run: {reason}"
    )
    run.end(R.REJECTED, reason)


def cancel(run: Run, user: Any) -> Run:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.finished:
            raise EngineError(f"The run has already ended ({run.status}).")
        reason = f"Cancelled by {user}"
        run.steps.filter(status__in=[S.QUEUED, S.WAITING_APPROVAL]).update(
            status=S.CANCELLED, reason=reason, finished_at=timezone.now()
        )
        run.end(R.CANCELLED, reason)
    return run


def expire_approvals() -> int:
    """Reject every approval that waited longer than its gate's timeout (run by celery beat)."""
    expired = 0
    for step in StepRun.objects.filter(status=S.WAITING_APPROVAL).select_related("run__version"):
        node = next(n for n in step.run.version.graph["nodes"] if n["id"] == step.node_id)
        hours = node.get("params", {}).get("timeout_hours", 0)
        deadline = approval_deadline(step, hours)
        if deadline and deadline <= timezone.now():
            with transaction.atomic():
                run = Run.objects.select_for_update().get(pk=step.run_id)
                step.refresh_from_db()
                if step.status == S.WAITING_APPROVAL:
                    _end_rejected(run, step, f"No decision within {hours:g} hours")
                    expired += 1
    return expired


def fire_term_starts(today: Any = None) -> list[Run]:
    """Start every workflow whose latest version has a term-start trigger due today."""
    today = today or timezone.localdate()
    started = []
    for workflow in Workflow.objects.select_related("district"):
        version = workflow.runnable_version()
        if version is None:
            continue
        for node in version.graph.get("nodes", []):
            if node.get("kind") != "term_start_trigger":
                continue
            offset = dt.timedelta(days=node.get("params", {}).get("days_after_start", 0))
            for term in workflow.district.terms():
                if term.start + offset != today:
                    continue
                firing, created = TriggerFiring.objects.get_or_create(
                    workflow=workflow, node_id=node["id"], key=f"term-{term.pk}"
                )
                if created:
                    run = start_run(workflow, conf={"term": term.name}, trigger_node=node["id"])
                    firing.run = run
                    firing.save(update_fields=["run"])
                    started.append(run)
    return started
