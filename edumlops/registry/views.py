"""Model pages: the registry list and a version's model card. (The "Train a model" form starts a
workflow: workflows/training_views.py.)"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.core.charts import calibration_points
from edumlops.ml import model_card
from edumlops.privacy import publish
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, can, visible_districts


def _get_model_for_user(request: HttpRequest, pk: int) -> ModelVersion:
    return get_object_or_404(
        ModelVersion.objects.select_related("district", "dataset_version__dataset").filter(
            district__in=visible_districts(request.user)
        ),
        pk=pk,
    )


def models_for(user) -> QuerySet[ModelVersion]:  # noqa: ANN001
    """Every version of the districts the user sees whole (district staff and admins). A
    teacher sees none here: only the model in use at their school (edumlops/site/views.py)."""
    return ModelVersion.objects.filter(district__in=visible_districts(user)).select_related(
        "district"
    )


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
    return TemplateResponse(request, "registry/card.html", card_context(request.user, model))


def card_context(user, model: ModelVersion, *, school: School | None = None) -> dict:  # noqa: ANN001
    """What the model card page shows. With `school` (a teacher reading the card of the model in
    use at their school) the district's own pages stay out: no dataset, run or download links,
    no training schools, no approvers' names, no alias buttons."""
    card = model.card()
    # a teacher cannot see the rows: the group table's small cells as published with
    # differential privacy (the bias gate itself judged the exact numbers)
    published = _published_bias_report(user, model) if school else None
    if published:
        card["limitations"] = model_card.limitations(
            model.training, model.validation, _sizes_in_words(published),
            model.card_text.get("limitations", ""), task_type=model.task_type,
        )  # fmt: skip
    return {
        "model": model,
        "published_bias_report": published,
        "card": card,
        "calibration": calibration_points(card["evaluation"].get("calibration")),
        "may_promote": school is None and can(user, Action.PROMOTE, model),
        "metric_labels": model_card.METRIC_LABELS,
        "school": school,
        "district_view": school is None,
    }


def _published_bias_report(user, model: ModelVersion) -> dict | None:  # noqa: ANN001
    dataset = model.dataset_version.dataset if model.dataset_version_id else None
    return publish.bias_report(
        district=model.district,
        dataset=dataset,
        key=f"model-card:{model.pk}:groups",
        report=model.bias_report,
        actor=user,
        target=model,
    )


def _sizes_in_words(report: dict) -> dict:
    """The published report with each group's size as the card's limitations should name it."""
    groups = []
    for g in report["groups"]:
        privacy = g.get("privacy") or {}
        if privacy.get("state") == "suppressed":
            g = {**g, "n": f"fewer than {privacy['min_cell']}"}
        elif privacy.get("state") == "noised":
            g = {**g, "n": f"≈ {g['n']}"}
        groups.append(g)
    return {**report, "groups": groups}


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
