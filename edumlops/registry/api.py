"""REST API of the model registry: list and read model versions, their cards, move aliases.
(POST /api/models/train/ starts a workflow: workflows/training_views.py.)"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import parse
from edumlops.ml import model_card
from edumlops.ml.tracking import ALIASES
from edumlops.registry.models import ModelVersion, mlflow_ready
from edumlops.schools.permissions import Action, require, visible_districts


class ModelOut(serializers.ModelSerializer):
    dataset_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    model_uri = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "model_uri",
            "run_id",
            "algorithm",
            "district",
            "dataset_version",
            "dataset_sha256",
            "features",
            "roles",
            "training",
            "validation",
            "bias_outcome",
            "bias_report",
            "bundle",
            "aliases",
            "workflow_run",
            "created_at",
        ]

    def get_model_uri(self, model: ModelVersion) -> str:
        return f"models:/{model.name}/{model.version}"


class AliasIn(serializers.Serializer):
    alias = serializers.ChoiceField(
        choices=ALIASES,
        error_messages={
            "invalid_choice": f'"{{input}}" is not an alias: use one of {", ".join(ALIASES)}.'
        },
    )


def _get_model_for_user(request: Request, pk: int, action: Action) -> ModelVersion:
    model = get_object_or_404(
        ModelVersion.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    require(request.user, action, model)
    return model


@extend_schema(responses=ModelOut(many=True))
@api_view(["GET"])
def model_list(request: Request) -> Response:
    models = ModelVersion.objects.filter(district__in=visible_districts(request.user))
    return Response(ModelOut(models, many=True).data)


@extend_schema(responses=ModelOut)
@api_view(["GET"])
def model_detail(request: Request, pk: int) -> Response:
    return Response(ModelOut(_get_model_for_user(request, pk, Action.VIEW)).data)


@extend_schema(
    responses=OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="The model card: intended use, training, validation, fairness, limitations.",
    )
)
@api_view(["GET"])
def model_card_json(request: Request, pk: int) -> Response:
    return Response(_get_model_for_user(request, pk, Action.VIEW).card())


@extend_schema(
    responses={
        (200, "text/markdown"): OpenApiResponse(
            OpenApiTypes.STR, description="The model card as a Markdown file."
        )
    }
)
@api_view(["GET"])
def model_card_markdown(request: Request, pk: int) -> HttpResponse:
    model = _get_model_for_user(request, pk, Action.VIEW)
    response = HttpResponse(
        model_card.to_markdown(model.card()), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{model.name}-v{model.version}-model-card.md"'
    )
    return response


@extend_schema(request=AliasIn, responses=ModelOut)
@api_view(["POST"])
def model_alias(request: Request, pk: int) -> Response:
    """Move the `challenger` or `champion` alias to this version (district staff)."""
    model = _get_model_for_user(request, pk, Action.PROMOTE)
    body = parse(AliasIn, request.data)
    mlflow_ready()
    model.set_alias(body["alias"], actor=request.user)
    return Response(ModelOut(model).data)
