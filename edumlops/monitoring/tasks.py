"""Monitoring tasks (thin): the hourly aggregation and retention of recorded predictions."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="monitoring.aggregate_and_prune")
def aggregate_and_prune() -> dict[str, int]:
    from edumlops.monitoring.telemetry import aggregate_and_prune as run

    return run()
