"""Model pages: the registry list and a version's model card. (The "Train a model" form starts a
workflow: workflows/training_views.py.)"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.core.charts import calibration_points
from edumlops.ml import model_card
from edumlops.registry.models import ModelVersion, mlflow_ready
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
    return TemplateResponse(
        request,
        "registry/card.html",
        {
            "model": model,
            "card": card,
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
