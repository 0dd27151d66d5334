"""Platform tasks."""

from __future__ import annotations

import socket

from celery import shared_task


@shared_task(name="edumlops.ping")
def ping(payload: str = "ping") -> dict[str, str]:
    """A round trip through the broker and a worker: echoes the payload and names the worker."""
    return {"echo": payload, "worker": socket.gethostname()}


@shared_task(name="edumlops.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Sent by celery beat every minute: its last run time is beat's health check."""
