"""Home, district and school dashboards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from edumlops.schools.models import CalendarPeriod, District, School
from edumlops.schools.permissions import Action, can, visible_districts, visible_schools


@dataclass(frozen=True)
class TimelineBar:
    period: CalendarPeriod
    left: float  # percent of the school year
    width: float
    current: bool


@dataclass(frozen=True)
class Timeline:
    start: dt.date
    end: dt.date
    bars: list[TimelineBar]
    today_left: float | None


def calendar_timeline(district: District, today: dt.date) -> Timeline | None:
    """Place the school year's terms, breaks and testing windows on a 0–100 % strip."""
    periods = list(district.calendar.all())
    if not periods:
        return None
    start = min(p.start for p in periods)
    end = max(p.end for p in periods)
    span = (end - start).days + 1

    def pct(day: dt.date) -> float:
        return round(100 * (day - start).days / span, 2)

    bars = [
        TimelineBar(
            period=p,
            left=pct(p.start),
            width=max(round(100 * p.days / span, 2), 0.5),
            current=p.start <= today <= p.end,
        )
        for p in periods
    ]
    today_left = pct(today) if start <= today <= end else None
    return Timeline(start=start, end=end, bars=bars, today_left=today_left)


def _get_district_for_user(request: HttpRequest, pk: int) -> District:
    return get_object_or_404(visible_districts(request.user), pk=pk)


def _get_school_for_user(request: HttpRequest, pk: int) -> School:
    return get_object_or_404(visible_schools(request.user), pk=pk)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    district = visible_districts(request.user).first()
    if district is not None:
        return redirect("district", pk=district.pk)
    school = visible_schools(request.user).first()
    if school is not None:
        return redirect("school", pk=school.pk)
    return TemplateResponse(request, "core/no_membership.html")


@login_required
def district_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    district = _get_district_for_user(request, pk)
    today = timezone.localdate()
    schools = list(district.schools.all())
    by_locality = {
        label: sum(1 for s in schools if s.locality == value)
        for value, label in School.Locality.choices
    }
    by_size = {
        label: sum(1 for s in schools if s.size_band == value)
        for value, label in School.SizeBand.choices
    }
    most = max([*by_locality.values(), *by_size.values(), 1])
    return TemplateResponse(
        request,
        "core/district.html",
        {
            "district": district,
            "schools": schools,
            "period": district.period_on(today),
            "timeline": calendar_timeline(district, today),
            "mix": [
                ("Locality", [(k, v, round(100 * v / most)) for k, v in by_locality.items()]),
                ("Size", [(k, v, round(100 * v / most)) for k, v in by_size.items()]),
            ],
            "may_approve": can(request.user, Action.APPROVE, district),
            "may_manage": can(request.user, Action.MANAGE, district),
        },
    )


@login_required
def school_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    school = _get_school_for_user(request, pk)
    today = timezone.localdate()
    district = school.district
    period = district.period_on(today)
    term = district.term_on(today)
    return TemplateResponse(
        request,
        "core/school.html",
        {
            "school": school,
            "district": district,
            "district_visible": can(request.user, Action.VIEW, district),
            "period": period,
            "term_week": term.week_of(today) if term else None,
            "next_term": district.next_term_start(today),
            "timeline": calendar_timeline(district, today),
            "deployment": _resolve(school),
            "may_roll_back": can(request.user, Action.ROLL_BACK, school),
            "permissions": [
                (action.value.replace("_", " "), can(request.user, action, school))
                for action in Action
            ],
        },
    )


def _resolve(school):  # noqa: ANN001, ANN202
    from edumlops.deployments.services import resolve

    return resolve(school)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and docker-compose: the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"status": "error", "database": str(exc).splitlines()[0]}, status=503)
    return JsonResponse({"status": "ok"})
