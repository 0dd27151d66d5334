"""Thin Celery tasks: ids in, the engine does the work, nothing large through the broker.

Step tasks keep no result (their state is in the database). A worker also runs the reconciler
loop (workflows.reconciler), which needs neither beat nor the broker to tick.
"""

from __future__ import annotations

import random

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from workflows import engine

TRANSIENT = (OperationalError, InterfaceError, RedisConnectionError)


@shared_task(
    name="workflows.run_step", bind=True, acks_late=True, ignore_result=True, max_retries=8
)
def run_step(self, run_id: int, node_id: str) -> str:
    task_id = self.request.id
    try:
        return engine.execute_step(
            run_id, node_id, me=engine.worker_id(task_id), task_id=task_id, follow=True
        )
    except (*TRANSIENT, engine.Interrupted) as exc:
        # Give the step back first, so that any process (not only this one) may retake it;
        # when the retries run out the reconciler still owns the step. A step this task went
        # on to (follow) was claimed under this task's id too.
        failed = exc.node_id if isinstance(exc, engine.Interrupted) else node_id
        engine.release_claim(run_id, failed, task_id)
        countdown = min(60, 2**self.request.retries) * (0.5 + random.random())
        raise self.retry(args=(run_id, failed), exc=exc, countdown=countdown) from None


@shared_task(name="workflows.finish_segment", ignore_result=True)
def finish_segment(run_id: int) -> str:
    """Kept for messages sent by an older version of the engine (which closed each chain with
    it): settling is idempotent."""
    return engine.settle(run_id)


@shared_task(name="workflows.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    """One sweep on demand (e.g. `celery call workflows.reconcile`); workers also sweep on
    their own every few seconds."""
    from workflows import reconciler

    return reconciler.sweep()


@shared_task(name="workflows.expire_approvals")
def expire_approvals() -> int:
    return engine.expire_approvals()


@shared_task(name="workflows.prune_frames", ignore_result=True)
def prune_frames() -> int:
    """Sent by celery beat every hour: deletes the Split steps' stored rows that no step read for
    EDUMLOPS_FRAME_RETENTION_DAYS (a step that needs them again rebuilds them)."""
    from edumlops.ml import frames
    from workflows.blocks.data import frames_dir

    days = settings.EDUMLOPS_FRAME_RETENTION_DAYS
    return frames.prune(frames_dir(), days * 86400)


@shared_task(name="workflows.scan_triggers", ignore_result=True)
def scan_triggers() -> list[int]:
    """Sent by celery beat every minute: starts the runs of time and calendar triggers."""
    from workflows import triggers

    return [run.pk for run in triggers.scan()]


@worker_ready.connect
def _start_reconciler(**_: object) -> None:
    from workflows import reconciler

    reconciler.LOOP.start()


@worker_shutdown.connect
def _stop_reconciler(**_: object) -> None:
    from workflows import reconciler

    reconciler.LOOP.stop()
