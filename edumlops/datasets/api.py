"""REST API of datasets: upload a CSV, list and read versions, mark a version's roles.

Uploads are multipart (field `file`): a CSV in UTF-8 (with or without a byte-order mark),
UTF-16 with a byte-order mark or Windows-1252, plain or gzip-compressed. A bad file is a 400
whose `errors` entry has field "file" and a message "line N: …"; a file over the size limit
(also once unpacked) is a 413. Nothing is stored on any error."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, throttle_classes
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import api_error, errors, parse
from edumlops.core.throttles import UploadThrottle
from edumlops.datasets.models import Dataset, DatasetVersion, ingest, limits
from edumlops.ml.datasets import (
    LEAK_AUC,
    OUTCOME_OPS,
    OUTCOME_YES,
    DatasetError,
    DatasetTooLarge,
    Roles,
)
from edumlops.schools.models import District
from edumlops.schools.permissions import (
    Action,
    can,
    require,
    visible_districts,
    visible_schools,
)

ID_MAX = 2**63 - 1
ROLE_KEYS = ("label", "positive", "sensitive", "school", "grade", "time")


# --- answers ----------------------------------------------------------------------------------
class GroupCountOut(serializers.Serializer):
    group = serializers.CharField()
    rows = serializers.IntegerField(help_text="Rows of this group with a known outcome.")
    positive = serializers.IntegerField(help_text="Of them, rows where the rule holds.")


class OutcomeCountsOut(serializers.Serializer):
    rows = serializers.IntegerField(help_text="Rows with a known outcome.")
    positive = serializers.IntegerField(help_text="Rows where the rule holds (label 'yes').")
    negative = serializers.IntegerField(help_text="Rows where it does not (label 'no').")
    missing = serializers.IntegerField(
        help_text="Rows whose source value is missing: no outcome, left out of training."
    )
    by_group = serializers.DictField(
        child=GroupCountOut(many=True),
        help_text="Per sensitive attribute, the rows and positives of each group.",
    )


class ExcludedOut(serializers.Serializer):
    column = serializers.CharField()
    why = serializers.CharField(help_text="Why a model may not learn from it.")
    auc = serializers.FloatField(required=False, help_text="Its single-column ROC AUC (leaks).")


class LeakOut(serializers.Serializer):
    column = serializers.CharField()
    auc = serializers.FloatField(help_text="ROC AUC of this column alone for the outcome.")
    kept = serializers.BooleanField(help_text="True when keep_leaky lets models use it anyway.")


class OutcomeOut(serializers.Serializer):
    name = serializers.CharField(help_text="The derived label's name (a column of no file).")
    column = serializers.CharField(help_text="The column the rule reads.")
    op = serializers.CharField()
    value = serializers.JSONField(help_text="A number; [lo, hi] for between; a list for in.")
    rule = serializers.CharField(help_text='The rule in words, e.g. "G3 < 10".')
    label = serializers.CharField(help_text="The label it makes (its name).")
    positive = serializers.ListField(
        child=serializers.CharField(), help_text='Its positive class: ["yes"].'
    )
    keep_leaky = serializers.ListField(child=serializers.CharField())
    counts = OutcomeCountsOut()
    excluded = ExcludedOut(many=True, help_text="Columns left out of features, and why.")
    leaks = LeakOut(
        many=True,
        help_text=f"Columns that alone predict the outcome almost perfectly (AUC above "
        f"{LEAK_AUC} or below {1 - LEAK_AUC:.2f}); excluded unless kept.",
    )


def outcome_out(version: DatasetVersion) -> dict[str, Any] | None:
    outcome = version.outcome
    if outcome is None:
        return None
    return {
        **outcome.definition(),
        "rule": outcome.rule,
        "label": outcome.name,
        "positive": [OUTCOME_YES],
        "counts": outcome.counts,
        "excluded": outcome.excluded,
        "leaks": outcome.leaks,
    }


class DatasetVersionOut(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")
    dataset_id = serializers.IntegerField(source="dataset.pk")
    created_by = serializers.StringRelatedField(allow_null=True)
    schema = serializers.ListField(
        child=serializers.DictField(), help_text="One entry per column: name, kind, stats."
    )
    roles = serializers.DictField(
        help_text="label, positive, sensitive, school, grade, time (and outcome: see there)."
    )
    outcome = serializers.SerializerMethodField(
        help_text="The label derived from a rule, with its counts and the columns it excludes; "
        "null when none is defined."
    )

    @extend_schema_field(OutcomeOut(allow_null=True))
    def get_outcome(self, version: DatasetVersion) -> dict[str, Any] | None:
        return outcome_out(version)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "dataset_id",
            "number",
            "sha256",
            "original_name",
            "size",
            "rows",
            "delimiter",
            "encoding",
            "schema",
            "roles",
            "outcome",
            "created_by",
            "created_at",
        ]


class UploadedOut(DatasetVersionOut):
    created = serializers.BooleanField(
        help_text="False when the same bytes were stored before: the existing version."
    )

    class Meta(DatasetVersionOut.Meta):
        fields = [*DatasetVersionOut.Meta.fields, "created"]


class VersionBriefOut(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = ["id", "number", "sha256", "rows"]


class DatasetOut(serializers.ModelSerializer):
    district = serializers.IntegerField(source="district_id")
    versions = VersionBriefOut(many=True, read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "name", "district", "source", "description", "attribution", "versions"]


# --- requests ---------------------------------------------------------------------------------
def _text(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(max_length=200, allow_blank=True, required=False, **kwargs)


def _columns(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=500,
        help_text=help_text + " (repeat the field, or separate names with commas).",
    )


class UploadIn(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True,  # read_csv says "line 1: the file is empty", with the fix
        help_text="The CSV: UTF-8 (BOM or not), UTF-16 with a BOM or Windows-1252; plain or "
        "gzip-compressed (.csv.gz, at most the size limit once unpacked).",
    )
    name = _text(help_text="The dataset's name (default: the file's name).")
    district = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        allow_null=True,
        help_text="The district's id (optional when you manage only one).",
    )
    label = _text(allow_null=True, help_text="The label column.")
    positive = _columns("The label's value(s) that mean the outcome to predict")
    sensitive = _columns("Sensitive attribute columns")
    school = _text(allow_null=True, help_text="The school column.")
    grade = _text(allow_null=True, help_text="The grade column.")
    time = _text(allow_null=True, help_text="The date or term column.")


class OutcomeIn(serializers.Serializer):
    name = serializers.CharField(
        max_length=63, help_text="The derived label's name, e.g. at_risk (not a column's name)."
    )
    column = serializers.CharField(max_length=200, help_text="The column the rule reads.")
    op = serializers.ChoiceField(
        choices=list(OUTCOME_OPS),
        help_text="<, <=, >, >=, == or between for a numeric column; in for categories.",
    )
    value = serializers.JSONField(
        help_text="A number (e.g. 10); [lo, hi] for between (both included); a list of the "
        'column\'s values for in (e.g. ["teacher", "health"]).'
    )
    keep_leaky = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=500,
        help_text="Columns to keep as features although they alone predict the outcome almost "
        "perfectly (by default such columns are excluded).",
    )


class RolesIn(serializers.Serializer):
    label = _text(allow_null=True)
    positive = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=500
    )
    sensitive = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=500
    )
    school = _text(allow_null=True)
    grade = _text(allow_null=True)
    time = _text(allow_null=True)
    outcome = OutcomeIn(
        required=False,
        allow_null=True,
        help_text='Derive the label from a rule on a column, e.g. {"name": "at_risk", '
        '"column": "G3", "op": "<", "value": 10}: it becomes the label with positive class '
        '"yes" (replacing label and positive). null removes the rule.',
    )


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _roles_from(data: dict[str, Any]) -> Roles | None:
    """Roles sent beside an upload (lists may repeat or be comma-separated)."""
    if not any(k in data for k in ROLE_KEYS):
        return None
    return Roles(
        label=data.get("label") or None,
        positive=_split(data.get("positive", [])),
        sensitive=_split(data.get("sensitive", [])),
        school=data.get("school") or None,
        grade=data.get("grade") or None,
        time=data.get("time") or None,
    )


def district_for_upload(user: Any, district_id: int | None) -> District:
    """The district an upload goes to: the one named, else the only one the user manages data
    of. One the user cannot see at all is a 400 naming `district`, like an unknown id."""
    if district_id is not None:
        seen = District.objects.filter(
            Q(pk__in=visible_districts(user).values("pk"))
            | Q(pk__in=visible_schools(user).values("district_id"))
        )
        district = seen.filter(pk=district_id).first()
        if district is None:
            raise ValidationError({"district": [f"There is no district {district_id} you see."]})
        require(user, Action.MANAGE_DATA, district)
        return district
    districts = [d for d in visible_districts(user) if can(user, Action.MANAGE_DATA, d)]
    if not districts:
        raise PermissionDenied("Datasets are uploaded by district staff and admins.")
    if len(districts) > 1:
        listed = ", ".join(f"{d.pk} ({d.name})" for d in districts)
        raise ValidationError({"district": [f"Name the district to upload to: one of {listed}."]})
    return districts[0]


def _dataset_error(exc: DatasetError) -> Response:
    """A bad file or bad roles in the one error shape: 413 past the size limit, else 400."""
    if isinstance(exc, DatasetTooLarge):
        return api_error(
            {exc.field: [str(exc)]}, "too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    return api_error({exc.field: [str(exc)]})


# --- endpoints --------------------------------------------------------------------------------
@extend_schema(methods=["GET"], responses={200: DatasetOut(many=True)})
@extend_schema(
    methods=["POST"],
    request={"multipart/form-data": UploadIn, "application/x-www-form-urlencoded": UploadIn},
    responses={200: UploadedOut, 201: UploadedOut, **errors(413)},
)
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser, FormParser])
@throttle_classes([UploadThrottle])
def dataset_list(request: Request) -> Response:
    """GET: the datasets of the districts you see. POST: upload a CSV (multipart field `file`,
    optional `name`, `district` and roles); 201 with the new version, 200 with the existing one
    for the same bytes; 400 naming the line for a bad file, 413 over the size limit. At most
    EDUMLOPS_THROTTLE_UPLOADS uploads per caller (429 with Retry-After past it)."""
    if request.method == "GET":
        datasets = Dataset.objects.filter(district__in=visible_districts(request.user))
        return Response(DatasetOut(datasets.prefetch_related("versions"), many=True).data)
    data = parse(UploadIn, request.data)
    district = district_for_upload(request.user, data.get("district"))
    upload = data["file"]
    cap = limits().max_bytes
    if upload.size > cap:
        return _dataset_error(
            DatasetTooLarge(
                f"The file is {upload.size / 2**20:.1f} MB; the limit is {cap / 2**20:.0f} MB. "
                "Upload a smaller extract (e.g. one school year)."
            )
        )
    default_name = (upload.name or "dataset").removesuffix(".gz").rsplit(".", 1)[0]
    try:
        version, created = ingest(
            district=district,
            name=data.get("name") or default_name,
            data=upload.read(),
            user=request.user,
            roles=_roles_from(data),
            original_name=upload.name or "",
        )
    except DatasetError as exc:
        return _dataset_error(exc)
    version.created = created
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response(UploadedOut(version).data, status=code)


def _visible_versions(request: Request) -> Any:
    return DatasetVersion.objects.select_related("dataset").filter(
        district__in=visible_districts(request.user)
    )


@extend_schema(responses={200: DatasetOut}, operation_id="datasets_detail")
@api_view(["GET"])
def dataset_detail(request: Request, pk: int) -> Response:
    """A dataset with its versions; 404 for one you may not see, as for an unknown id."""
    dataset = get_object_or_404(
        Dataset.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    return Response(DatasetOut(dataset).data)


@extend_schema(methods=["GET"], responses={200: DatasetVersionOut})
@extend_schema(methods=["PATCH"], request=RolesIn, responses={200: DatasetVersionOut})
@api_view(["GET", "PATCH"])
def version_detail(request: Request, pk: int) -> Response:
    """GET: a version with its schema, statistics and outcome rule. PATCH: mark its roles
    (label, positive class, sensitive attributes, school/grade/time columns) and/or define the
    outcome from a rule (`outcome`: the derived column becomes the label; its source column and
    any column that alone predicts it almost perfectly are left out of features, unless named
    in `keep_leaky`). Audited. A 400 names the field at fault (e.g. `outcome.column`) and
    changes nothing. 404 for a version you may not see; 403 when you may not change it."""
    version = get_object_or_404(_visible_versions(request), pk=pk)
    if request.method == "GET":
        return Response(DatasetVersionOut(version).data)
    if not can(request.user, Action.MANAGE_DATA, version):
        raise PermissionDenied("A dataset's roles are marked by district staff and admins.")
    incoming = parse(RolesIn, request.data)
    try:
        version.change_roles(dict(incoming), request.user)
    except DatasetError as exc:
        return _dataset_error(exc)
    return Response(DatasetVersionOut(version).data)
