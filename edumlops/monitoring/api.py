"""Alerts over the API: list the ones you may see, acknowledge or resolve with a comment; and
the telemetry door for integrations' daily aggregates."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    throttle_classes,
)
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import StrictJSONParser, parse
from edumlops.core.throttles import TelemetryThrottle
from edumlops.core.userkeys import UserKeyAuthentication
from edumlops.deployments.models import IntegrationToken
from edumlops.deployments.tokens import IntegrationTokenAuthentication
from edumlops.monitoring import services
from edumlops.monitoring.models import Alert
from edumlops.monitoring.serializers import (
    AlertDecisionIn,
    AlertOut,
    AlertQuery,
    TelemetryIn,
    TelemetryOut,
)
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, require, visible_districts, visible_schools


def visible_alerts(user) -> QuerySet[Alert]:  # noqa: ANN001
    return Alert.objects.filter(
        Q(district__in=visible_districts(user)) | Q(school__in=visible_schools(user))
    ).select_related("school", "district")


@extend_schema(parameters=[AlertQuery], responses=AlertOut(many=True))
@api_view(["GET"])
def alert_list(request: Request) -> Response:
    """Alerts you may see, newest first (at most 500; `?status=open` to filter)."""
    query = parse(AlertQuery, request.query_params)
    alerts = visible_alerts(request.user)
    if query.get("status"):
        alerts = alerts.filter(status=query["status"])
    return Response(AlertOut(alerts[:500], many=True).data)


def _decide(request: Request, pk: int, status: str) -> Response:
    alert = get_object_or_404(visible_alerts(request.user), pk=pk)
    require(request.user, Action.EDIT_THRESHOLDS, alert)
    body = parse(AlertDecisionIn, request.data)
    try:
        services.decide(alert, request.user, status, body["comment"])
    except services.AlertError as exc:
        raise ValidationError(str(exc)) from None
    return Response(AlertOut(alert).data)


@extend_schema(request=AlertDecisionIn, responses=AlertOut)
@api_view(["POST"])
def alert_acknowledge(request: Request, pk: int) -> Response:
    return _decide(request, pk, Alert.Status.ACKNOWLEDGED)


@extend_schema(request=AlertDecisionIn, responses=AlertOut)
@api_view(["POST"])
def alert_resolve(request: Request, pk: int) -> Response:
    return _decide(request, pk, Alert.Status.RESOLVED)


def _telemetry_school(request: Request, pk: int) -> School:
    """The school of a telemetry batch: one the caller sees (a 400 naming `school` otherwise),
    and may send for (a 403 saying why otherwise)."""
    token = request.auth
    if isinstance(token, IntegrationToken):
        school = School.objects.filter(district_id=token.district_id, pk=pk).first()
        if school is not None and not token.may_predict_for(school):
            raise PermissionDenied(f"This token is for {token.school or token.district}.")
    else:
        school = visible_schools(request.user).filter(pk=pk).first()
        if school is not None:
            require(request.user, Action.EDIT_THRESHOLDS, school)
    if school is None:
        raise ValidationError({"school": f"No school {pk} that you may see: check the id."})
    return school


@extend_schema(
    request=TelemetryIn,
    responses={
        201: OpenApiResponse(TelemetryOut, description="The batch was counted."),
        200: OpenApiResponse(TelemetryOut, description="A batch sent before: nothing added."),
    },
)
@api_view(["POST"])
@authentication_classes(
    [IntegrationTokenAuthentication, UserKeyAuthentication, SessionAuthentication]
)
@throttle_classes([TelemetryThrottle])
@parser_classes([StrictJSONParser])  # nested aggregates: JSON only, never a form
def telemetry(request: Request) -> Response:
    """Daily aggregates from an edge node (or any integration): per school, day and model
    version, counts, risk bands, histograms on the model's reference bins, latency. Sending
    the same `idempotency_key` again counts nothing (200 with "duplicate": true)."""
    from edumlops.monitoring import telemetry as t

    body = parse(TelemetryIn, request.data)
    school = _telemetry_school(request, body["school"])
    try:
        added, duplicate = t.receive(
            school.district, body["idempotency_key"], school, body["aggregates"]
        )
    except t.TelemetryError as exc:
        raise ValidationError({exc.field: str(exc)} if exc.field else str(exc)) from None
    return Response({"added": added, "duplicate": duplicate}, status=200 if duplicate else 201)
