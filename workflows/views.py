"""The run page: each step's state, progress, logs and metrics, refreshed while the run goes on;
district staff approve or reject a waiting step here."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.schools.permissions import Action, can, visible_districts
from workflows import engine
from workflows.compiler import plan
from workflows.models import Run


def _get_run_for_user(request: HttpRequest, pk: int) -> Run:
    return get_object_or_404(
        Run.objects.select_related("workflow__district", "version", "started_by").filter(
            workflow__district__in=visible_districts(request.user)
        ),
        pk=pk,
    )


@login_required
def run_page(request: HttpRequest, pk: int) -> HttpResponse:
    run = _get_run_for_user(request, pk)
    may_approve = can(request.user, Action.APPROVE, run)
    if request.method == "POST":
        if not may_approve:
            raise PermissionDenied("Only district staff approve or reject a run.")
        comment = request.POST.get("comment", "").strip()
        decision = request.POST.get("decision")
        if not comment:
            messages.error(request, "Write a comment: it is kept with your decision.")
        else:
            try:
                if decision == "approve":
                    engine.approve(run, request.user, comment, request.POST.get("node_id"))
                elif decision == "reject":
                    engine.reject(run, request.user, comment, request.POST.get("node_id"))
            except engine.EngineError as exc:
                messages.error(request, str(exc))
        return redirect("run", pk=run.pk)
    p = plan(run.version.graph)
    steps = sorted(run.steps.all(), key=lambda s: p.order.index(s.node_id))
    labels = {n: (p.nodes[n].label or p.block(n).label) for n in p.order}
    from edumlops.registry.models import ModelVersion

    return TemplateResponse(
        request,
        "workflows/run.html",
        {
            "run": run,
            "steps": [(s, labels[s.node_id]) for s in steps],
            "may_approve": may_approve,
            "models": ModelVersion.objects.filter(workflow_run=run),
            # poll while steps move; a run waiting for a decision stays still (and polling
            # would swap away the comment being typed)
            "live": not run.finished and run.status != Run.Status.WAITING_APPROVAL,
        },
    )
