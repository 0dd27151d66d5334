"""The request and response bodies of the deployments API (edumlops.deployments.api): each request
is read through one of these (edumlops.core.api.parse) and the same classes make the OpenAPI."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from edumlops.core.api import ErrorOut, FieldErrorOut
from edumlops.deployments import services
from edumlops.deployments.models import Deployment, IntegrationToken, Prediction
from edumlops.deployments.serving import MAX_TEXT
from edumlops.ml.serving_core import MAX_ROWS, UNSEEN

MAX_ID = 2**63 - 1
MAX_REASON = 2000


def id_field(**kwargs) -> serializers.IntegerField:  # noqa: ANN003
    """An object id in a body: a whole number within the range of the database's ids."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


# --- deployments -------------------------------------------------------------------------------


class ModelRefOut(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class DeploymentOut(serializers.ModelSerializer):
    model = serializers.SerializerMethodField()
    schools = serializers.SerializerMethodField()
    last_known_good = serializers.SerializerMethodField(
        help_text="The model version a rollback without a target goes back to, if any."
    )

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

    @extend_schema_field(ModelRefOut)
    def get_model(self, d: Deployment) -> dict:
        return {"name": d.model_version.name, "version": d.model_version.version}

    def get_schools(self, d: Deployment) -> list[int]:
        return [s.pk for s in d.schools.all()]

    def get_last_known_good(self, d: Deployment) -> int | None:
        good = services.last_known_good(d)
        return good.model_version_id if good else None


class RolloutIn(serializers.Serializer):
    model_version = id_field(help_text="The id of the model version to roll out.")
    scope = serializers.ChoiceField(choices=Deployment.Scope.choices)
    schools = serializers.ListField(
        child=id_field(),
        required=False,
        max_length=500,  # below DATA_UPLOAD_MAX_NUMBER_FIELDS, should it come as a form
        help_text="For a pilot: the ids of its schools (schools of the model's district).",
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_REASON, default=""
    )

    def validate(self, data: dict) -> dict:
        if data["scope"] == Deployment.Scope.PILOT and not data.get("schools"):
            raise serializers.ValidationError(
                {"schools": "A pilot needs at least one school: list the ids of its schools."}
            )
        return data


REASON_NEEDED = "Say why you roll back: the reason goes to the audit trail."


class RollbackIn(serializers.Serializer):
    reason = serializers.CharField(
        max_length=MAX_REASON,
        error_messages={"required": REASON_NEEDED, "blank": REASON_NEEDED},
        help_text="Why: kept in the audit trail.",
    )
    target_version = id_field(
        required=False,
        allow_null=True,
        help_text="A model version id of the deployment's district; by default the last "
        "known good version.",
    )


class SchoolRollbackIn(serializers.Serializer):
    reason = serializers.CharField(
        max_length=MAX_REASON,
        error_messages={"required": REASON_NEEDED, "blank": REASON_NEEDED},
        help_text="Why: kept in the audit trail.",
    )


class PromoteIn(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_REASON, default=""
    )


# --- predict -----------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "number"}, {"type": "string", "maxLength": MAX_TEXT}],
        "nullable": True,
        "description": "A number, a category as text, or null for unknown.",
    }
)
class FeatureValueField(serializers.Field):
    """A feature's value, kept as sent: the served model's features decide what is right, and
    edumlops.deployments.serving.check_rows names each wrong one with its row and the fix."""

    def to_internal_value(self, data: object) -> object:
        return data

    def to_representation(self, value: object) -> object:
        return value


class PredictIn(serializers.Serializer):
    """`rows` (a batch) or `row` (one): objects of feature: value (numbers as numbers,
    categories as text, null for unknown)."""

    rows = serializers.ListField(
        child=serializers.DictField(child=FeatureValueField(allow_null=True)),
        required=False,
        min_length=1,
        max_length=MAX_ROWS,
        help_text=f"1 to {MAX_ROWS} rows, each an object of feature: value.",
    )
    row = serializers.DictField(
        child=FeatureValueField(allow_null=True),
        required=False,
        help_text="One row, instead of `rows`.",
    )

    def validate(self, data: dict) -> dict:
        if ("rows" in data) == ("row" in data):
            raise serializers.ValidationError(
                'Send {"rows": [{feature: value, ...}, ...]} or {"row": {feature: value, ...}}.'
            )
        return data


class ContributionOut(serializers.Serializer):
    feature = serializers.CharField()
    contribution = serializers.FloatField()
    direction = serializers.ChoiceField(choices=["raises risk", "lowers risk"])


class AnswerOut(serializers.Serializer):
    probability = serializers.FloatField()
    risk_band = serializers.ChoiceField(choices=["low", "medium", "high"])
    model = ModelRefOut()
    top_features = ContributionOut(
        many=True, required=False, help_text="Linear models: the features that moved it most."
    )
    deployment = serializers.IntegerField()


class PredictWarningOut(serializers.Serializer):
    row = serializers.IntegerField(help_text="The index of the row (0 for a single `row`).")
    field = serializers.CharField(help_text="The feature concerned.")
    code = serializers.ChoiceField(
        choices=[UNSEEN],
        help_text=f"`{UNSEEN}`: a category the model never saw in training; the row was "
        "scored with it counting as none of the known categories.",
    )
    message = serializers.CharField(help_text="What happened and what to check, in words.")


class PredictOut(serializers.Serializer):
    school = serializers.IntegerField()
    predictions = AnswerOut(many=True)
    warnings = PredictWarningOut(
        many=True,
        help_text="Rows that were scored but deserve a second look (empty when none).",
    )


class RowErrorOut(FieldErrorOut):
    row = serializers.IntegerField(required=False, help_text="The index of the row at fault.")
    feature = serializers.CharField(required=False)
    problem = serializers.CharField(required=False)


class PredictErrorOut(ErrorOut):
    errors = RowErrorOut(many=True)


class PredictionOut(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")
    risk_band = serializers.CharField(source="band")
    features = serializers.DictField()
    unseen_categories = serializers.ListField(
        child=serializers.CharField(),
        help_text="The features whose category the model never saw in training.",
    )

    class Meta:
        model = Prediction
        fields = [
            "id",
            "at",
            "model_version",
            "probability",
            "risk_band",
            "features",
            "unseen_categories",
        ]


# --- integration tokens ------------------------------------------------------------------------


class TokenIn(serializers.Serializer):
    name = serializers.CharField(
        max_length=100, help_text="What will use it, e.g. 'SIS nightly scores'."
    )
    district = id_field(help_text="The id of the district the token serves.")
    school = id_field(
        required=False, allow_null=True, help_text="One school of it only (by default all)."
    )


class TokenOut(serializers.ModelSerializer):
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = IntegrationToken
        fields = [
            "id",
            "name",
            "prefix",
            "district",
            "school",
            "created_at",
            "revoked",
            "last_used_at",
        ]

    def get_revoked(self, token: IntegrationToken) -> bool:
        return token.revoked_at is not None


class TokenCreatedOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    key = serializers.CharField(help_text="The key, shown this once: keep it safe.")
    prefix = serializers.CharField()


class TokenRevokedOut(serializers.Serializer):
    id = serializers.IntegerField()
    revoked = serializers.BooleanField()
