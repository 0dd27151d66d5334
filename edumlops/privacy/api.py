"""The privacy budget over the API: each cohort's standing this school year, setting a budget
(district admins), and the ledger of releases. Readers are district staff and admins (the
ledger is part of the audit trail); teachers see none of it."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import api_error, errors, parse
from edumlops.datasets.models import Dataset
from edumlops.privacy import ledger
from edumlops.privacy.models import PrivacyRelease
from edumlops.schools.models import District
from edumlops.schools.permissions import Action, can, require, visible_districts


class StandingOut(serializers.Serializer):
    district = serializers.IntegerField()
    dataset = serializers.IntegerField(
        allow_null=True, help_text="The cohort's dataset; null for the live predictions."
    )
    cohort = serializers.CharField(help_text="The dataset's name, or 'Live predictions'.")
    school_year = serializers.IntegerField(help_text="2026 = the school year 2026–27.")
    school_year_label = serializers.CharField()
    total_epsilon = serializers.FloatField()
    spent_epsilon = serializers.FloatField()
    remaining_epsilon = serializers.FloatField()
    max_per_release = serializers.FloatField()
    min_cell = serializers.IntegerField()
    resets_on = serializers.DateField(
        allow_null=True, help_text="When the next school year starts on the calendar."
    )
    own_budget = serializers.BooleanField(
        help_text="False when the district default applies to this cohort."
    )


class BudgetQuery(serializers.Serializer):
    district = serializers.IntegerField(required=False, help_text="Only this district.")


class BudgetIn(serializers.Serializer):
    district = serializers.IntegerField(
        required=False,
        help_text='For "default": the district (needed only if you see more than one).',
    )
    total_epsilon = serializers.FloatField(
        min_value=0,
        max_value=1000,
        help_text="Total ε the cohort may spend per school year (0 stops all releases).",
    )
    max_per_release = serializers.FloatField(
        min_value=0.000001, max_value=1000, help_text="The most ε one release may spend (> 0)."
    )
    min_cell = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Counts below this are suppressed when no budget is left (default: unchanged).",
    )


class ReleaseQuery(serializers.Serializer):
    dataset = serializers.RegexField(
        r"^(\d+|live)$",
        required=False,
        help_text='A dataset id, or "live" for the live predictions; all cohorts if left out.',
        error_messages={"invalid": 'Use a dataset id, or "live" for the live predictions.'},
    )
    year = serializers.IntegerField(
        required=False,
        min_value=1900,
        max_value=3000,
        help_text="The school year (2026 = 2026–27); this one if left out.",
    )
    district = serializers.IntegerField(required=False, help_text="Only this district.")


class ReleaseOut(serializers.ModelSerializer):
    cohort = serializers.SerializerMethodField()
    released = serializers.SerializerMethodField()

    class Meta:
        model = PrivacyRelease
        fields = [
            "id",
            "district",
            "dataset",
            "cohort",
            "school_year",
            "kind",
            "epsilon",
            "delta",
            "mechanism",
            "what",
            "key",
            "released",
            "actor_name",
            "created_at",
            "audit_record_id",
        ]

    def get_cohort(self, release: PrivacyRelease) -> str:
        return str(release.dataset) if release.dataset_id else "Live predictions"

    def get_released(self, release: PrivacyRelease) -> str:
        """What was released, as "type:id" (e.g. registry.modelversion:7); "" if nothing."""
        return f"{release.target_type}:{release.target_id}" if release.target_type else ""


def _districts(request: Request, pk: int | None = None) -> list[District]:
    districts = [
        d for d in visible_districts(request.user) if can(request.user, Action.VIEW_AUDIT, d)
    ]
    if not districts:
        raise PermissionDenied("The privacy ledger is for district staff and admins.")
    if pk is not None:
        districts = [d for d in districts if d.pk == pk]
        if not districts:
            get_object_or_404(District.objects.none())
    return districts


def _standing(district: District, s: ledger.Standing) -> dict[str, Any]:
    dataset = s.dataset
    return {
        "district": district.pk,
        "dataset": dataset.pk if dataset else None,
        "cohort": s.label,
        "school_year": s.school_year,
        "school_year_label": ledger.year_label(s.school_year),
        "total_epsilon": s.total,
        "spent_epsilon": round(s.spent, 6),
        "remaining_epsilon": round(s.remaining, 6),
        "max_per_release": s.max_per_release,
        "min_cell": s.min_cell,
        "resets_on": s.resets_on,
        "own_budget": s.own_budget,
    }


@extend_schema(parameters=[BudgetQuery], responses={200: StandingOut(many=True), **errors(404)})
@api_view(["GET"])
def budget_list(request: Request) -> Response:
    """Each cohort's budget this school year: the live predictions, then each dataset."""
    query = parse(BudgetQuery, request.query_params)
    out = []
    for district in _districts(request, query.get("district")):
        cohorts = [None, *Dataset.objects.filter(district=district).order_by("name")]
        out += [_standing(district, s) for s in ledger.standings(district, cohorts)]
    return Response(StandingOut(out, many=True).data)


@extend_schema(
    request=BudgetIn,
    responses={200: StandingOut, **errors(403)},
    parameters=[
        OpenApiParameter(
            "cohort",
            OpenApiTypes.STR,
            OpenApiParameter.PATH,
            description='A dataset id, or "default" for the district default (which the live '
            "predictions and every dataset without a budget of its own use).",
        )
    ],
)
@api_view(["PUT"])
def budget_detail(request: Request, cohort: str) -> Response:
    """Set a cohort's budget (district admins); audited as old → new."""
    body = parse(BudgetIn, request.data)
    if cohort == "default":
        dataset = None
        districts = _districts(request, body.get("district"))
        if len(districts) > 1:
            return api_error(
                {"district": ["You see several districts: name the one whose default to set."]}
            )
        district = districts[0]
    elif cohort.isdigit():
        dataset = get_object_or_404(
            Dataset.objects.filter(district__in=visible_districts(request.user)), pk=int(cohort)
        )
        district = dataset.district
    else:
        return api_error(f'"{cohort[:40]}" is not a cohort: use a dataset id or "default".')
    require(request.user, Action.MANAGE, district)
    try:
        ledger.set_budget(
            district=district,
            dataset=dataset,
            total_epsilon=body["total_epsilon"],
            max_per_release=body["max_per_release"],
            min_cell=body.get("min_cell"),
            actor=request.user,
        )
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        return api_error({field: [message]} if message else str(exc))
    return Response(StandingOut(_standing(district, ledger.standing(district, dataset))).data)


@extend_schema(parameters=[ReleaseQuery], responses={200: ReleaseOut(many=True), **errors(404)})
@api_view(["GET"])
def release_list(request: Request) -> Response:
    """The ledger: every differentially private release of a school year, newest first."""
    query = parse(ReleaseQuery, request.query_params)
    districts = _districts(request, query.get("district"))
    wanted = query.get("dataset")
    dataset = None
    if wanted and wanted != "live":
        dataset = get_object_or_404(Dataset.objects.filter(district__in=districts), pk=int(wanted))
        districts = [d for d in districts if d.pk == dataset.district_id]
    out: list[PrivacyRelease] = []
    for district in districts:
        releases = PrivacyRelease.objects.filter(
            district=district, school_year=query.get("year") or ledger.school_year(district)
        ).select_related("dataset")
        if wanted:
            releases = releases.filter(dataset=dataset)
        out += list(releases[:1000])
    return Response(ReleaseOut(out, many=True).data)
