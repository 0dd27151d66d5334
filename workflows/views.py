"""The run page: each step's state, progress, logs and metrics, refreshed while the run goes on;
district staff approve or reject a waiting step here."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
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


def _models_of(run: Run) -> list:
    """The model versions a run works on: made by it, or named in its steps' outputs."""
    from edumlops.registry.models import ModelVersion

    ids = set(ModelVersion.objects.filter(workflow_run=run).values_list("pk", flat=True))
    for outputs in run.steps.values_list("outputs", flat=True):
        for value in (outputs or {}).values():
            if isinstance(value, dict) and isinstance(value.get("model_version"), int):
                ids.add(value["model_version"])
    return list(ModelVersion.objects.filter(pk__in=ids, district=run.workflow.district))


def _pilots_of(run: Run) -> list:
    from edumlops.deployments.models import Deployment, Prediction

    pilots = list(
        Deployment.objects.filter(workflow_run=run, scope="pilot").prefetch_related("schools")
    )
    for pilot in pilots:  # what the pilot itself answered (a run has one or two pilots)
        pilot.predictions = Prediction.objects.filter(deployment=pilot).count()
    return pilots


@login_required
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    """Everything waiting for this person's decision, with what they need to decide."""
    from workflows.models import Approval, StepRun

    districts = [d for d in visible_districts(request.user) if can(request.user, Action.APPROVE, d)]
    if not districts:
        raise PermissionDenied("Approvals are decided by district staff.")
    if request.method == "POST":
        run = get_object_or_404(Run, pk=request.POST.get("run"), workflow__district__in=districts)
        comment = request.POST.get("comment", "").strip()
        node_id = request.POST.get("node_id")
        if not comment:
            messages.error(request, "Write a comment: it is kept with your decision.")
        else:
            try:
                if request.POST.get("decision") == "approve":
                    engine.approve(run, request.user, comment, node_id)
                    messages.success(request, f"Approved {node_id} of run {run.pk}.")
                else:
                    engine.reject(run, request.user, comment, node_id)
                    messages.success(request, f"Rejected {node_id} of run {run.pk}.")
            except engine.EngineError as exc:
                messages.error(request, str(exc))
        return redirect("approvals")
    waiting = (
        StepRun.objects.filter(
            status=StepRun.Status.WAITING_APPROVAL, run__workflow__district__in=districts
        )
        .select_related("run__workflow", "run__started_by")
        .order_by("started_at", "id")
    )
    items = []
    for step in waiting:
        p = plan(step.run.version.graph)
        node = p.nodes[step.node_id]
        decided = Approval.objects.filter(run=step.run, node_id=step.node_id)
        items.append(
            {
                "step": step,
                "run": step.run,
                "label": node.label or p.block(step.node_id).label,
                "quorum": node.params.get("quorum", 1),
                "approved": [a for a in decided if a.decision == "approve"],
                "mine": decided.filter(user=request.user).exists(),
                "models": _models_of(step.run),
                "pilots": _pilots_of(step.run),
            }
        )
    return TemplateResponse(request, "workflows/approvals.html", {"items": items})


@login_required
def workflow_list_page(request: HttpRequest) -> HttpResponse:
    raise Http404("not built yet")


@login_required
def workflow_new(request: HttpRequest) -> HttpResponse:
    raise Http404("not built yet")


@login_required
def workflow_edit(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404("not built yet")
