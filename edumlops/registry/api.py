"""REST API of the model registry: list and read model versions, their cards, move aliases.
(POST /api/models/train/ starts a workflow: workflows/training_views.py.)"""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import api_error, errors, parse
from edumlops.ml import model_card
from edumlops.ml.task_types import TaskType
from edumlops.ml.task_types import parse as task_type
from edumlops.ml.tracking import ALIASES
from edumlops.registry import predictors
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
            "task_type",
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


# --- predict with a version, in the shape of its task type --------------------------------------


class ForecastIn(serializers.Serializer):
    """Which rows of an enrollment forecast: all of them by default."""

    school = serializers.CharField(required=False, allow_blank=True, max_length=200)
    grade = serializers.CharField(required=False, allow_blank=True, max_length=50)
    steps = serializers.IntegerField(
        required=False, min_value=1, max_value=60, help_text="How many terms ahead (default: all)."
    )


class PredictModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()


class ForecastRowOut(serializers.Serializer):
    school = serializers.CharField()
    grade = serializers.CharField(allow_null=True, help_text="None in a forecast per school.")
    period = serializers.CharField(help_text='The registration cycle, e.g. "2026-27 fall".')
    year = serializers.IntegerField()
    term = serializers.CharField()
    step = serializers.IntegerField(help_text="Terms ahead of the last term of the history.")
    point = serializers.FloatField(help_text="Expected enrollment.")
    lower = serializers.FloatField(help_text="Lower end of the prediction interval.")
    upper = serializers.FloatField(help_text="Upper end of the prediction interval.")
    method = serializers.CharField(help_text="The method used for this series.")
    fallback_reason = serializers.CharField(
        allow_blank=True, help_text="Why this series fell back to a simpler method, if it did."
    )


class ForecastOut(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=[TaskType.FORECAST.value])
    model = PredictModelOut()
    method = serializers.CharField()
    level = serializers.FloatField(help_text="The prediction interval's coverage, e.g. 0.8.")
    by = serializers.ChoiceField(choices=["grade", "school"])
    forecasts = ForecastRowOut(many=True)


class ScoreIn(serializers.Serializer):
    """Short answers to score, in the language and for the questions the scorer learned."""

    answers = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=20_000, trim_whitespace=False),
        min_length=1,
        max_length=1_000,
        help_text="The answers' texts, 1 to 1,000.",
    )
    unsure_margin = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        help_text=(
            "Mark an answer unsure when its two most likely scores are within this probability "
            "(default: the margin its validation used, else 0.2)."
        ),
    )
    send_unsure_to_teachers = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "true: also queue the unsure answers' texts on the Answers to rate page "
            "(/ratings/, GET /api/answer-reviews/) for a teacher to score (at most 5,000 wait "
            "per scorer). Their scores can then be added to the scorer's training answers."
        ),
    )


class ScoredAnswerOut(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the answer in the request.")
    score = serializers.IntegerField(help_text="The most likely whole-point score.")
    expected = serializers.FloatField(help_text="The probability-weighted mean score.")
    probabilities = serializers.DictField(
        child=serializers.FloatField(), help_text="Probability of each point, by point."
    )
    unsure = serializers.BooleanField(help_text="True: route this answer to a teacher.")


class UnsureOut(serializers.Serializer):
    count = serializers.IntegerField()
    indexes = serializers.ListField(child=serializers.IntegerField())
    message = serializers.CharField()


class ScoreOut(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=[TaskType.ORDINAL_SCORE.value])
    model = PredictModelOut()
    scale = serializers.ListField(child=serializers.IntegerField(), help_text="[lowest, highest]")
    points = serializers.ListField(
        child=serializers.IntegerField(), help_text="The scores the scorer can give."
    )
    unsure_margin = serializers.FloatField()
    answers = ScoredAnswerOut(many=True)
    unsure = UnsureOut()
    sent_to_teachers = serializers.IntegerField(
        help_text="How many unsure answers were queued for a teacher (send_unsure_to_teachers)."
    )


class MasteryAnswerIn(serializers.Serializer):
    skill = serializers.CharField(max_length=200)
    correct = serializers.BooleanField(help_text="true (or 1) when the answer was right.")


class MasteryIn(serializers.Serializer):
    """One student's answers, oldest first; none = a new student (every skill at its prior)."""

    answers = serializers.ListField(child=MasteryAnswerIn(), max_length=10_000)
    threshold = serializers.FloatField(
        required=False,
        min_value=0.5,
        max_value=0.999,
        help_text="P(mastered) from which a skill counts as mastered (default 0.95).",
    )


class SkillMasteryOut(serializers.Serializer):
    skill = serializers.CharField()
    p_mastered = serializers.FloatField(help_text="P(the skill is mastered) after the answers.")
    mastered = serializers.BooleanField()
    answers = serializers.IntegerField(help_text="How many of the answers practised it.")
    p_correct_next = serializers.FloatField(help_text="P(the next answer on it is right).")


class MasteryOut(serializers.Serializer):
    task_type = serializers.ChoiceField(choices=[TaskType.MASTERY.value])
    model = PredictModelOut()
    threshold = serializers.FloatField()
    skills = SkillMasteryOut(many=True)
    next_skill = serializers.CharField(
        allow_null=True, help_text="The skill to practise next; None when none is left."
    )
    reason = serializers.CharField(help_text="Why that skill, in words.")


PREDICT_IN: dict[TaskType, type[serializers.Serializer]] = {
    TaskType.FORECAST: ForecastIn,
    TaskType.ORDINAL_SCORE: ScoreIn,
    TaskType.MASTERY: MasteryIn,
}
PREDICT_OUT: dict[TaskType, type[serializers.Serializer]] = {
    TaskType.FORECAST: ForecastOut,
    TaskType.ORDINAL_SCORE: ScoreOut,
    TaskType.MASTERY: MasteryOut,
}


@extend_schema(
    request=PolymorphicProxySerializer(
        component_name="ModelPredictRequest",
        serializers=list(PREDICT_IN.values()),
        resource_type_field_name=None,
    ),
    responses={
        200: PolymorphicProxySerializer(
            component_name="ModelPredictAnswer",
            serializers={t.value: s for t, s in PREDICT_OUT.items()},
            resource_type_field_name="task_type",
        ),
        **errors(409),
    },
)
@api_view(["POST"])
def model_predict(request: Request, pk: int) -> Response:
    """Answer with this model version in the shape of its task type (`task_type` in the answer).

    - **forecast**: the enrollment forecast per school (and grade) and future term, with its
      prediction interval; the body may narrow it by `school`, `grade` and `steps` ahead.
    - **ordinal score**: `answers` (texts) → each one's whole-point score, expected score and
      probability per point; answers the scorer is unsure about are marked to go to a teacher.
    - **mastery**: a student's `answers` in order (`skill`, `correct`) → P(mastered) for every
      skill and the skill to practise next.
    - **binary risk**: answered by a school's deployment (`POST /api/schools/{id}/predict/`),
      where answers are recorded and monitored: 409 here.
    """
    model = _get_model_for_user(request, pk, Action.VIEW)
    kind = task_type(model.task_type)
    data = request.data if request.data is not None else {}
    if not isinstance(data, dict):
        return api_error("The body must be a JSON object.")
    shape = PREDICT_IN.get(kind)
    if shape is not None:
        allowed = set(shape().fields)
        unknown = sorted(set(data) - allowed)
        if unknown:
            return api_error(
                f"{model} is {kind.noun}; its request takes {', '.join(sorted(allowed))}, not "
                f"{', '.join(map(repr, unknown))}."
            )
        body = parse(shape, data)
    else:
        body = dict(data)
    try:
        answer = predictors.predict(model, body)
    except predictors.PredictRefused as exc:
        code = "invalid" if exc.status == 400 else "conflict"
        return api_error(str(exc), code=code, status_code=exc.status)
    return Response(answer)
