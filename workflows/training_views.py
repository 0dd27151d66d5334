"""The "Train a model" page (/models/train/) and POST /api/models/train/: a dataset version and a
few choices start the "Train a model" template as a workflow run (workflows/training.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from drf_spectacular.utils import extend_schema
from pydantic import ValidationError as PydanticError
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import parse
from edumlops.datasets.models import DatasetVersion
from edumlops.ml.fairness import METRICS
from edumlops.ml.naming import MODEL_NAME_HTML_PATTERN
from edumlops.ml.privacy import DP_ALGORITHMS, MAX_EPSILON, MIN_EPSILON
from edumlops.ml.training import ALGORITHMS
from edumlops.schools.permissions import Action, can, visible_districts
from workflows.forms import FormField, fields_of, prop_types
from workflows.training import TRAIN_MODEL, TrainingError, TrainingRequest, start_training

ID_MAX = 2**63 - 1


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
            "private_algorithms": DP_ALGORITHMS,
            "epsilon_limits": (MIN_EPSILON, MAX_EPSILON),
            "metrics": METRICS,
            "defaults": TrainingRequest.model_fields,
            "model_name_pattern": MODEL_NAME_HTML_PATTERN,
            "error": error,
        },
        status=code,
    )


def _serializer_field(spec: FormField) -> serializers.Field:
    """A DRF field checking what the template's JSON Schema property checks (types, bounds,
    enums, patterns), so the OpenAPI document shows the same choices."""
    common: dict[str, Any] = {"required": spec.required, "help_text": spec.help or spec.label}
    kinds = prop_types(spec.prop)
    if spec.options:
        return serializers.ChoiceField(choices=list(spec.options), **common)
    # an exclusive bound is checked strictly by the template's model afterwards
    limits = {"min_value": spec.bounds.minimum, "max_value": spec.bounds.maximum}
    limits = {k: v for k, v in limits.items() if v is not None}
    if "integer" in kinds:
        limits.setdefault("min_value", -ID_MAX)
        limits.setdefault("max_value", ID_MAX)
        if spec.widget == "dataset_version":
            limits["min_value"] = 1
        return serializers.IntegerField(**limits, **common)
    if "number" in kinds:
        return serializers.FloatField(**limits, **common)
    if "boolean" in kinds:
        return serializers.BooleanField(**common)
    if "array" in kinds:
        return serializers.ListField(
            child=serializers.CharField(max_length=200), max_length=50, **common
        )
    field = serializers.CharField(max_length=spec.prop.get("maxLength", 200), **common)
    if spec.pattern:
        field.validators.append(RegexValidator(spec.pattern, "Not in the expected format."))
    return field


TrainIn = type(
    "TrainIn",
    (serializers.Serializer,),
    {spec.name: _serializer_field(spec) for spec in fields_of(TRAIN_MODEL.schema)},
)
TrainIn.__doc__ = 'The "Train a model" template\'s choices: only dataset_version is required.'


class TrainOut(serializers.Serializer):
    run = serializers.IntegerField()
    workflow = serializers.IntegerField()
    url = serializers.CharField()


@extend_schema(request=TrainIn, responses={201: TrainOut})
@api_view(["POST"])
def model_train(request: Request) -> Response:
    """Start the ready-made training workflow on a dataset version; 201 with the run's id. A
    version you may not see is a 400 naming `dataset_version`, as for an unknown id."""
    data = parse(TrainIn, request.data)
    try:
        wanted = TrainingRequest.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(
            {".".join(map(str, e["loc"])) or "": [e["msg"]] for e in exc.errors()}
        ) from None
    version = (
        DatasetVersion.objects.filter(district__in=visible_districts(request.user))
        .filter(pk=wanted.dataset_version)
        .first()
    )
    if version is None:
        raise ValidationError(
            {"dataset_version": [f"There is no dataset version {wanted.dataset_version} you see."]}
        )
    if not can(request.user, Action.MANAGE_DATA, version):
        raise PermissionDenied("Models are trained by district staff and admins.")
    try:
        run = start_training(version, wanted, request.user)
    except TrainingError as exc:
        raise ValidationError({"dataset_version": [str(exc)]}) from None
    return Response(
        {"run": run.pk, "workflow": run.workflow_id, "url": f"/runs/{run.pk}/"},
        status=status.HTTP_201_CREATED,
    )
