"""Model pages: the registry list, a version's model card, and the "Train a model" form."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from pydantic import ValidationError as PydanticError

from edumlops.core.charts import calibration_points, group_bars
from edumlops.datasets.models import DatasetVersion
from edumlops.ml import model_card
from edumlops.ml.fairness import METRICS
from edumlops.ml.training import ALGORITHMS
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.registry.training import TrainingError, TrainingRequest, start_training
from edumlops.schools.permissions import Action, can, visible_districts


def _get_model_for_user(request: HttpRequest, pk: int) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related("district", "dataset_version__dataset").filter(
            district__in=visible_districts(request.user)
        ),
        pk=pk,
    )


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    models = ModelVersion.objects.filter(
        district__in=visible_districts(request.user)
    ).select_related("district")
    return TemplateResponse(request, "registry/list.html", {"models": models})


def fairness_charts(card: dict) -> list[dict]:
    """Bar charts of the first two group metrics per sensitive attribute (not intersections)."""
    groups = card["fairness"]["groups"]
    attributes = list(dict.fromkeys(g["attribute"] for g in groups))
    metrics = [m for m in METRICS if any(m in g["metrics"] for g in groups)]
    return [
        {
            "attribute": attribute,
            "metric": metric,
            "metric_label": METRICS[metric],
            "bars": group_bars(groups, attribute, metric),
        }
        for metric in metrics[:2]
        for attribute in attributes
        if "×" not in attribute
    ]


@login_required
def model_card_page(request: HttpRequest, pk: int) -> HttpResponse:
    model = _get_model_for_user(request, pk)
    if request.method == "POST":
        if not can(request.user, Action.PROMOTE, model):
            raise PermissionDenied("Only district staff move the champion and challenger aliases.")
        alias = request.POST.get("alias", "")
        if alias in ("champion", "challenger"):
            mlflow_ready()
            model.set_alias(alias, actor=request.user)
            messages.success(request, f"{model} is now the {alias}.")
        return redirect("model-card", pk=model.pk)
    card = model.card()
    charts = fairness_charts(card)
    return TemplateResponse(
        request,
        "registry/card.html",
        {
            "model": model,
            "card": card,
            "charts": charts,
            "calibration": calibration_points(card["evaluation"].get("calibration")),
            "may_promote": can(request.user, Action.PROMOTE, model),
            "metric_labels": model_card.METRIC_LABELS,
        },
    )


@login_required
def model_card_download(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    model = _get_model_for_user(request, pk)
    card = model.card()
    filename = f"{model.name}-v{model.version}-model-card"
    if fmt == "json":
        response: HttpResponse = JsonResponse(card, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
        return response
    response = HttpResponse(
        model_card.to_markdown(card), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}.md"'
    return response


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
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            code = 400
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
            "error": error,
        },
        status=code,
    )
