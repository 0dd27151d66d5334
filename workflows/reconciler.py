"""The reconciler: the database drives every run to an end, whatever the broker lost.

Every worker runs `Loop` in a thread of its main process; each tick, the one process that holds
the `reconciler` lease (a row in EngineLease) sweeps. One indexed query finds the unfinished
steps that need a hand, and for each:

- a step that was sent (queued, dispatched_at set) but not taken within a grace period — a
  message lost between commit and publish, or with the broker's data — is sent again (the
  grace doubles with each re-send, so a long queue is not flooded);
- a running step whose heartbeat is older than the lease (its worker died or hangs; on the
  same host, a holder process that no longer exists is gone after two missed beats) is put back
  in the queue and sent, exactly as a redelivery would be; the claim stays the one guard
  against running a step twice;
- a waiting step whose wake-up time has come is sent to check again.

A step that killed its worker `MAX_ATTEMPTS` times, or that no worker took after
`MAX_DISPATCHES` sends, fails with a reason a person can act on. Every `DEEP_EVERY` sweeps a
second query looks for unfinished runs with nothing on its way (a lost settle, a run from an
older engine, a version that can no longer be planned) and repairs or ends them.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from workflows import engine
from workflows.compiler import InvalidGraph
from workflows.models import TERMINAL_RUN, EngineLease, Run, StepRun

log = logging.getLogger(__name__)

S = StepRun.Status
R = Run.Status
MAX_ATTEMPTS = 5  # a step whose worker died this many times fails (it may need more memory)
MAX_DISPATCHES = 12  # sends of one step that no worker took
MAX_GRACE = 300  # seconds: the longest wait between two re-sends
DEEP_EVERY = 15  # sweeps between two looks for runs with nothing on their way


def tick_seconds() -> float:
    return float(getattr(settings, "EDUMLOPS_RECONCILE_SECONDS", 2))


def resend_after() -> float:
    return float(getattr(settings, "EDUMLOPS_RESEND_AFTER_SECONDS", 10))


def _grace(dispatches: int) -> float:
    return min(MAX_GRACE, resend_after() * 2 ** max(0, dispatches - 1))


def _holder_gone(claimed_by: str, heartbeat_at: dt.datetime | None, now: dt.datetime) -> bool:
    if heartbeat_at is None or heartbeat_at < now - dt.timedelta(seconds=engine.lease_seconds()):
        return True
    host, _, rest = claimed_by.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:  # same host: a process that no longer exists holds nothing
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """One pass; returns what it did (for logs and tests)."""
    now = now or timezone.now()
    done = {"resent": 0, "taken_over": 0, "woken": 0, "failed": 0, "ended": 0}
    missed_beats = now - dt.timedelta(seconds=2 * engine.HEARTBEAT_SECONDS)
    rows = list(
        StepRun.objects.filter(status__in=[S.QUEUED, S.RUNNING, S.WAITING])
        .filter(
            Q(status=S.QUEUED, dispatched_at__lt=now - dt.timedelta(seconds=resend_after()))
            | Q(status=S.RUNNING, heartbeat_at__lt=missed_beats)
            | Q(status=S.WAITING, wake_at__lte=now)
        )
        .values(
            "pk", "run_id", "node_id", "status", "dispatched_at", "dispatches", "attempts",
            "claimed_by", "heartbeat_at",
        )
        .order_by("pk")
    )  # fmt: skip
    for row in rows:
        try:
            action = _act(row, now)
        except Exception:  # one bad row must not stop the others
            log.exception("reconciler: step %s of run %s", row["node_id"], row["run_id"])
            continue
        if action:
            done[action] += 1
    return done


def _act(row: dict[str, Any], now: dt.datetime) -> str | None:
    if row["status"] == S.QUEUED:
        if row["dispatched_at"] >= now - dt.timedelta(seconds=_grace(row["dispatches"])):
            return None
        if row["dispatches"] >= MAX_DISPATCHES:
            return _give_up(
                row,
                f"No worker took this step after {row['dispatches']} sends over "
                f"{_since(row['dispatched_at'], now)}: check that a Celery worker is running and "
                "listens to the default queue, then run the workflow again.",
            )
        sent = StepRun.objects.filter(
            pk=row["pk"], status=S.QUEUED, dispatched_at=row["dispatched_at"]
        ).update(dispatched_at=now, dispatches=F("dispatches") + 1)
        return _send(row, "resent") if sent else None
    if row["status"] == S.RUNNING:
        if not _holder_gone(row["claimed_by"], row["heartbeat_at"], now):
            return None
        if row["attempts"] >= MAX_ATTEMPTS:
            return _give_up(
                row,
                f"The worker running this step stopped {row['attempts']} times (last: "
                f"{row['claimed_by'].rsplit(':', 1)[0]}, silent since "
                f"{timezone.localtime(row['heartbeat_at']):%H:%M:%S}): it may need more memory "
                "or time than a worker has. Check the worker's log, then run again.",
            )
        with transaction.atomic():
            step = StepRun.objects.select_for_update().get(pk=row["pk"])
            if step.status != S.RUNNING or step.attempts != row["attempts"]:
                return None
            run_status = Run.objects.values_list("status", flat=True).get(pk=row["run_id"])
            if run_status in TERMINAL_RUN:  # e.g. cancelled while it ran: not run again
                StepRun.objects.filter(pk=step.pk).update(
                    status=S.CANCELLED,
                    claimed_by="",
                    finished_at=now,
                    reason=f"not run again: the run was {run_status} while this step ran, "
                    "and its worker stopped",
                )
                return "ended"
            step.logs.append(
                {
                    "at": now.isoformat(),
                    "message": f"Taken over: {step.claimed_by.rsplit(':', 1)[0]} stopped "
                    f"(no heartbeat since {timezone.localtime(step.heartbeat_at):%H:%M:%S})",
                }
            )
            StepRun.objects.filter(pk=step.pk).update(
                status=S.QUEUED, claimed_by="", logs=step.logs, dispatched_at=now, dispatches=1
            )
        return _send(row, "taken_over")
    woken = StepRun.objects.filter(pk=row["pk"], status=S.WAITING, wake_at__lte=now).update(
        status=S.QUEUED, wake_at=None, dispatched_at=now, dispatches=1
    )
    return _send(row, "woken") if woken else None


def _send(row: dict[str, Any], action: str) -> str:
    # outside a transaction this sends at once; in a test's transaction it is captured
    transaction.on_commit(functools.partial(engine.publish, row["run_id"], [row["node_id"]]))
    return action


def _since(then: dt.datetime, now: dt.datetime) -> str:
    minutes = (now - then).total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{(now - then).total_seconds():.0f} s"


def _give_up(row: dict[str, Any], reason: str) -> str | None:
    p = engine._plan_of(row["run_id"])
    with transaction.atomic():
        ended = StepRun.objects.filter(
            pk=row["pk"], status=row["status"], attempts=row["attempts"]
        ).update(status=S.FAILED, reason=reason, finished_at=timezone.now(), claimed_by="")
        if not ended:
            return None
        engine._mark_blocked(row["run_id"], sorted(p.descendants(row["node_id"])), reason)
        engine._set_run_reason(row["run_id"], f'"{row["node_id"]}": {reason}')
    engine.settle(row["run_id"])
    return "failed"


# --- runs with nothing on their way -------------------------------------------------------------
def stalled_runs() -> list[int]:
    """Unfinished runs with no step running, waiting or sent."""
    moving = StepRun.objects.filter(run=OuterRef("pk")).filter(
        Q(status__in=[S.RUNNING, S.WAITING]) | Q(status=S.QUEUED, dispatched_at__isnull=False)
    )
    return list(
        Run.objects.filter(status__in=[R.QUEUED, R.RUNNING])
        .exclude(Exists(moving))
        .values_list("pk", flat=True)
    )


def repair(run_id: int) -> str:
    """Send what is ready, block or skip what can no longer run, then settle."""
    try:
        p = engine._plan_of(run_id)
    except InvalidGraph as exc:
        reason = (
            "This run's workflow version can no longer be planned "
            f"({'; '.join(e.message for e in exc.errors)[:500]}): save the workflow again on "
            "the canvas and start a new run."
        )
        with transaction.atomic():
            run = Run.objects.select_for_update().get(pk=run_id)
            if not run.finished:
                run.steps.filter(status__in=[S.QUEUED, S.RUNNING, S.WAITING]).update(
                    status=S.BLOCKED, reason=reason, finished_at=timezone.now()
                )
                run.end(R.FAILED, reason)
        return R.FAILED
    with transaction.atomic():
        Run.objects.select_for_update().filter(pk=run_id).exists()
        status = dict(StepRun.objects.filter(run_id=run_id).values_list("node_id", "status"))
        ready, blocked = [], []
        for node_id in p.order:
            if status.get(node_id) != S.QUEUED:
                continue
            ups = [status.get(u) for u in engine.started_upstream(p, run_id, node_id)]
            if all(u == S.SUCCEEDED for u in ups):
                ready.append(node_id)
            elif any(u in engine.BAD_UPSTREAM for u in ups):
                blocked.append(node_id)
                status[node_id] = S.BLOCKED
            elif all(u in engine.DONE for u in ups):
                status[node_id] = S.SKIPPED
                StepRun.objects.filter(run_id=run_id, node_id=node_id, status=S.QUEUED).update(
                    status=S.SKIPPED, reason="an input was skipped"
                )
        if blocked:
            engine._mark_blocked(run_id, blocked, "an input did not succeed")
        engine._dispatch(run_id, ready)
    if not ready:
        return engine.settle(run_id)
    return R.RUNNING


# --- the loop every worker runs -----------------------------------------------------------------
def take_turn(me: str, now: dt.datetime | None = None) -> bool:
    """Hold the reconciler lease (one process sweeps at a time) for a few ticks."""
    now = now or timezone.now()
    until = now + dt.timedelta(seconds=3 * tick_seconds() + 5)
    held = (
        EngineLease.objects.filter(name="reconciler")
        .filter(Q(holder=me) | Q(until__lt=now))
        .update(holder=me, until=until)
    )
    if held:
        return True
    holder = EngineLease.objects.filter(name="reconciler").values_list("holder", flat=True)
    for old in holder:  # a holder on this host whose process is gone (a killed worker) lets go
        if old and _holder_gone(old, now, now):
            return bool(
                EngineLease.objects.filter(name="reconciler", holder=old).update(
                    holder=me, until=until
                )
            )
    try:
        with transaction.atomic():
            _, created = EngineLease.objects.get_or_create(
                name="reconciler", defaults={"holder": me, "until": until}
            )
    except IntegrityError:
        return False
    return created


class Loop:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.me = ""

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.me = f"{socket.gethostname()}:{os.getpid()}:reconciler"
        self._thread = threading.Thread(target=self._run, daemon=True, name="reconciler")
        self._thread.start()
        log.info("reconciler: sweeping every %.1f s when holding the lease", tick_seconds())

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(tick_seconds()):
            try:
                if not take_turn(self.me):
                    continue
                done = sweep()
                if any(done.values()):
                    log.info("reconciler: %s", done)
                count += 1
                if count % DEEP_EVERY == 1:
                    for run_id in stalled_runs():
                        log.info(
                            "reconciler: run %s had nothing on its way: %s", run_id, repair(run_id)
                        )
            except Exception as exc:  # noqa: BLE001 — the database or broker may be away
                log.warning("reconciler: %s", exc)
                connection.close()


LOOP = Loop()
