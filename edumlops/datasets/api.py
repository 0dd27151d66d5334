"""REST API of datasets: upload a CSV, list and read versions, mark a version's roles."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.datasets.models import Dataset, DatasetVersion, ingest, limits
from edumlops.ml.datasets import DatasetError, Roles
from edumlops.schools.models import District
from edumlops.schools.permissions import Action, require, visible_districts


class DatasetVersionOut(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")
    dataset_id = serializers.IntegerField(source="dataset.pk")
    created_by = serializers.StringRelatedField()

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
            "created_by",
            "created_at",
        ]


class DatasetOut(serializers.ModelSerializer):
    versions = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "district", "source", "description", "attribution", "versions"]

    def get_versions(self, dataset: Dataset) -> list[dict[str, Any]]:
        return [
            {"id": v.pk, "number": v.number, "sha256": v.sha256, "rows": v.rows}
            for v in dataset.versions.all()
        ]


class RolesIn(serializers.Serializer):
    label = serializers.CharField(allow_blank=True, required=False, allow_null=True)
    positive = serializers.ListField(child=serializers.CharField(), required=False)
    sensitive = serializers.ListField(child=serializers.CharField(), required=False)
    school = serializers.CharField(allow_blank=True, required=False, allow_null=True)
    grade = serializers.CharField(allow_blank=True, required=False, allow_null=True)
    time = serializers.CharField(allow_blank=True, required=False, allow_null=True)


def _roles_from(data: Any) -> Roles | None:
    """Roles sent beside an upload (form fields; lists may repeat or be comma-separated)."""
    keys = ("label", "positive", "sensitive", "school", "grade", "time")
    if not any(k in data for k in keys):
        return None

    def many(key: str) -> list[str]:
        values = data.getlist(key) if hasattr(data, "getlist") else data.get(key) or []
        if isinstance(values, str):
            values = [values]
        return [v.strip() for value in values for v in str(value).split(",") if v.strip()]

    return Roles(
        label=data.get("label") or None,
        positive=many("positive"),
        sensitive=many("sensitive"),
        school=data.get("school") or None,
        grade=data.get("grade") or None,
        time=data.get("time") or None,
    )


def district_for_upload(user: Any, district_id: Any) -> District:
    """The district an upload goes to: the one named, else the user's only district."""
    if district_id:
        district = get_object_or_404(District, pk=district_id)
    else:
        districts = list(visible_districts(user)[:2])
        if len(districts) != 1:
            raise ValidationError(
                {"district": "Name the district to upload to (field 'district')."}
            )
        district = districts[0]
    require(user, Action.MANAGE_DATA, district)
    return district


def _upload_error(message: str) -> Response:
    return Response({"detail": message, "field": "file"}, status=status.HTTP_400_BAD_REQUEST)


@extend_schema(
    request=inline_serializer(
        "DatasetUpload",
        {
            "file": serializers.FileField(),
            "name": serializers.CharField(required=False),
            "district": serializers.IntegerField(required=False),
            "label": serializers.CharField(required=False),
            "positive": serializers.ListField(child=serializers.CharField(), required=False),
            "sensitive": serializers.ListField(child=serializers.CharField(), required=False),
        },
    ),
    responses={200: DatasetVersionOut, 201: DatasetVersionOut},
)
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser, FormParser])
def dataset_list(request: Request) -> Response:
    """GET: the datasets of the districts you see. POST: upload a CSV (multipart field `file`,
    optional `name`); 201 with the new version, 200 with the existing one for the same bytes."""
    if request.method == "GET":
        datasets = Dataset.objects.filter(district__in=visible_districts(request.user))
        return Response(DatasetOut(datasets.prefetch_related("versions"), many=True).data)
    district = district_for_upload(request.user, request.data.get("district"))
    upload = request.FILES.get("file")
    if upload is None:
        return _upload_error("No file was sent: attach the CSV in the multipart field 'file'.")
    cap = limits().max_bytes
    if upload.size > cap:
        return _upload_error(
            f"The file is {upload.size / 2**20:.1f} MB; the limit is {cap / 2**20:.0f} MB. "
            "Upload a smaller extract (e.g. one school year)."
        )
    name = request.data.get("name") or (upload.name or "dataset").rsplit(".", 1)[0]
    try:
        version, created = ingest(
            district=district,
            name=name,
            data=upload.read(),
            user=request.user,
            roles=_roles_from(request.data),
            original_name=upload.name or "",
        )
    except DatasetError as exc:
        return _upload_error(str(exc))
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return Response({**DatasetVersionOut(version).data, "created": created}, status=code)


def _get_version_for_user(request: Request, pk: int, action: Action) -> DatasetVersion:
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), pk=pk)
    require(request.user, action, version)
    return version


@extend_schema(responses=DatasetOut, operation_id="datasets_detail")
@api_view(["GET"])
def dataset_detail(request: Request, pk: int) -> Response:
    dataset = get_object_or_404(Dataset, pk=pk)
    require(request.user, Action.VIEW, dataset)
    return Response(DatasetOut(dataset).data)


@extend_schema(request=RolesIn, responses=DatasetVersionOut)
@api_view(["GET", "PATCH"])
@parser_classes([JSONParser, FormParser, MultiPartParser])
def version_detail(request: Request, pk: int) -> Response:
    """GET: a version with its schema and statistics. PATCH: mark its roles (label, positive
    class, sensitive attributes, school/grade/time columns)."""
    if request.method == "GET":
        return Response(DatasetVersionOut(_get_version_for_user(request, pk, Action.VIEW)).data)
    version = _get_version_for_user(request, pk, Action.MANAGE_DATA)
    incoming = RolesIn(data=request.data)
    incoming.is_valid(raise_exception=True)
    merged = {**version.roles, **incoming.validated_data}
    try:
        version.set_roles(Roles.from_dict(merged))
    except DatasetError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(DatasetVersionOut(version).data)
