"""ML fixtures: every store (datasets, MLflow, signing key) under the test's own folder, shared
with a worker process started on the same folder."""

from __future__ import annotations

from tests.workflows.conftest import broker_url, worker  # noqa: F401  (a real worker process)
from workflows import engine
from workflows.compiler import plan
from workflows.models import Run, StepRun


def run_here(run: Run) -> str:
    """Execute a run's queued steps in plan order in this process (no broker), then settle."""
    p = plan(run.version.graph)
    me = engine.worker_id()
    for node_id in p.order:
        if StepRun.objects.get(run=run, node_id=node_id).status == StepRun.Status.QUEUED:
            engine.execute_step(run.pk, node_id, me=me)
    return engine.settle(run.pk)


def steps_of(run: Run) -> dict[str, StepRun]:
    return {s.node_id: s for s in StepRun.objects.filter(run=run)}
