"""The "Train a model" page (/models/train/) and POST /api/models/train/: a dataset version and a
few choices start the "Train a model" template as a workflow run (workflows/training.py)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from pydantic import ValidationError as PydanticError
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.datasets.models import DatasetVersion
from edumlops.ml.fairness import METRICS
from edumlops.ml.naming import MODEL_NAME_HTML_PATTERN
from edumlops.ml.training import ALGORITHMS
from edumlops.schools.permissions import Action, can, require, visible_districts
from workflows.training import TrainingError, TrainingRequest, start_training


def _problems(exc: PydanticError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


@login_required
def train(request: HttpRequest) -> HttpResponse:
    """Pick a dataset version and a few choices; the ready-made training workflow runs."""
    districts = [
        d for d in visible_districts(request.user) if can(request.user, Action.MANAGE_DATA, d)
    ]
    if not districts:
        raise PermissionDenied("Only district staff and admins train models.")
    versions = [
        v
        for v in DatasetVersion.objects.filter(district__in=districts).select_related("dataset")
        if v.role_set.label and v.role_set.positive
    ]
    error, code = "", 200
    if request.method == "POST":
        data = {k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken",)}
        data["bias_metrics"] = request.POST.getlist("bias_metrics") or ["false_negative_rate"]
        data["balanced"] = "balanced" in request.POST
        data["intersections"] = "intersections" in request.POST
        try:
            wanted = TrainingRequest.model_validate(data)
            version = next((v for v in versions if v.pk == wanted.dataset_version), None)
            if version is None:
                raise TrainingError("Pick a dataset version with its label marked.")
            run = start_training(version, wanted, request.user)
        except PydanticError as exc:
            error, code = _problems(exc), 400
        except TrainingError as exc:
            error, code = str(exc), 400
        else:
            return redirect("run", pk=run.pk)
    selected = request.POST.get("dataset_version") or request.GET.get("dataset_version")
    return TemplateResponse(
        request,
        "registry/train.html",
        {
            "versions": versions,
            "selected": int(selected) if selected and str(selected).isdigit() else None,
            "algorithms": ALGORITHMS,
            "metrics": METRICS,
            "defaults": TrainingRequest.model_fields,
            "model_name_pattern": MODEL_NAME_HTML_PATTERN,
            "error": error,
        },
        status=code,
    )


@extend_schema(
    request=inline_serializer(
        "TrainIn",
        {
            "dataset_version": serializers.IntegerField(),
            "model_name": serializers.CharField(required=False),
            "algorithm": serializers.CharField(required=False),
            "split_method": serializers.CharField(required=False),
        },
    ),
    responses={201: None},
)
@api_view(["POST"])
def model_train(request: Request) -> Response:
    """Start the ready-made training workflow on a dataset version; 201 with the run's id."""
    try:
        wanted = TrainingRequest.model_validate(dict(request.data))
    except PydanticError as exc:
        return Response({"detail": _problems(exc)}, status=status.HTTP_400_BAD_REQUEST)
    version = get_object_or_404(
        DatasetVersion.objects.filter(district__in=visible_districts(request.user)),
        pk=wanted.dataset_version,
    )
    require(request.user, Action.MANAGE_DATA, version)
    try:
        run = start_training(version, wanted, request.user)
    except TrainingError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(
        {"run": run.pk, "workflow": run.workflow_id, "url": f"/runs/{run.pk}/"},
        status=status.HTTP_201_CREATED,
    )
