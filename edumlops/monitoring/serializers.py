"""The request and response bodies of the monitoring API (edumlops.monitoring.api) and of one
edge aggregate (read by edumlops.monitoring.telemetry.receive, whichever door it came through)."""

from __future__ import annotations

from rest_framework import serializers

from edumlops.monitoring.models import Alert

MAX_ID = 2**63 - 1
MAX_COUNT = 10**9  # rows in one aggregate: far above a school's day, far below the column's limit


def id_field(**kwargs) -> serializers.IntegerField:  # noqa: ANN003
    """An object id in a body: a whole number within the range of the database's ids."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


class AlertOut(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = [
            "id",
            "district",
            "school",
            "monitor",
            "cause",
            "severity",
            "status",
            "message",
            "created_at",
            "resolved_at",
        ]


class AlertQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Alert.Status.choices, required=False, help_text="Only the alerts in this state."
    )


class AlertDecisionIn(serializers.Serializer):
    comment = serializers.CharField(
        max_length=2000,
        error_messages={
            "required": "Write a comment: it is kept with the alert's history.",
            "blank": "Write a comment: it is kept with the alert's history.",
        },
    )


def _count(**kwargs) -> serializers.IntegerField:  # noqa: ANN003
    return serializers.IntegerField(min_value=0, max_value=MAX_COUNT, **kwargs)


class AggregateIn(serializers.Serializer):
    """One day of one model version's predictions at a school, as counts (no raw rows)."""

    day = serializers.DateField(help_text="YYYY-MM-DD")
    model_version = id_field(help_text="The id of the model version that answered.")
    count = _count(help_text="Predictions made that day.")
    bands = serializers.DictField(child=_count(), help_text="Risk band: count.")
    histograms = serializers.DictField(
        child=serializers.ListField(child=_count(), max_length=1000),
        help_text="Feature: counts on the model's reference bins.",
    )
    node = serializers.CharField(required=False, allow_blank=True, max_length=200)
    device_profile = serializers.CharField(required=False, allow_blank=True, max_length=200)
    latency_p50_ms = serializers.FloatField(required=False, allow_null=True, min_value=0)
    latency_p95_ms = serializers.FloatField(required=False, allow_null=True, min_value=0)


class TelemetryIn(serializers.Serializer):
    idempotency_key = serializers.CharField(
        max_length=120, help_text="Unique per batch: a batch sent again is counted once."
    )
    school = id_field(help_text="The id of the school the aggregates are about.")
    # at most 500 a batch: below DATA_UPLOAD_MAX_NUMBER_FIELDS, should it come as a form
    aggregates = serializers.ListField(child=AggregateIn(), min_length=1, max_length=500)


class TelemetryOut(serializers.Serializer):
    added = serializers.IntegerField(help_text="Aggregates counted (0 for a duplicate).")
    duplicate = serializers.BooleanField(help_text="This idempotency_key was received before.")
