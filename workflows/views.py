"""Workflow pages: the list, the canvas (with its version list, diffs and a step's side-panel
detail), the run page (each step's state, progress, logs and metrics, refreshed while the run goes
on; district staff approve or reject a waiting step there) and the approvals inbox."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from edumlops.core.http import posted_id
from edumlops.datasets.models import DatasetVersion
from edumlops.deployments.models import Deployment, Prediction
from edumlops.registry.models import ModelVersion
from edumlops.schools.permissions import Action, can, visible_districts
from workflows import engine
from workflows.blocks import CATEGORY_LABELS, REGISTRY, catalog
from workflows.compiler import plan
from workflows.graph import Graph, diff
from workflows.models import Approval, Run, StepRun, Workflow, WorkflowVersion, models_of


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
            except engine.BrokerUnavailable as exc:
                messages.warning(request, str(exc))
        return redirect("run", pk=run.pk)
    p = plan(run.version.graph)
    steps = sorted(run.steps.all(), key=lambda s: p.order.index(s.node_id))
    labels = {n: (p.nodes[n].label or p.block(n).label) for n in p.order}
    nothing = engine.nothing_ran((s.kind, s.status) for s in steps)

    return TemplateResponse(
        request,
        "workflows/run.html",
        {
            "run": run,
            "steps": [(s, labels[s.node_id]) for s in steps],
            "may_approve": may_approve,
            "started": engine.started_text(run),
            "nothing_ran": run.finished and nothing,
            "models": ModelVersion.objects.filter(workflow_run=run),
            # poll while steps move; a run waiting for a decision stays still (and polling
            # would swap away the comment being typed)
            "live": not run.finished and run.status != Run.Status.WAITING_APPROVAL,
        },
    )


def _pilots_of(run: Run) -> list:

    pilots = list(
        Deployment.objects.filter(workflow_run=run, scope="pilot").prefetch_related("schools")
    )
    for pilot in pilots:  # what the pilot itself answered (a run has one or two pilots)
        pilot.predictions = Prediction.objects.filter(deployment=pilot).count()
    return pilots


@login_required
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    """Everything waiting for this person's decision, with what they need to decide."""

    districts = [d for d in visible_districts(request.user) if can(request.user, Action.APPROVE, d)]
    if not districts:
        raise PermissionDenied("Approvals are decided by district staff.")
    if request.method == "POST":
        run = get_object_or_404(
            Run, pk=posted_id(request.POST.get("run")), workflow__district__in=districts
        )
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
            except engine.BrokerUnavailable as exc:
                messages.warning(request, str(exc))
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
                "models": models_of(step.run),
                "pilots": _pilots_of(step.run),
            }
        )
    return TemplateResponse(request, "workflows/approvals.html", {"items": items})


# --- the canvas and the workflow pages ----------------------------------------------------------
def _workflows_for(request: HttpRequest):  # noqa: ANN202
    return Workflow.objects.filter(district__in=visible_districts(request.user)).select_related(
        "district", "owner"
    )


def _get_workflow(request: HttpRequest, pk: int) -> Workflow:
    return get_object_or_404(_workflows_for(request), pk=pk)


def _dataset_choices(district: Any) -> list[dict[str, Any]]:

    versions = DatasetVersion.objects.filter(district=district).select_related("dataset")
    return [
        {
            "id": v.pk,
            "label": f"{v.dataset.name} v{v.number} ({v.rows} rows"
            + (f", label {v.roles['label']}" if (v.roles or {}).get("label") else ", no label")
            + ")",
            "columns": [c.get("name") for c in v.schema if isinstance(c, dict)],
        }
        for v in versions.order_by("dataset__name", "-number")
    ]


@login_required
def workflow_list_page(request: HttpRequest) -> HttpResponse:
    # each workflow's newest version and run, one query each (not every version and run)
    newest_version = WorkflowVersion.objects.filter(workflow=OuterRef("pk")).order_by("-number")
    runnable = newest_version.filter(draft=False)
    newest_run = Run.objects.filter(workflow=OuterRef("pk")).order_by("-created_at", "-pk")
    workflows = list(
        _workflows_for(request)
        .annotate(
            latest_pk=Subquery(newest_version.values("pk")[:1]),
            runnable_number=Subquery(runnable.values("number")[:1]),
            last_run_pk=Subquery(newest_run.values("pk")[:1]),
        )
        .order_by("district__name", "name")
    )
    latest = WorkflowVersion.objects.select_related("created_by").defer("graph", "errors")
    latest = latest.in_bulk([w.latest_pk for w in workflows if w.latest_pk])
    last_runs = Run.objects.in_bulk([w.last_run_pk for w in workflows if w.last_run_pk])
    rows = [
        (
            w,
            latest.get(w.latest_pk),
            last_runs.get(w.last_run_pk),
            engine.status_word(last_runs[w.last_run_pk]) if w.last_run_pk else "",
            w.runnable_number if can(request.user, Action.MANAGE, w) else None,
        )
        for w in workflows
    ]
    manageable = [d for d in visible_districts(request.user) if can(request.user, Action.MANAGE, d)]
    return TemplateResponse(
        request,
        "workflows/list.html",
        {"rows": rows, "districts": manageable},
    )


@login_required
@require_POST
def workflow_new(request: HttpRequest) -> HttpResponse:
    """An empty workflow (no version yet), opened on the canvas."""
    district = get_object_or_404(
        visible_districts(request.user), pk=posted_id(request.POST.get("district"))
    )
    if not can(request.user, Action.MANAGE, district):
        raise PermissionDenied("Only the district's ML lead / admin builds workflows.")
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "Give the workflow a name.")
        return redirect("workflows")
    if Workflow.objects.filter(district=district, name=name).exists():
        messages.error(request, f"A workflow named “{name}” exists in {district}: pick another.")
        return redirect("workflows")
    workflow = Workflow.objects.create(
        district=district,
        name=name[:200],
        description=request.POST.get("description", "").strip(),
        owner=request.user,
    )
    return redirect("workflow-edit", pk=workflow.pk)


@login_required
def workflow_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """The canvas. `?version=N` opens an old version read-only; `?run=ID` shows that run's step
    states on its version."""
    workflow = _get_workflow(request, pk)
    may_manage = can(request.user, Action.MANAGE, workflow)
    latest = workflow.latest_version()
    run = None
    if request.GET.get("run", "").isdigit():
        run = get_object_or_404(workflow.runs.select_related("version"), pk=request.GET["run"])
        version = run.version
    elif request.GET.get("version", "").isdigit():
        version = get_object_or_404(workflow.versions, number=request.GET["version"])
    else:
        version = latest
    old = version is not None and latest is not None and version.number != latest.number
    read_only = not may_manage or old or run is not None
    # the newest run, shown after a reload: its states on the canvas when it ran this version
    last_run = run or workflow.runs.select_related("version").order_by("-created_at", "-pk").first()
    config = {
        "workflowId": workflow.pk,
        "version": version.number if version else None,
        "versionDraft": bool(version and version.draft),
        "readOnly": read_only,
        "runId": run.pk if run else None,
        "lastRun": _last_run_config(last_run, version),
        "schools": [
            {"id": pk, "name": name}
            for pk, name in workflow.district.schools.order_by("name").values_list("pk", "name")
        ],
        "csrf": get_token(request),
        "validateUrl": reverse("api-workflow-validate"),
        "versionsUrl": reverse("api-workflow-versions", args=[workflow.pk]),
        "runsUrl": reverse("api-workflow-runs", args=[workflow.pk]),
        "runUrl": reverse("api-run", args=[0]).replace("0", "RUN"),
        "runPageUrl": reverse("run", args=[0]).replace("0", "RUN"),
        "stepUrl": reverse("run-step", args=[0, "NODE"]).replace("/0/", "/RUN/"),
        "categories": list(CATEGORY_LABELS.items()),
        "datasetVersions": _dataset_choices(workflow.district),
        # a template's blocks that do not exist yet: no edit on the canvas can fix those
        "standingErrors": [
            e for e in (version.errors if version else []) if e.get("code") == "missing_block"
        ],
    }
    return TemplateResponse(
        request,
        "workflows/canvas.html",
        {
            "workflow": workflow,
            "version": version,
            "latest": latest,
            "run": run,
            "last_run": last_run,
            "read_only": read_only,
            "may_manage": may_manage,
            "old": old,
            "graph": version.graph if version else {"nodes": [], "edges": [], "notes": []},
            "catalog": catalog(),
            "config": config,
        },
    )


def _last_run_config(run: Run | None, version: WorkflowVersion | None) -> dict[str, Any] | None:
    """The run the canvas shows after a reload: its id, and whether its states fit the graph
    shown (the same version)."""
    if run is None:
        return None
    return {
        "id": run.pk,
        "version": run.version.number,
        "overlay": version is not None and run.version_id == version.pk,
    }


@login_required
def workflow_versions_partial(request: HttpRequest, pk: int) -> HttpResponse:
    """The version list beside the canvas (htmx): who saved what, drafts marked, diffs."""
    workflow = _get_workflow(request, pk)
    versions = workflow.versions.select_related("created_by").defer("graph")
    versions = versions.order_by("-number")[:50]
    return TemplateResponse(
        request,
        "workflows/_versions.html",
        {
            "workflow": workflow,
            "versions": versions,
            "may_manage": can(request.user, Action.MANAGE, workflow),
            "current": request.GET.get("current"),
        },
    )


@login_required
def workflow_diff_partial(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    workflow = _get_workflow(request, pk)
    new = get_object_or_404(workflow.versions, number=number)
    old = workflow.versions.filter(number__lt=number).order_by("-number").first()
    changes = None
    if old is not None:
        changes = diff(Graph.model_validate(old.graph), Graph.model_validate(new.graph))
    return TemplateResponse(
        request, "workflows/_diff.html", {"new": new, "old": old, "changes": changes}
    )


@login_required
@require_POST
def workflow_run_version(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """Run this version (from the version list or the workflow list), then watch it on the
    canvas. Any trigger runs now (a schedule, a term, an alert fired by hand); when there are
    several to choose from, the canvas asks which."""
    workflow = _get_workflow(request, pk)
    if not can(request.user, Action.MANAGE, workflow):
        raise PermissionDenied("Only the district's ML lead / admin starts runs.")
    version = get_object_or_404(workflow.versions, number=number)
    try:
        run = engine.start_run(workflow, user=request.user, version=version)
    except engine.NeedsChoice as exc:  # the canvas asks it beside its Run button
        messages.info(request, exc.on_page)
        target = reverse("workflow-edit", args=[workflow.pk])
    except engine.EngineError as exc:
        messages.error(request, str(exc))
        target = reverse("workflow-edit", args=[workflow.pk])
    except engine.BrokerUnavailable as exc:
        messages.warning(request, str(exc))
        target = reverse("workflow-edit", args=[workflow.pk]) + f"?run={exc.run.pk}"
    else:
        target = reverse("workflow-edit", args=[workflow.pk]) + f"?run={run.pk}"
    if request.htmx:
        return HttpResponseClientRedirect(target)
    return redirect(target)


@login_required
def run_step_partial(request: HttpRequest, pk: int, node_id: str) -> HttpResponse:
    """One step of a run for the canvas's side panel: state, progress, reason, logs, metrics,
    outputs, and what the block itself adds (the bias gate's table and chart)."""
    run = _get_run_for_user(request, pk)
    step = get_object_or_404(run.steps, node_id=node_id)
    node = next((n for n in run.version.graph.get("nodes", []) if n["id"] == node_id), {})
    block = REGISTRY.get((step.kind, node.get("version", 1)))
    panel = block.panel_template if block else None
    extra = block.panel_context(run, step) if panel else {}
    return TemplateResponse(
        request,
        "workflows/_step.html",
        {"run": run, "step": step, "panel": panel, "models": models_of(run), **extra},
    )
