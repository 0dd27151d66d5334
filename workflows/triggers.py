"""What starts runs without a person pressing Run: one scanner for time and calendar triggers,
one dispatcher for events, both asking the trigger blocks themselves (`Block.due`,
`Block.matches`), so a new trigger is one class in workflows/blocks/ and nothing else.

A firing is recorded in TriggerFiring under the trigger's key (a term, a cron minute, an alert)
before its run starts, so a repeated scan or event never starts a second run for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.utils import timezone

from workflows import engine
from workflows.blocks import REGISTRY
from workflows.blocks.base import Block, Firing, TriggerScan
from workflows.models import Approval, Run, TriggerFiring, Workflow, WorkflowVersion


def _trigger_nodes(
    workflows: Any,
) -> Iterator[tuple[Workflow, WorkflowVersion, dict[str, Any], type[Block]]]:
    for workflow in workflows:
        version = workflow.runnable_version()
        for node in version.graph.get("nodes", []) if version else []:
            block = REGISTRY.get((node.get("kind"), node.get("version", 1)))
            if block is not None and block.is_trigger:
                yield workflow, version, node, block


def fire(workflow: Workflow, node_id: str, firing: Firing) -> Run | None:
    """Start the workflow from `node_id` for this firing, unless it fired for its key already."""
    record, created = TriggerFiring.objects.get_or_create(
        workflow=workflow, node_id=node_id, key=firing.key[:200]
    )
    if not created:
        return None
    try:
        run = engine.start_run(workflow, conf=firing.conf, trigger_node=node_id)
    except engine.BrokerUnavailable as exc:
        run = exc.run  # saved: the reconciler sends it once the broker is back
    record.run = run
    record.save(update_fields=["run"])
    return run


def scan(now: dt.datetime | None = None, window: dt.timedelta | None = None) -> list[Run]:
    """Fire every time or calendar trigger due in (now - window, now]. Celery beat calls this
    every minute; the window (EDUMLOPS_TRIGGER_WINDOW_MINUTES) covers a late or missed beat."""
    now = now or timezone.now()
    window = window or dt.timedelta(minutes=settings.EDUMLOPS_TRIGGER_WINDOW_MINUTES)
    started = []
    workflows = Workflow.objects.select_related("district")
    for workflow, version, node, block in _trigger_nodes(workflows):
        params = block.Params.model_validate(node.get("params", {}))
        at = TriggerScan(workflow, node["id"], now, now - window, version.created_at)
        for firing in block.due(params, at):
            if (run := fire(workflow, node["id"], firing)) is not None:
                started.append(run)
    return started


def dispatch(event: str, district_id: int, payload: dict[str, Any]) -> list[Run]:
    """Start the district's workflows whose trigger listens to `event` and matches it."""
    started = []
    workflows = Workflow.objects.filter(district_id=district_id).select_related("district")
    for workflow, _, node, block in _trigger_nodes(workflows):
        if block.listens_to != event:
            continue
        firing = block.matches(block.Params.model_validate(node.get("params", {})), payload)
        if firing is not None and (run := fire(workflow, node["id"], firing)) is not None:
            started.append(run)
    return started


# --- answers the domain apps ask for (connected in WorkflowsConfig.ready) -------------------


def on_alert_raised(sender: Any, alert: Any, **_: Any) -> list[Run]:
    event = {
        "alert": alert.pk,
        "school": alert.school_id,
        "monitor": alert.monitor,
        "severity": alert.severity,
        "cause": alert.cause,
    }
    return dispatch("alert", alert.district_id, event)


def alert_followups(alert_ids: list[int]) -> dict[int, list[TriggerFiring]]:
    """The runs each alert started, for the alerts page."""
    keys = {f"alert-{pk}": pk for pk in alert_ids}
    found: dict[int, list[TriggerFiring]] = {}
    for firing in TriggerFiring.objects.filter(key__in=keys).select_related("run", "workflow"):
        found.setdefault(keys[firing.key], []).append(firing)
    return found


def run_approvals(run_id: int) -> list[dict[str, Any]]:
    return [
        {
            "by": a.user.get_username(),
            "decision": a.decision,
            "comment": a.comment,
            "at": a.created_at.isoformat(),
            "step": a.node_id,
        }
        for a in Approval.objects.filter(run_id=run_id)
        .select_related("user")
        .order_by("created_at")
    ]
