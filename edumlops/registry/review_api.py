"""REST API of the answers waiting for a teacher (edumlops/registry/reviews.py): list them, rate
or skip one, and add a scorer's rated answers to its training answers."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import api_error, errors, parse
from edumlops.ml.task_types import TaskType
from edumlops.registry import reviews
from edumlops.registry.models import AnswerReview, ModelVersion
from edumlops.schools.permissions import visible_districts

LIST_LIMIT = 500


class ReviewOut(serializers.ModelSerializer):
    model = serializers.IntegerField(source="model_version_id")
    model_name = serializers.SerializerMethodField()
    dataset_version = serializers.IntegerField(source="dataset_version_id", allow_null=True)
    scale = serializers.SerializerMethodField()
    rated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    shown = serializers.SerializerMethodField(help_text="The row's columns a teacher sees.")

    class Meta:
        model = AnswerReview
        fields = [
            "id",
            "model",
            "model_name",
            "source",
            "dataset_version",
            "row",
            "text",
            "shown",
            "score",
            "expected",
            "probabilities",
            "scale",
            "status",
            "teacher_score",
            "rated_by",
            "rated_at",
            "created_at",
        ]

    def get_model_name(self, obj: AnswerReview) -> str:
        return str(obj.model_version)

    def get_scale(self, obj: AnswerReview) -> list[int]:
        return list(reviews.scale_of(obj.model_version))

    def get_shown(self, obj: AnswerReview) -> dict[str, str]:
        return reviews.shown_values(obj)


class ReviewQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=AnswerReview.Status.values, required=False, default=AnswerReview.Status.WAITING
    )
    model = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Only this scorer's answers."
    )


class RateIn(serializers.Serializer):
    score = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="The teacher's whole-point score, within the scorer's scale.",
        error_messages={"invalid": "The score must be a whole number of points, e.g. 2."},
    )
    skip = serializers.BooleanField(
        required=False, default=False, help_text="true: the answer cannot be scored."
    )


class AddedOut(serializers.Serializer):
    dataset = serializers.CharField()
    dataset_version = serializers.IntegerField()
    version_number = serializers.IntegerField()
    rows = serializers.IntegerField()
    added = serializers.IntegerField(help_text="Rated answers added in this version.")


@extend_schema(parameters=[ReviewQuery], responses=ReviewOut(many=True))
@api_view(["GET"])
def review_list(request: Request) -> Response:
    """Short answers a scorer was unsure about, for a teacher to score (oldest first, at most
    500): waiting ones unless `status` says otherwise. Anyone working in the district sees them."""
    query = parse(ReviewQuery, request.query_params)
    found = reviews.reviews_for(request.user).filter(status=query["status"])
    if query.get("model") is not None:
        found = found.filter(model_version_id=query["model"])
    return Response(ReviewOut(found[:LIST_LIMIT], many=True).data)


@extend_schema(request=RateIn, responses={200: ReviewOut, **errors(409)})
@api_view(["POST"])
def review_rate(request: Request, pk: int) -> Response:
    """A teacher's score for one answer (`score`), or `skip: true` when it cannot be scored."""
    review = get_object_or_404(reviews.reviews_for(request.user), pk=pk)
    body = parse(RateIn, request.data if request.data is not None else {})
    try:
        if body["skip"]:
            review = reviews.skip(review, request.user)
        elif body.get("score") is None:
            low, high = reviews.scale_of(review.model_version)
            return api_error(
                {"score": [f"Give a score from {low} to {high}, or skip: true."]}, code="invalid"
            )
        else:
            review = reviews.rate(review, body["score"], request.user)
    except reviews.ReviewError as exc:
        stored = review.stored_in_id is not None
        return api_error(str(exc), code="conflict" if stored else "invalid",
                         status_code=409 if stored else 400)  # fmt: skip
    return Response(ReviewOut(review).data)


@extend_schema(request=None, responses={201: AddedOut, **errors(409)})
@api_view(["POST"])
def model_add_ratings(request: Request, pk: int) -> Response:
    """Append this scorer's rated answers not added yet to the newest version of the dataset it
    was trained on, as a new version: the next training on its newest version learns from them.
    District staff and admins (who manage the district's data)."""
    model = get_object_or_404(
        ModelVersion.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    if model.task_type != TaskType.ORDINAL_SCORE.value:
        return api_error(
            f"{model} is not a short-answer scorer: only a scorer's answers are rated.",
            code="conflict",
            status_code=409,
        )
    if not reviews.may_add_to_training(request.user, model):
        return api_error(
            "Only those who manage the district's data add ratings to a dataset.",
            code="permission_denied",
            status_code=403,
        )
    try:
        version, added = reviews.add_to_training(model, request.user)
    except reviews.ReviewError as exc:
        return api_error(str(exc), code="conflict", status_code=409)
    return Response(
        {
            "dataset": version.dataset.name,
            "dataset_version": version.pk,
            "version_number": version.number,
            "rows": version.rows,
            "added": added,
        },
        status=201,
    )
