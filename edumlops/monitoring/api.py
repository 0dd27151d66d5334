"""Alerts over the API: list the ones you may see, acknowledge or resolve with a comment."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.userkeys import UserKeyAuthentication
from edumlops.deployments.tokens import IntegrationTokenAuthentication, school_for_caller
from edumlops.monitoring import services
from edumlops.monitoring.models import Alert
from edumlops.schools.permissions import Action, require, visible_districts, visible_schools


def visible_alerts(user) -> object:  # noqa: ANN001
    from django.db.models import Q

    return Alert.objects.filter(
        Q(district__in=visible_districts(user)) | Q(school__in=visible_schools(user))
    ).select_related("school", "district")


def as_dict(a: Alert) -> dict:
    return {
        "id": a.pk,
        "district": a.district_id,
        "school": a.school_id,
        "monitor": a.monitor,
        "cause": a.cause,
        "severity": a.severity,
        "status": a.status,
        "message": a.message,
        "created_at": a.created_at.isoformat(),
        "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
    }


@extend_schema(responses={200: None})
@api_view(["GET"])
def alert_list(request: Request) -> Response:
    """Alerts you may see, newest first (`?status=open` to filter)."""
    alerts = visible_alerts(request.user)
    if request.query_params.get("status"):
        alerts = alerts.filter(status=request.query_params["status"])
    return Response([as_dict(a) for a in alerts[:500]])


DecisionIn = inline_serializer("AlertDecisionIn", {"comment": serializers.CharField()})


def _decide(request: Request, pk: int, status: str) -> Response:
    alert = get_object_or_404(visible_alerts(request.user), pk=pk)
    require(request.user, Action.EDIT_THRESHOLDS, alert)
    try:
        services.decide(alert, request.user, status, request.data.get("comment", ""))
    except services.AlertError as exc:
        return Response({"detail": str(exc)}, status=400)
    return Response(as_dict(alert))


@extend_schema(request=DecisionIn, responses={200: None})
@api_view(["POST"])
def alert_acknowledge(request: Request, pk: int) -> Response:
    return _decide(request, pk, Alert.Status.ACKNOWLEDGED)


@extend_schema(request=DecisionIn, responses={200: None})
@api_view(["POST"])
def alert_resolve(request: Request, pk: int) -> Response:
    return _decide(request, pk, Alert.Status.RESOLVED)


TelemetryIn = inline_serializer(
    "TelemetryIn",
    {
        "idempotency_key": serializers.CharField(),
        "school": serializers.IntegerField(),
        "aggregates": serializers.ListField(child=serializers.DictField()),
    },
)


@extend_schema(request=TelemetryIn, responses={200: None, 201: None})
@api_view(["POST"])
@authentication_classes(
    [IntegrationTokenAuthentication, UserKeyAuthentication, SessionAuthentication]
)
def telemetry(request: Request) -> Response:
    """Daily aggregates from an edge node (or any integration): per school, day and model
    version, counts, risk bands, histograms on the model's reference bins, latency. Sending
    the same `idempotency_key` again counts nothing (200 with "duplicate": true)."""
    from edumlops.monitoring import telemetry as t

    school = school_for_caller(request, request.data.get("school"), Action.EDIT_THRESHOLDS)
    try:
        added, duplicate = t.receive(
            school.district,
            request.data.get("idempotency_key", ""),
            school,
            request.data.get("aggregates"),
        )
    except t.TelemetryError as exc:
        return Response({"detail": str(exc)}, status=400)
    return Response({"added": added, "duplicate": duplicate}, status=200 if duplicate else 201)
