"""REST API: deployments (list, roll out, promote, roll back), school-level rollback, and the
predict endpoint with the school's active version."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.userkeys import UserKeyAuthentication
from edumlops.deployments import rollout, services, serving
from edumlops.deployments.models import Deployment, IntegrationToken, Prediction
from edumlops.deployments.tokens import IntegrationTokenAuthentication, school_for_caller
from edumlops.ml import onnx_bundle
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, require, visible_districts, visible_schools


class DeploymentOut(serializers.ModelSerializer):
    model = serializers.SerializerMethodField()
    schools = serializers.SerializerMethodField()
    last_known_good = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "district",
            "model_version",
            "model",
            "scope",
            "schools",
            "status",
            "previous",
            "last_known_good",
            "reason",
            "created_at",
            "ended_at",
            "ended_reason",
        ]

    def get_model(self, d: Deployment) -> dict:
        return {"name": d.model_version.name, "version": d.model_version.version}

    def get_schools(self, d: Deployment) -> list[int]:
        return [s.pk for s in d.schools.all()]

    def get_last_known_good(self, d: Deployment) -> int | None:
        good = services.last_known_good(d)
        return good.model_version_id if good else None


def _deployment(request: Request, pk: int, action: Action) -> Deployment:
    deployment = get_object_or_404(
        Deployment.objects.select_related("model_version", "district").filter(
            district__in=visible_districts(request.user)
        ),
        pk=pk,
    )
    require(request.user, action, deployment)
    return deployment


def _error(exc: Exception, code: int = 400) -> Response:
    return Response({"detail": str(exc)}, status=code)


RolloutIn = inline_serializer(
    "RolloutIn",
    {
        "model_version": serializers.IntegerField(),
        "scope": serializers.ChoiceField(choices=Deployment.Scope.choices),
        "schools": serializers.ListField(child=serializers.IntegerField(), required=False),
        "reason": serializers.CharField(required=False),
    },
)


@extend_schema(request=RolloutIn, responses={200: DeploymentOut(many=True), 201: DeploymentOut})
@api_view(["GET", "POST"])
def deployment_list(request: Request) -> Response:
    """GET: deployments of the districts you see (newest first). POST: roll a model version out
    to pilot schools or the district (district staff)."""
    if request.method == "GET":
        items = Deployment.objects.filter(
            district__in=visible_districts(request.user)
        ).select_related("model_version")
        return Response(DeploymentOut(items.prefetch_related("schools")[:200], many=True).data)
    body = request.data
    model = get_object_or_404(
        ModelVersion.objects.filter(district__in=visible_districts(request.user)),
        pk=body.get("model_version"),
    )
    require(request.user, Action.PROMOTE, model)
    schools = list(School.objects.filter(district=model.district, pk__in=body.get("schools") or []))
    missing = set(body.get("schools") or []) - {s.pk for s in schools}
    if missing:
        return _error(ValueError(f"No such school in {model.district}: {sorted(missing)}."))
    try:
        new = rollout.roll_out(
            model,
            scope=body.get("scope", ""),
            schools=schools,
            user=request.user,
            reason=body.get("reason", ""),
        )
    except services.DeploymentError as exc:
        return _error(exc)
    return Response(DeploymentOut(new).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=DeploymentOut)
@api_view(["GET"])
def deployment_detail(request: Request, pk: int) -> Response:
    return Response(DeploymentOut(_deployment(request, pk, Action.VIEW)).data)


ReasonIn = inline_serializer(
    "RollbackIn",
    {
        "reason": serializers.CharField(),
        "target_version": serializers.IntegerField(required=False),
    },
)


@extend_schema(request=ReasonIn, responses=DeploymentOut)
@api_view(["POST"])
def deployment_rollback(request: Request, pk: int) -> Response:
    """Roll back an active deployment to its last known good version, or to `target_version`
    (a model version id), in one transaction."""
    deployment = _deployment(request, pk, Action.ROLL_BACK)
    target = None
    if request.data.get("target_version"):
        target = get_object_or_404(
            ModelVersion.objects.filter(district=deployment.district),
            pk=request.data["target_version"],
        )
    try:
        now = rollout.rollback(
            deployment, user=request.user, reason=request.data.get("reason", ""), target=target
        )
    except services.DeploymentError as exc:
        return _error(exc)
    return Response(DeploymentOut(now).data if now else {"detail": "no version active"})


@extend_schema(request=ReasonIn, responses=DeploymentOut)
@api_view(["POST"])
def deployment_promote(request: Request, pk: int) -> Response:
    """Make an active pilot's version the district's, once its conditions hold: it has run
    its minimum days and no alert is open on a pilot school. Otherwise 400, naming each unmet
    condition and what to do."""
    pilot = _deployment(request, pk, Action.PROMOTE)
    try:
        new = rollout.promote(pilot, user=request.user, reason=request.data.get("reason", ""))
    except services.DeploymentError as exc:
        return _error(exc)
    return Response(DeploymentOut(new).data, status=status.HTTP_201_CREATED)


def _school(request: Request, pk: int, action: Action) -> School:
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    require(request.user, action, school)
    return school


@extend_schema(request=ReasonIn, responses=DeploymentOut)
@api_view(["POST"])
def school_rollback(request: Request, pk: int) -> Response:
    """Put this school alone back on its previous version (teachers, when the district allows)."""
    school = _school(request, pk, Action.ROLL_BACK)
    try:
        now = rollout.rollback_school(
            school, user=request.user, reason=request.data.get("reason", "")
        )
    except services.DeploymentError as exc:
        return _error(exc)
    return Response(DeploymentOut(now).data)


PredictIn = inline_serializer(
    "PredictIn",
    {"rows": serializers.ListField(child=serializers.DictField())},
)


@extend_schema(request=PredictIn, responses={200: None, 400: None})
@api_view(["POST"])
@authentication_classes(
    [IntegrationTokenAuthentication, UserKeyAuthentication, SessionAuthentication]
)
def school_predict(request: Request, pk: int) -> Response:
    """Score one row ({"row": {...}}) or a batch ({"rows": [...]}) with the school's active
    version. Each answer: probability, risk band, the version that answered and, for linear
    models, the features that moved the risk most. A bad request is refused whole (400, each
    row and field named) and nothing is recorded."""
    school = school_for_caller(request, pk, Action.VIEW)
    deployment = services.resolve(school)
    if deployment is None:
        return Response(
            {"detail": f"No model is deployed for {school}: roll one out first."},
            status=status.HTTP_409_CONFLICT,
        )
    try:
        rows = serving.parse_rows(request.data)
        model = serving.CACHE.get(deployment.model_version)
        answers, seconds = serving.predict(model, rows)
    except serving.RequestError as exc:
        return Response({"detail": str(exc), "errors": exc.errors}, status=400)
    except onnx_bundle.BundleError as exc:
        return Response(
            {"detail": f"The bundle of {deployment.model_version} cannot be served: {exc}"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    per_row_ms = 1000 * seconds / len(rows)
    with transaction.atomic():
        Prediction.objects.bulk_create(
            Prediction(
                school=school,
                deployment=deployment,
                model_version_id=model.model_version_id,
                features={k: row[k] for k in model.features},
                probability=a["probability"],
                band=a["risk_band"],
                latency_ms=per_row_ms,
            )
            for row, a in zip(rows, answers, strict=True)
        )
    for a in answers:
        a["deployment"] = deployment.pk
    return Response({"school": school.pk, "predictions": answers})


@extend_schema(responses={200: None})
@api_view(["GET"])
def school_predictions(request: Request, pk: int) -> Response:
    """The school's latest recorded predictions (minimised: features, probability, band)."""
    school = _school(request, pk, Action.VIEW)
    items = Prediction.objects.filter(school=school).order_by("-id")[:100]
    return Response(
        [
            {
                "id": p.pk,
                "at": p.created_at.isoformat(),
                "model_version": p.model_version_id,
                "probability": p.probability,
                "risk_band": p.band,
                "features": p.features,
            }
            for p in items
        ]
    )


TokenIn = inline_serializer(
    "TokenIn",
    {
        "name": serializers.CharField(),
        "district": serializers.IntegerField(),
        "school": serializers.IntegerField(required=False),
    },
)


@extend_schema(request=TokenIn, responses={201: None})
@api_view(["GET", "POST"])
def token_list(request: Request) -> Response:
    """GET: the integration tokens of your districts (never their keys). POST: create one for
    the district or one school; the answer holds the key, shown this once."""
    from edumlops.deployments import tokens

    if request.method == "GET":
        items = IntegrationToken.objects.filter(district__in=visible_districts(request.user))
        return Response(
            [
                {
                    "id": t.pk,
                    "name": t.name,
                    "prefix": t.prefix,
                    "district": t.district_id,
                    "school": t.school_id,
                    "created_at": t.created_at.isoformat(),
                    "revoked": t.revoked_at is not None,
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                }
                for t in items
            ]
        )
    district = get_object_or_404(visible_districts(request.user), pk=request.data.get("district"))
    require(request.user, Action.MANAGE_DATA, district)
    school = None
    if request.data.get("school"):
        school = get_object_or_404(School, pk=request.data["school"], district=district)
    try:
        token, key = tokens.create(district, request.data.get("name", ""), request.user, school)
    except ValueError as exc:
        return _error(exc)
    return Response(
        {"id": token.pk, "name": token.name, "key": key, "prefix": token.prefix},
        status=status.HTTP_201_CREATED,
    )


@extend_schema(request=None, responses={200: None})
@api_view(["POST"])
def token_revoke(request: Request, pk: int) -> Response:
    from edumlops.deployments import tokens

    token = get_object_or_404(
        IntegrationToken.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    require(request.user, Action.MANAGE_DATA, token)
    tokens.revoke(token, request.user)
    return Response({"id": token.pk, "revoked": True})
