"""Thin Celery tasks: ids in, the engine does the work, nothing large through the broker."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from workflows import engine

TRANSIENT = (OperationalError, InterfaceError, RedisConnectionError)


@shared_task(
    name="workflows.run_step",
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def run_step(self, run_id: int, node_id: str) -> str:
    try:
        return engine.execute_step(
            run_id, node_id, me=engine.worker_id(), retrying=self.request.retries > 0
        )
    except engine.NotReady:
        # an input comes from another segment still on its way: look again shortly
        raise self.retry(countdown=2, max_retries=None) from None


@shared_task(
    name="workflows.finish_segment", acks_late=True, autoretry_for=TRANSIENT, max_retries=8
)
def finish_segment(run_id: int) -> str:
    return engine.settle(run_id)


@shared_task(name="workflows.start_scheduled_run", autoretry_for=TRANSIENT, max_retries=3)
def start_scheduled_run(workflow_id: int, node_id: str) -> int | None:
    from workflows.models import Workflow

    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        return None
    return engine.start_run(workflow, trigger_node=node_id).pk


@shared_task(name="workflows.expire_approvals")
def expire_approvals() -> int:
    return engine.expire_approvals()


@shared_task(name="workflows.fire_term_starts")
def fire_term_starts() -> list[int]:
    return [run.pk for run in engine.fire_term_starts()]
