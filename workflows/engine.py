"""Running workflows: start a run, execute one step, settle the run, approve/reject/cancel.

The database drives progress; the broker only delivers. A step is sent to Celery (one
`run_step` message per step, ids only) in the same transaction that made it ready — its
`dispatched_at` is the outbox — and each step, when it ends, makes its successors ready in the
transaction that records its end. What a lost message, a restarted broker or a killed worker
leaves behind, `workflows.reconciler` finds in the database and sends again. Every state change
is a conditional update or happens under a row lock, so redelivered messages, takeovers and
parallel branches are safe (docs/durability.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from edumlops.audit import models as audit
from edumlops.schools.models import Membership, School
from workflows.blocks.base import StepStopped, WaitFor, WaitForApproval
from workflows.compiler import InvalidGraph, Plan, plan, step_messages
from workflows.models import (
    Approval,
    Notification,
    Run,
    StepRun,
    Workflow,
    WorkflowVersion,
    approval_deadline,
)

log = logging.getLogger(__name__)

S = StepRun.Status
R = Run.Status
BAD_UPSTREAM = {S.FAILED, S.BLOCKED, S.REJECTED, S.CANCELLED}
DONE = BAD_UPSTREAM | {S.SUCCEEDED, S.SKIPPED}
HEARTBEAT_SECONDS = 5
HEARTBEAT_AFTER = 1.0  # steps shorter than this never beat: their claim is their heartbeat
PROGRESS_INTERVAL = 0.25  # seconds between two progress writes of one step
FOLLOW_SECONDS = 10  # a task goes on with the next step of its chain for this long at most


def lease_seconds() -> int:
    """A running step whose heartbeat is older than this is taken over by the reconciler."""
    return int(getattr(settings, "EDUMLOPS_STEP_LEASE_SECONDS", 30))


class EngineError(Exception):
    """A request the run's state does not allow (e.g. approving a step that is not waiting)."""


class NeedsChoice(EngineError):
    """Running now needs a choice the caller did not make (which trigger, which school);
    `on_page` says where to make it on the canvas."""

    def __init__(self, message: str, on_page: str) -> None:
        super().__init__(message)
        self.on_page = on_page


class BrokerUnavailable(Exception):
    """The decision or the run is saved, but its first message could not reach the broker; the
    reconciler sends it once the broker is back."""

    def __init__(self, run: Run, what: str, cause: BaseException) -> None:
        super().__init__(
            f"The task broker (Redis) cannot be reached ({type(cause).__name__}): {what} is "
            "saved and goes on by itself once the broker is back. Check that Redis is running "
            "(REDIS_URL) and look at the run's page in a minute."
        )
        self.run = run


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import RedisError

    return (KombuOperationalError, RedisError, OSError)


def worker_id(task_id: str | None = None) -> str:
    """host:pid:task — the task id stays the same across a task's retries, so a retry may take
    back its own claim from any process."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id or threading.get_ident()}"


@functools.lru_cache(maxsize=256)
def _plan_of_version(version_id: int) -> Plan:
    """Versions are immutable, so a worker plans each one once."""
    return plan(WorkflowVersion.objects.values_list("graph", flat=True).get(pk=version_id))


@functools.lru_cache(maxsize=4096)
def _version_of_run(run_id: int) -> int:
    return Run.objects.values_list("version_id", flat=True).get(pk=run_id)


@functools.lru_cache(maxsize=4096)
def _trigger_of_run(run_id: int) -> str:
    return Run.objects.values_list("trigger_node", flat=True).get(pk=run_id)


def started_upstream(p: Plan, run_id: int, node_id: str) -> list[str]:
    """The inputs of a step that its run started: a block fed by two triggers (a schedule and
    a "Start by hand") waits for the one that fired, not for the one that did not."""
    started = p.started_by(_trigger_of_run(run_id))
    return [u for u in p.upstream(node_id) if u in started]


def _plan_of(run: Run | int) -> Plan:
    if isinstance(run, Run):
        return _plan_of_version(run.version_id)
    return _plan_of_version(_version_of_run(run))


# --- sending steps ------------------------------------------------------------------------------
def publish(run_id: int, node_ids: Iterable[str]) -> BaseException | None:
    """Send one message per step; a broker that cannot be reached is reported, not raised (the
    steps' dispatched_at is set, so the reconciler sends them again)."""
    try:
        for message in step_messages(run_id, node_ids):
            message.apply_async()
    except _broker_errors() as exc:
        log.warning("run %s: could not send %s to the broker: %s", run_id, list(node_ids), exc)
        return exc
    return None


def _dispatch(run_id: int, node_ids: list[str], failures: list[BaseException] | None = None):
    """Inside a transaction: mark the steps sent and send them once it commits."""
    if not node_ids:
        return
    StepRun.objects.filter(run_id=run_id, node_id__in=node_ids, status=S.QUEUED).update(
        dispatched_at=timezone.now(), dispatches=1
    )

    def send() -> None:
        failed = publish(run_id, node_ids)
        if failed is not None and failures is not None:
            failures.append(failed)

    transaction.on_commit(send)


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
    p = _plan_of_version(version.pk)  # versions are immutable: planned once per process
    trigger_node = _pick_trigger(p, trigger_node)
    conf = dict(conf or {})
    if user is not None and not p.block(trigger_node).starts_by_hand:
        _check_fired_by_hand(workflow, p, trigger_node, conf)
    active = p.started_by(trigger_node)
    with transaction.atomic():
        run = Run.objects.create(
            workflow=workflow,
            version=version,
            trigger_node=trigger_node,
            conf=conf,
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
        failures: list[BaseException] = []
        _dispatch(run.pk, [trigger_node], failures)
    if failures:  # the run is saved; the reconciler sends it when the broker is back
        raise BrokerUnavailable(run, f"run {run.pk}", failures[0])
    return run


def trigger_label(p: Plan, node_id: str) -> str:
    """A node (a trigger) as people name it: its label on the canvas, else its block's."""
    return p.nodes[node_id].label or p.block(node_id).label


def _pick_trigger(p: Plan, trigger_node: str | None) -> str:
    """The trigger a run starts from: the one named, else the only one, else the one "Start by
    hand"; several and none named is a question for the caller."""
    triggers = [n for n in p.order if p.block(n).is_trigger]
    names = ", ".join(f'"{n}" ({trigger_label(p, n)})' for n in triggers)
    if trigger_node is not None:
        if trigger_node not in triggers:
            raise EngineError(
                f'Node "{trigger_node}" is not a trigger of this workflow: name one of {names}.'
            )
        return trigger_node
    if len(triggers) == 1:
        return triggers[0]
    manual = [n for n in triggers if p.block(n).starts_by_hand]
    if len(manual) == 1:
        return manual[0]
    raise NeedsChoice(
        f"The workflow has {len(triggers)} triggers ({names}): choose the one to fire now "
        "(trigger_node).",
        f"The workflow has {len(triggers)} triggers: choose the one to fire now beside the "
        "Run button.",
    )


def _check_fired_by_hand(workflow: Workflow, p: Plan, trigger_node: str, conf: dict) -> None:
    """A trigger that waits for the world (a schedule, a term, an alert) fired by a person: the
    run has none of what the world would have given it. Blocks that need the school of the
    alert ask for one, given with the run (`school`)."""
    label = trigger_label(p, trigger_node)
    needing = [n for n in sorted(p.descendants(trigger_node)) if p.block(n).needs_school]
    school = conf.get("school")
    if needing and school is None:
        blocks = ", ".join(f'"{trigger_label(p, n)}" ({n})' for n in needing)
        raise NeedsChoice(
            f"Fired by hand, the '{label}' trigger has no alert, and {blocks} needs the school "
            "an alert is about: choose a school to run it for (school).",
            f"Fired by hand, the '{label}' trigger has no alert: choose the school to run it "
            "for beside the Run button.",
        )
    if school is not None and (
        not isinstance(school, int)
        or not School.objects.filter(pk=school, district=workflow.district_id).exists()
    ):
        raise EngineError(
            f"There is no school {school!r} in {workflow.district}: choose one of its schools."
        )


def started_text(run: Run) -> str:
    """Who or what started the run, in words: "Started by hand by ana: fired the 'Every
    Monday' trigger now"."""
    try:
        p = _plan_of(run)
    except InvalidGraph:  # a version whose blocks changed since: say only who started it
        return f"Started by {run.started_by_label}"
    if run.trigger_node not in p.nodes:
        return f"Started by {run.started_by_label}"
    label = trigger_label(p, run.trigger_node)
    if run.started_by_id is None:
        summary = (run.conf or {}).get("summary")
        return f"Started by the '{label}' trigger" + (f" ({summary})" if summary else "")
    if p.block(run.trigger_node).starts_by_hand:
        return f"Started by hand by {run.started_by_label}"
    return f"Started by hand by {run.started_by_label}: fired the '{label}' trigger now"


def nothing_ran(statuses: Iterable[tuple[str, str]]) -> bool:
    """(kind, status) of a run's steps: every step after the trigger was skipped."""
    after = [status for kind, status in statuses if kind not in _trigger_kinds()]
    return bool(after) and all(status == S.SKIPPED for status in after)


@functools.cache
def _trigger_kinds() -> frozenset[str]:
    from workflows.blocks import REGISTRY

    return frozenset(kind for (kind, _), block in REGISTRY.items() if block.is_trigger)


def status_word(run: Run) -> str:
    """The run's status in a word or two: "passed", "nothing ran", "waiting for approval"."""
    if run.status == R.SUCCEEDED and run.reason.startswith(NOTHING_RAN):
        return "nothing ran"
    words = {R.SUCCEEDED: "passed", R.WAITING_APPROVAL: "waiting for approval"}
    return words.get(run.status, str(run.status))


def summary_text(run: Run) -> str:
    """The run's status as people read it; a run in which nothing ran says so."""
    if status_word(run) == "nothing ran":
        return run.reason
    text = status_word(run)
    return f"{text}: {run.reason}" if run.reason else text


NOTHING_RAN = "Nothing ran"


# --- executing one step -----------------------------------------------------------------------
class StepContext:
    """What a block sees of its run (workflows.blocks.base.Context)."""

    def __init__(self, run_id: int, step: StepRun, p: Plan) -> None:
        self.run_id = run_id
        self.node_id = step.node_id
        self._step = step
        self._plan = p
        self.state: dict[str, Any] = dict(step.state or {})
        self.proposal: dict[str, Any] | None = step.proposal
        self.progress_so_far: dict[str, Any] = {}

    @functools.cached_property
    def run(self) -> Run:
        return Run.objects.select_related("workflow__district", "started_by").get(pk=self.run_id)

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
        self.progress_so_far = self._step.progress
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
            StepRun.objects.filter(run_id=self.run_id, node_id__in=ancestors, status=S.SUCCEEDED),
            key=lambda s: order[s.node_id],
        ):
            merged.update(step.metrics)  # nearer ancestors come later and win
        return merged

    def approvals(self) -> list[str]:
        return [
            a.user.get_username()
            for a in Approval.objects.filter(
                run_id=self.run_id, node_id=self.node_id, decision=Approval.Decision.APPROVE
            ).select_related("user")
        ]

    def notify(
        self,
        *,
        recipients: str,
        title: str,
        message: str,
        email: bool,
        link: str = "",
        link_label: str = "",
    ) -> int:
        """One notification per person and step, and at most one e-mail: the e-mail is
        claimed (emailed_at) in the transaction that sends it, so a step run again after its
        worker died does not send it twice unless it died in the middle of sending. The
        notification links to a page (the run's page unless `link` names another)."""
        users = _recipients(self.run, recipients)
        body = message.format_map(_SafeDict(workflow=self.run.workflow.name, run=f"#{self.run_id}"))
        if not link:
            link = reverse("run", args=[self.run_id])
            link_label = link_label or f"Open run #{self.run_id} of {self.run.workflow.name}"
        link_label = (link_label or "Open")[:100]
        count = 0
        for user in users:
            note, _ = Notification.objects.get_or_create(
                step=self._step,
                user=user,
                defaults={"title": title, "body": body, "link": link, "link_label": link_label},
            )
            count += 1
            if email and user.email and note.emailed_at is None:
                with transaction.atomic():
                    claimed = Notification.objects.filter(
                        pk=note.pk, emailed_at__isnull=True
                    ).update(emailed_at=timezone.now())
                    if claimed:
                        send_mail(title, body, settings.DEFAULT_FROM_EMAIL, [user.email])
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


_CLAIM_FIELDS = (
    "id, run_id, node_id, kind, status, attempts, claimed_by, started_at, heartbeat_at, logs, "
    "metrics, state, proposal"
)
# what taking a step writes (one definition for _claim and _hand_over); _claim_params fills it
_CLAIM_SET = (
    "status = %s, started_at = COALESCE(started_at, %s), heartbeat_at = %s, "
    "attempts = attempts + 1, claimed_by = %s, dispatched_at = COALESCE(dispatched_at, %s), "
    "dispatches = GREATEST(dispatches, 1)"
)


def _claim_params(now: dt.datetime, me: str) -> list[Any]:
    return [S.RUNNING, now, now, me, now]


def _claim(
    run_id: int, node_id: str, me: str, task_id: str | None, *, fresh: bool = False
) -> StepRun | None:
    """Take a step in one UPDATE … RETURNING. A step that was sent (queued, dispatched), or with
    `fresh` one just made ready by this worker's previous step (queued, not yet sent: it is
    marked sent and taken in the same statement); a retry of the same task (same task id, any
    process) takes back its own claim. None: not ours to run (done, running elsewhere,
    cancelled, not ready yet, or a redelivered message)."""
    now = timezone.now()
    table = StepRun._meta.db_table
    retry = f"%:{task_id}" if task_id else ""  # a running step always names its holder
    sent = "dispatched_at IS NULL" if fresh else "dispatched_at IS NOT NULL"
    sql = (
        f"UPDATE {table} SET {_CLAIM_SET} WHERE run_id = %s AND node_id = %s AND ("
        f"(status = %s AND {sent}) OR (status = %s AND claimed_by LIKE %s)) "
        f"RETURNING {_CLAIM_FIELDS}"
    )
    if connection.vendor == "sqlite":
        sql = sql.replace("GREATEST(", "MAX(")
    params = [*_claim_params(now, me), run_id, node_id, S.QUEUED, S.RUNNING, retry]
    rows = list(StepRun.objects.raw(sql, params))
    return rows[0] if rows else None


class Interrupted(Exception):
    """A transient error (database or broker connection) in `node_id`, which may be a step this
    task went on to after the one it was sent for: the task releases and retries that one."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


def release_claim(run_id: int, node_id: str, task_id: str | None) -> bool:
    """Before a retry after a transient error: give the step back (queued and sent), so that
    any worker process may retake it. Best effort: when the database is what failed, the
    reconciler takes the step over after its lease."""
    from django.db import close_old_connections

    close_old_connections()
    try:
        return bool(
            StepRun.objects.filter(
                run_id=run_id,
                node_id=node_id,
                status=S.RUNNING,
                claimed_by__endswith=f":{task_id}",
            ).update(status=S.QUEUED, claimed_by="", dispatched_at=timezone.now())
        )
    except Exception as exc:  # noqa: BLE001 — the database may still be away
        log.warning("could not release %s of run %s: %s", node_id, run_id, exc)
        connection.close()
        return False


class _Beats:
    """One heartbeat thread per process for every step it runs longer than HEARTBEAT_AFTER:
    a step costs a dict entry, not a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, step_id: int) -> None:
        with self._lock:
            self._running[step_id] = time.monotonic()
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
                self._thread.start()

    def remove(self, step_id: int) -> None:
        with self._lock:
            self._running.pop(step_id, None)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            now = time.monotonic()
            with self._lock:
                ids = [i for i, since in self._running.items() if now - since >= HEARTBEAT_AFTER]
            if not ids:
                continue
            try:
                StepRun.objects.filter(pk__in=ids, status=S.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
            except Exception as exc:  # noqa: BLE001 — keep beating once the database is back
                log.warning("heartbeat failed: %s", exc)
                connection.close()


BEATS = _Beats()


def _inputs(
    p: Plan, node_id: str, outputs: dict[str, dict[str, Any]], live: list[str]
) -> dict[str, Any]:
    block = p.block(node_id)
    values: dict[str, Any] = {port.name: [] if port.many else None for port in block.inputs}
    for inlet in p.inlets[node_id]:
        if inlet.source not in live:
            continue  # from a trigger that did not start this run: not an input of it
        value = (outputs.get(inlet.source) or {}).get(inlet.source_port)
        if isinstance(values.get(inlet.target_port), list):
            values[inlet.target_port].append(value)
        else:
            values[inlet.target_port] = value
    return values


def execute_step(
    run_id: int, node_id: str, *, me: str, task_id: str | None = None, follow: bool = False
) -> str:
    """Run one step if it was sent and nobody else holds it; returns its status afterwards.

    With `follow` (the Celery task), the worker goes on with one of the steps its step made
    ready — claimed in the transaction that ends the step, so the database still holds every
    hand-over — and sends the others; a chain costs one message, not one per step."""
    step = _claim(run_id, node_id, me, task_id)
    if step is None:
        found = StepRun.objects.filter(run_id=run_id, node_id=node_id).values_list("status")
        return found[0][0] if found else "missing"
    known: dict[str, Any] = {}  # outputs of the steps this call ran: no need to read them
    first = None
    began = time.monotonic()
    while step is not None:
        # go on only for a while: a warm shutdown or the next run's steps wait no longer
        follower = me if follow and time.monotonic() - began < FOLLOW_SECONDS else None
        try:
            status, step = _execute_claimed(run_id, step, follower, known)
        except Exception as exc:
            if _is_transient(exc) and step.node_id != node_id:
                raise Interrupted(step.node_id) from exc
            raise
        first = first or status
    return first


def _execute_claimed(
    run_id: int, step: StepRun, follower: str | None, known: dict[str, Any]
) -> tuple[str, StepRun | None]:
    node_id = step.node_id
    p = _plan_of(run_id)
    block_cls = p.block(node_id)
    if block_cls.is_trigger:
        Run.objects.filter(pk=run_id, status=R.QUEUED).update(status=R.RUNNING)
    live = started_upstream(p, run_id, node_id)
    missing = [u for u in live if u not in known]
    outputs = {u: known[u] for u in live if u in known}
    if missing:
        outputs.update(
            StepRun.objects.filter(run_id=run_id, node_id__in=missing).values_list(
                "node_id", "outputs"
            )
        )
    node = p.nodes[node_id]
    context = StepContext(run_id, step, p)
    label = node.label or block_cls.label
    BEATS.add(step.pk)
    try:
        params = _params(block_cls, node)
        result = block_cls().execute(context, _inputs(p, node_id, outputs, live), params)
    except StepStopped as exc:
        return _fail(run_id, p, step, context, f'Stopped at "{label}" ({node_id}): {exc}'), None
    except WaitForApproval as exc:
        return _wait_for_people(run_id, step, context, label, exc), None
    except WaitFor as exc:
        return _wait_for_world(step, context, exc), None
    except Exception as exc:
        if _is_transient(exc):
            raise
        reason = f'"{label}" ({node_id}) failed: {exc}'
        return _fail(run_id, p, step, context, reason, f"{type(exc).__name__}: {exc}"), None
    finally:
        BEATS.remove(step.pk)
    known[node_id] = result
    return _succeed(run_id, p, step, context, result, follower)


@functools.lru_cache(maxsize=1024)
def _params_of(block_cls: type, params_json: str) -> Any:
    return block_cls.Params.model_validate_json(params_json)


def _params(block_cls: type, node: Any) -> Any:
    """Validated parameters (immutable pydantic models, cached per block and parameters)."""
    return _params_of(block_cls, json.dumps(node.params, sort_keys=True)).model_copy(deep=True)


def _mine(step: StepRun):  # noqa: ANN202 — the step's row, while this claim still holds it
    return StepRun.objects.filter(pk=step.pk, status=S.RUNNING, attempts=step.attempts)


def _ended(step: StepRun, context: StepContext, status: str, **fields: Any) -> bool:
    """Record the step's end if this claim still holds it (it may have been taken over)."""
    now = timezone.now()
    duration = (now - step.started_at).total_seconds() if step.started_at else None
    done = _mine(step).update(
        status=status,
        finished_at=now,
        duration_seconds=duration,
        logs=step.logs,
        metrics=step.metrics,
        state=context.state,
        **fields,
    )
    if not done:
        _dropped(step)
    return bool(done)


def _dropped(step: StepRun) -> None:
    log.warning(
        "step %s of run %s was taken from this worker: result dropped", step.node_id, step.run_id
    )


def _succeed(
    run_id: int,
    p: Plan,
    step: StepRun,
    context: StepContext,
    outputs: Any,
    follower: str | None = None,
) -> tuple[str, StepRun | None]:
    after = p.downstream[step.node_id]
    if (
        follower
        and connection.vendor == "postgresql"
        and len(after) == 1
        and p.upstream(after[0]) == [step.node_id]
    ):  # a link of a chain: end this step and take the next in one statement
        ended, nxt = _hand_over(step, context, outputs, after[0], follower)
        if not ended:
            return _status(step), None
        if nxt is None:  # the next step was cancelled meanwhile
            settle(run_id)
        return S.SUCCEEDED, nxt
    with transaction.atomic():
        if not _ended(step, context, S.SUCCEEDED, outputs=outputs, reason="", wake_at=None):
            return _status(step), None
        ready, nxt = advance(run_id, p, step.node_id, follower)
    if not ready:
        settle(run_id)
    return S.SUCCEEDED, nxt


def _hand_over(
    step: StepRun, context: StepContext, outputs: Any, next_node: str, follower: str
) -> tuple[bool, StepRun | None]:
    """PostgreSQL, one statement (so one round trip, atomic): record this step's success if
    this claim still holds it and, only then, claim the one step it feeds alone. The same as
    _ended + advance in a transaction, without BEGIN and COMMIT."""
    now = timezone.now()
    table = StepRun._meta.db_table

    def js(name: str, value: Any) -> Any:
        return StepRun._meta.get_field(name).get_db_prep_save(value, connection)

    duration = (now - step.started_at).total_seconds() if step.started_at else None
    sql = (
        f"WITH done AS (UPDATE {table} SET status = %s, finished_at = %s, "
        "duration_seconds = %s, logs = %s, metrics = %s, state = %s, outputs = %s, "
        "reason = '', wake_at = NULL WHERE id = %s AND status = %s AND attempts = %s "
        "RETURNING id), "
        f"nxt AS (UPDATE {table} SET {_CLAIM_SET} "
        "WHERE run_id = %s AND node_id = %s AND status = %s AND dispatched_at IS NULL "
        f"AND EXISTS (SELECT 1 FROM done) RETURNING {_CLAIM_FIELDS}) "
        "SELECT (SELECT count(*) FROM done) AS ended, nxt.* FROM (SELECT 1) AS one "
        "LEFT JOIN nxt ON TRUE"
    )
    params = [
        S.SUCCEEDED, now, duration, js("logs", step.logs), js("metrics", step.metrics),
        js("state", context.state), js("outputs", outputs), step.pk, S.RUNNING, step.attempts,
        *_claim_params(now, follower), step.run_id, next_node, S.QUEUED,
    ]  # fmt: skip
    row = list(StepRun.objects.raw(sql, params))[0]
    if not row.ended:
        _dropped(step)
        return False, None
    return True, (row if row.pk is not None else None)


def _fail(
    run_id: int, p: Plan, step: StepRun, context: StepContext, reason: str, error: str = ""
) -> str:
    with transaction.atomic():
        if not _ended(step, context, S.FAILED, reason=reason, error=error, wake_at=None):
            return _status(step)
        _mark_blocked(run_id, sorted(p.descendants(step.node_id)), reason)
        _set_run_reason(run_id, reason)
    settle(run_id)
    return S.FAILED


def _wait_for_people(
    run_id: int, step: StepRun, context: StepContext, label: str, exc: WaitForApproval
) -> str:
    proposal = step.proposal if step.proposal is not None else exc.proposal
    done = _mine(step).update(
        status=S.WAITING_APPROVAL,
        reason=str(exc),
        logs=step.logs,
        metrics=step.metrics,
        state=context.state,
        proposal=proposal,
    )
    if not done:
        return _status(step)
    step.proposal = proposal
    summary = (proposal or {}).get("summary", "")
    # district staff hear of it once per step, in the app and by e-mail
    context.notify(
        recipients="district_staff",
        title=f"Approval needed: {label} in {context.run.workflow.name}"[:200],
        message=f"{summary + chr(10) if summary else ''}{exc}\n\nDecide in the approvals inbox.",
        email=True,
        link=reverse("approvals"),
        link_label="Decide in the approvals inbox",
    )
    settle(run_id)
    return S.WAITING_APPROVAL


def _wait_for_world(step: StepRun, context: StepContext, exc: WaitFor) -> str:
    """Release the worker; the reconciler sends the step again at wake_at."""
    wake = timezone.now() + dt.timedelta(seconds=exc.check_after)
    done = _mine(step).update(
        status=S.WAITING,
        reason=str(exc),
        wake_at=wake,
        claimed_by="",
        progress=context.progress_so_far,
        logs=step.logs,
        metrics=step.metrics,
        state=context.state,
    )
    return S.WAITING if done else _status(step)


def _status(step: StepRun) -> str:
    return StepRun.objects.values_list("status", flat=True).get(pk=step.pk)


def advance(
    run_id: int, p: Plan, done: str, follower: str | None = None
) -> tuple[list[str], StepRun | None]:
    """In the transaction that ended `done` successfully: send the steps that are now ready,
    skip those that lost an input to a skip. With a `follower`, it claims the first ready step
    itself (the caller runs it next) and sends the others. Returns what is ready, and the step
    claimed."""
    frontier = list(p.downstream[done])
    if not frontier:
        return [], None
    known: dict[str, str] = {done: S.SUCCEEDED}
    others = {u for d in frontier for u in p.upstream(d)} - known.keys()
    if others:
        # Parallel branches that end together: lock the rows they both feed, in one order, so
        # the second to commit sees the first's result and sends the join (exactly once).
        list(
            StepRun.objects.select_for_update()
            .filter(run_id=run_id, node_id__in=sorted(frontier))
            .order_by("node_id")
            .values_list("pk", flat=True)
        )
    ready: list[str] = []
    skipped: list[str] = []
    while frontier:
        # a step's own status is not read: the updates below touch only queued steps
        unknown = {u for d in frontier for u in started_upstream(p, run_id, d)} - known.keys()
        if unknown:
            known.update(
                StepRun.objects.filter(run_id=run_id, node_id__in=unknown).values_list(
                    "node_id", "status"
                )
            )
        nxt: list[str] = []
        for d in frontier:
            if known.get(d, S.QUEUED) != S.QUEUED or d in ready:
                continue
            ups = [known.get(u) for u in started_upstream(p, run_id, d)]
            if not all(u in DONE for u in ups):
                continue  # another input is still on its way: its own end sends this step
            if all(u == S.SUCCEEDED for u in ups):
                ready.append(d)
            elif not any(u in BAD_UPSTREAM for u in ups):
                skipped.append(d)
                known[d] = S.SKIPPED
                nxt.extend(p.downstream[d])
        frontier = nxt
    if skipped:
        StepRun.objects.filter(run_id=run_id, node_id__in=skipped, status=S.QUEUED).update(
            status=S.SKIPPED, reason="an input was skipped"
        )
    nxt = None
    if ready and follower:
        nxt = _claim(run_id, ready[0], follower, None, fresh=True)
    rest = ready[1:] if nxt is not None else ready
    if rest:
        if others:  # exactly once even if two finishers both saw every input done
            rest = [
                n
                for n in rest
                if StepRun.objects.filter(
                    run_id=run_id, node_id=n, status=S.QUEUED, dispatched_at__isnull=True
                ).update(dispatched_at=timezone.now(), dispatches=1)
            ]
            transaction.on_commit(functools.partial(publish, run_id, rest))
        else:
            _dispatch(run_id, rest)
    return ready, nxt


def _is_transient(exc: Exception) -> bool:
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return isinstance(exc, OperationalError | InterfaceError | RedisConnectionError)


def _mark_blocked(run_id: int, node_ids: list[str], reason: str) -> None:
    StepRun.objects.filter(run_id=run_id, node_id__in=node_ids, status=S.QUEUED).update(
        status=S.BLOCKED, reason=reason, finished_at=timezone.now()
    )


def _set_run_reason(run_id: int, reason: str) -> None:
    Run.objects.filter(pk=run_id, reason="").update(reason=reason)


# --- settling the run -------------------------------------------------------------------------
def settle(run_id: int) -> str:
    """Decide the run's status from its steps (idempotent): called when a step ends without
    sending another, and by the reconciler."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.finished:
            return run.status
        p = _plan_of(run)
        steps = {
            node_id: SimpleNamespace(status=status, reason=reason)
            for node_id, status, reason in StepRun.objects.filter(run_id=run_id).values_list(
                "node_id", "status", "reason"
            )
        }
        waiting = [n for n, s in steps.items() if s.status == S.WAITING_APPROVAL]
        held: set[str] = set()
        for gate in waiting:
            held |= p.descendants(gate)
        active = [
            n
            for n, s in steps.items()
            if s.status in (S.QUEUED, S.RUNNING, S.WAITING) and n not in held
        ]
        if active:
            return run.status  # a step is still on its way: its end settles the run
        if waiting:
            run.status = R.WAITING_APPROVAL
            run.save(update_fields=["status"])
            return run.status
        failed = [s for s in steps.values() if s.status in (S.FAILED, S.BLOCKED)]
        if failed:
            first = next((s for s in failed if s.status == S.FAILED), failed[0])
            run.end(R.FAILED, run.reason or first.reason)
        elif nothing_ran((p.nodes[n].kind, s.status) for n, s in steps.items()):
            why = next(s.reason for s in steps.values() if s.status == S.SKIPPED)
            run.end(
                R.SUCCEEDED,
                f"{NOTHING_RAN}: every step after the trigger was skipped ({why}).",
            )
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
        # Resume: the gate runs again, sees its quorum and applies its stored proposal; its end
        # sends what it held.
        gate.status = S.QUEUED
        gate.save(update_fields=["status", "logs"])
        run.status = R.RUNNING
        run.save(update_fields=["status"])
        failures: list[BaseException] = []
        _dispatch(run.pk, [gate.node_id], failures)
    if failures:
        raise BrokerUnavailable(run, f"the approval of run {run.pk}", failures[0])
    return run


def reject(run: Run, user: Any, comment: str, node_id: str | None = None) -> Run:
    with transaction.atomic():
        run, gate = _decide(run, user, Approval.Decision.REJECT, comment, node_id)
        _end_rejected(run, gate, f'Rejected by {user} at "{gate.node_id}": {comment}')
    return run


def _end_rejected(run: Run, gate: StepRun, reason: str) -> None:
    gate.finish(S.REJECTED, reason=reason)
    run.steps.filter(status__in=[S.QUEUED, S.WAITING_APPROVAL, S.WAITING]).update(
        status=S.SKIPPED, reason=f"not run: {reason}"
    )
    run.end(R.REJECTED, reason)


def cancel(run: Run, user: Any) -> Run:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.finished:
            raise EngineError(f"The run has already ended ({run.status}).")
        reason = f"Cancelled by {user}"
        run.steps.filter(status__in=[S.QUEUED, S.WAITING_APPROVAL, S.WAITING]).update(
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
