"""REST API for districts, schools and the current user's roles."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.schools.models import CalendarPeriod, District, Membership, School
from edumlops.schools.permissions import Action, can, visible_districts, visible_schools


class CalendarPeriodSerializer(serializers.ModelSerializer):
    class Meta:
        model = CalendarPeriod
        fields = ["id", "kind", "name", "start", "end"]


class DistrictSerializer(serializers.ModelSerializer):
    calendar = CalendarPeriodSerializer(many=True, read_only=True)

    class Meta:
        model = District
        fields = ["id", "name", "slug", "teachers_may_roll_back", "calendar"]


class SchoolSerializer(serializers.ModelSerializer):
    district = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    permissions = serializers.SerializerMethodField()

    class Meta:
        model = School
        fields = [
            "id",
            "name",
            "code",
            "district",
            "size_band",
            "enrollment",
            "locality",
            "connectivity",
            "hardware",
            "tags",
            "permissions",
        ]

    def get_permissions(self, school: School) -> dict[str, bool]:
        user = self.context["request"].user
        return {action.value: can(user, action, school) for action in Action}


class MembershipSerializer(serializers.ModelSerializer):
    school = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    district = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    scope = serializers.CharField(source="scope_label", read_only=True)

    class Meta:
        model = Membership
        fields = ["role", "school", "district", "scope"]


class MeOut(serializers.Serializer):
    username = serializers.CharField()
    memberships = MembershipSerializer(many=True)


@extend_schema(responses=MeOut)
@api_view(["GET"])
def me(request: Request) -> Response:
    """Who you are and your roles (each with its school or district)."""
    memberships = request.user.memberships.select_related("school", "district")
    return Response(
        {
            "username": request.user.get_username(),
            "memberships": MembershipSerializer(memberships, many=True).data,
        }
    )


@extend_schema(responses=DistrictSerializer(many=True), operation_id="districts_list")
@api_view(["GET"])
def district_list(request: Request) -> Response:
    districts = visible_districts(request.user).prefetch_related("calendar")
    return Response(DistrictSerializer(districts, many=True).data)


@extend_schema(responses=DistrictSerializer)
@api_view(["GET"])
def district_detail(request: Request, pk: int) -> Response:
    district = get_object_or_404(
        visible_districts(request.user).prefetch_related("calendar"), pk=pk
    )
    return Response(DistrictSerializer(district).data)


@extend_schema(responses=SchoolSerializer(many=True), operation_id="schools_list")
@api_view(["GET"])
def school_list(request: Request) -> Response:
    schools = visible_schools(request.user)
    return Response(SchoolSerializer(schools, many=True, context={"request": request}).data)


@extend_schema(responses=SchoolSerializer)
@api_view(["GET"])
def school_detail(request: Request, pk: int) -> Response:
    school = get_object_or_404(visible_schools(request.user), pk=pk)
    return Response(SchoolSerializer(school, context={"request": request}).data)
