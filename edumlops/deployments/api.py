"""REST API: deployments (list, roll out, promote, roll back), school-level rollback, the predict
endpoint with the school's active version, and integration tokens. Every body is read through a
serializer of edumlops.deployments.serializers; errors come in the API's one shape."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    throttle_classes,
)
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import Conflict, StrictJSONParser, errors, parse
from edumlops.core.throttles import PredictThrottle, TokenThrottle
from edumlops.core.userkeys import UserKeyAuthentication
from edumlops.deployments import hotpath, rollout, services, serving
from edumlops.deployments.models import Deployment, IntegrationToken, Prediction
from edumlops.deployments.serializers import (
    DeploymentOut,
    PredictErrorOut,
    PredictIn,
    PredictionOut,
    PredictOut,
    PromoteIn,
    RollbackIn,
    RolloutIn,
    SchoolRollbackIn,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    TokenRevokedOut,
)
from edumlops.deployments.tokens import IntegrationTokenAuthentication, school_for_caller
from edumlops.ml import onnx_bundle
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, require, visible_districts, visible_schools


def _deployment(request: Request, pk: int, action: Action) -> Deployment:
    deployment = get_object_or_404(
        Deployment.objects.select_related("model_version", "district").filter(
            district__in=visible_districts(request.user)
        ),
        pk=pk,
    )
    require(request.user, action, deployment)
    return deployment


def _refused(exc: services.DeploymentError) -> ValidationError:
    """A rollout, promotion or rollback the service refuses: a 400 with its reason and fix."""
    return ValidationError(str(exc))


def _not_found(field: str, what: str, pk: Any) -> ValidationError:
    return ValidationError({field: f"No {what} {pk} that you may see: check the id."})


@extend_schema(
    methods=["GET"],
    responses=DeploymentOut(many=True),
    description="Deployments of the districts you see, newest first (at most 200).",
)
@extend_schema(
    methods=["POST"],
    request=RolloutIn,
    responses={201: DeploymentOut},
    description="Roll a model version out to pilot schools or the whole district (district "
    "staff). A refused rollout is a 400 saying why and what to do.",
)
@api_view(["GET", "POST"])
def deployment_list(request: Request) -> Response:
    """GET: deployments of the districts you see (newest first). POST: roll a model version out
    to pilot schools or the district (district staff)."""
    if request.method == "GET":
        items = Deployment.objects.filter(
            district__in=visible_districts(request.user)
        ).select_related("model_version")
        return Response(DeploymentOut(items.prefetch_related("schools")[:200], many=True).data)
    body = parse(RolloutIn, request.data)
    model = ModelVersion.objects.filter(
        district__in=visible_districts(request.user), pk=body["model_version"]
    ).first()
    if model is None:
        raise _not_found("model_version", "model version", body["model_version"])
    require(request.user, Action.PROMOTE, model)
    wanted = set(body.get("schools") or [])
    schools = list(School.objects.filter(district=model.district, pk__in=wanted))
    missing = wanted - {s.pk for s in schools}
    if missing:
        raise ValidationError(
            {"schools": f"No such school in {model.district}: {sorted(missing)[:20]}."}
        )
    try:
        new = rollout.roll_out(
            model, scope=body["scope"], schools=schools, user=request.user, reason=body["reason"]
        )
    except services.DeploymentError as exc:
        raise _refused(exc) from None
    return Response(DeploymentOut(new).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=DeploymentOut)
@api_view(["GET"])
def deployment_detail(request: Request, pk: int) -> Response:
    return Response(DeploymentOut(_deployment(request, pk, Action.VIEW)).data)


@extend_schema(
    request=RollbackIn,
    responses={
        200: OpenApiResponse(DeploymentOut, description="The deployment that now answers."),
        204: OpenApiResponse(
            description="A pilot ended and no version answers for its schools any more (the "
            "district has none)."
        ),
    },
)
@api_view(["POST"])
def deployment_rollback(request: Request, pk: int) -> Response:
    """Roll back an active deployment to its last known good version, or to `target_version`
    (a model version id of its district), in one transaction."""
    deployment = _deployment(request, pk, Action.ROLL_BACK)
    body = parse(RollbackIn, request.data)
    target = None
    if body.get("target_version") is not None:
        target = ModelVersion.objects.filter(
            district=deployment.district, pk=body["target_version"]
        ).first()
        if target is None:
            raise _not_found("target_version", "model version", body["target_version"])
    try:
        now = rollout.rollback(deployment, user=request.user, reason=body["reason"], target=target)
    except services.DeploymentError as exc:
        raise _refused(exc) from None
    if now is None:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(DeploymentOut(now).data)


@extend_schema(request=PromoteIn, responses={201: DeploymentOut})
@api_view(["POST"])
def deployment_promote(request: Request, pk: int) -> Response:
    """Make an active pilot's version the district's, once its conditions hold: it has run
    its minimum days and no alert is open on a pilot school. Otherwise 400, naming each unmet
    condition and what to do."""
    pilot = _deployment(request, pk, Action.PROMOTE)
    body = parse(PromoteIn, request.data)
    try:
        new = rollout.promote(pilot, user=request.user, reason=body["reason"])
    except services.DeploymentError as exc:
        raise _refused(exc) from None
    return Response(DeploymentOut(new).data, status=status.HTTP_201_CREATED)


def _school(request: Request, pk: int, action: Action) -> School:
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    require(request.user, action, school)
    return school


@extend_schema(request=SchoolRollbackIn, responses=DeploymentOut)
@api_view(["POST"])
def school_rollback(request: Request, pk: int) -> Response:
    """Put this school alone back on its previous version (teachers, when the district allows)."""
    school = _school(request, pk, Action.ROLL_BACK)
    body = parse(SchoolRollbackIn, request.data)
    try:
        now = rollout.rollback_school(school, user=request.user, reason=body["reason"])
    except services.DeploymentError as exc:
        raise _refused(exc) from None
    return Response(DeploymentOut(now).data)


def _predict_school(request: Request, pk: int) -> School:
    """The school a predict request may score for: a token sees the schools of its district
    (another district's school is a 404, as if it did not exist) and may score for those of its
    scope (403 otherwise); a user, the schools they see."""
    token = request.auth
    if isinstance(token, IntegrationToken):
        get_object_or_404(School.objects.filter(district_id=token.district_id), pk=pk)
    return school_for_caller(request, pk, Action.VIEW)


@extend_schema(
    request=PredictIn,
    responses={
        200: PredictOut,
        400: OpenApiResponse(
            PredictErrorOut,
            description="The request is refused whole: each entry of `errors` names the row and "
            "the feature (`rows.3.gpa`), the problem and the fix.",
        ),
        **errors(409, 503),
    },
)
@api_view(["POST"])
@authentication_classes(
    [IntegrationTokenAuthentication, UserKeyAuthentication, SessionAuthentication]
)
@throttle_classes([PredictThrottle])
@parser_classes([StrictJSONParser])  # rows of features: JSON only, never a form
def school_predict(request: Request, pk: int) -> Response:
    """Score one row ({"row": {...}}) or a batch ({"rows": [...]}) with the school's active
    version. Each answer: probability, risk band, the version that answered and, for linear
    models, the features that moved the risk most. A bad request is refused whole (400, each
    row and feature named) and nothing is recorded. A category the model never saw in training
    is scored (it counts as none of the known ones) and flagged in `warnings`, and counted by
    the school's monitoring."""
    school = _predict_school(request, pk)
    body = parse(PredictIn, request.data)
    where = "rows" if "rows" in body else "row"
    rows = body["rows"] if "rows" in body else [body["row"]]
    deployment = services.resolve(school)
    if deployment is None:
        raise Conflict(f"No model is deployed for {school}: roll one out first.")
    try:
        model = serving.CACHE.get(deployment.model_version)
    except serving.RequestError as exc:  # a version without a bundle
        raise Conflict(str(exc)) from None
    except onnx_bundle.BundleError as exc:
        return Response(
            {
                "detail": f"The bundle of {deployment.model_version} cannot be served: {exc}",
                "code": "service_unavailable",
                "errors": [],
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    try:
        answers, seconds, warnings = serving.score(model, rows, where)
    except serving.RequestError as exc:
        return Response(
            {"detail": str(exc), "code": "invalid", "errors": exc.errors},
            status=status.HTTP_400_BAD_REQUEST,
        )
    hotpath.record(model, school.pk, deployment.pk, rows, answers, seconds, warnings)
    for a in answers:
        a["deployment"] = deployment.pk
    return Response({"school": school.pk, "predictions": answers, "warnings": warnings})


@extend_schema(responses=PredictionOut(many=True))
@api_view(["GET"])
def school_predictions(request: Request, pk: int) -> Response:
    """The school's latest recorded predictions (minimised: features, probability, band)."""
    school = _school(request, pk, Action.VIEW)
    items = Prediction.objects.filter(school=school).order_by("-id")[:100]
    return Response(PredictionOut(items, many=True).data)


@extend_schema(
    methods=["GET"],
    responses=TokenOut(many=True),
    description="The integration tokens of your districts (never their keys).",
)
@extend_schema(
    methods=["POST"],
    request=TokenIn,
    responses={201: TokenCreatedOut},
    description="Create a token for the district or one school of it (district staff, "
    "admins); the answer holds the key, shown this once.",
)
@api_view(["GET", "POST"])
@throttle_classes([TokenThrottle])
def token_list(request: Request) -> Response:
    """GET: the integration tokens of your districts (never their keys). POST: create one for
    the district or one school; the answer holds the key, shown this once."""
    from edumlops.deployments import tokens

    if request.method == "GET":
        items = IntegrationToken.objects.filter(district__in=visible_districts(request.user))
        return Response(TokenOut(items, many=True).data)
    body = parse(TokenIn, request.data)
    district = visible_districts(request.user).filter(pk=body["district"]).first()
    if district is None:
        raise _not_found("district", "district", body["district"])
    require(request.user, Action.MANAGE_DATA, district)
    school = None
    if body.get("school") is not None:
        school = School.objects.filter(pk=body["school"], district=district).first()
        if school is None:
            raise ValidationError({"school": f"No school {body['school']} in {district}."})
    try:
        token, key = tokens.create(district, body["name"], request.user, school)
    except ValueError as exc:
        raise ValidationError({"name": str(exc)}) from None
    return Response(
        {"id": token.pk, "name": token.name, "key": key, "prefix": token.prefix},
        status=status.HTTP_201_CREATED,
    )


@extend_schema(request=None, responses=TokenRevokedOut)
@api_view(["POST"])
def token_revoke(request: Request, pk: int) -> Response:
    from edumlops.deployments import tokens

    token = get_object_or_404(
        IntegrationToken.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    require(request.user, Action.MANAGE_DATA, token)
    tokens.revoke(token, request.user)
    return Response({"id": token.pk, "revoked": True})
