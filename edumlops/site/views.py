"""Home, district and school dashboards."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import TruncDate
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.utils import timezone
from django.views import defaults

from edumlops.core.api import error_body
from edumlops.core.charts import column_bars, day_columns, time_chart
from edumlops.deployments.models import Deployment, Prediction
from edumlops.deployments.services import resolve
from edumlops.monitoring.charts import drift_chart
from edumlops.monitoring.models import Alert, DailyAggregate, DriftCheck, PerformanceCheck
from edumlops.monitoring.telemetry import unseen_categories
from edumlops.privacy.publish import Rate, publish
from edumlops.registry import views as registry_views
from edumlops.schools.models import CalendarPeriod, District, School
from edumlops.schools.permissions import Action, can, visible_districts, visible_schools
from workflows import thresholds
from workflows.compiler import plan
from workflows.models import StepRun


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
            **_district_monitoring(district),
            "mix": [
                ("Locality", [(k, v, round(100 * v / most)) for k, v in by_locality.items()]),
                ("Size", [(k, v, round(100 * v / most)) for k, v in by_size.items()]),
            ],
            "may_approve": can(request.user, Action.APPROVE, district),
            "may_manage": can(request.user, Action.MANAGE, district),
            **_attention(request.user, district),
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
            **_monitoring(
                school, None if can(request.user, Action.VIEW, district) else request.user
            ),
            "may_roll_back": can(request.user, Action.ROLL_BACK, school),
            "permissions": [
                (action.value.replace("_", " "), can(request.user, action, school))
                for action in Action
            ],
        },
    )


def _monitoring(school, user=None) -> dict:  # noqa: ANN001
    """The school's monitoring at a glance: drift per feature over time (terms and breaks
    shaded, alerts marked), prediction volume per day, risk bands, open alerts. With `user` (a
    reader who cannot see the district's student rows) recall by group is the published,
    differentially private version (edumlops/privacy/publish.py)."""

    checks = list(DriftCheck.objects.filter(school=school).order_by("-checked_at")[:30])
    alerts = list(Alert.objects.filter(school=school).order_by("-created_at")[:50])
    periods = [
        (p.kind, p.name, p.start, p.end) for p in school.district.calendar.exclude(kind="term")
    ]
    chart = drift_chart(school, thresholds.drift_rule(school))
    today = timezone.localdate()
    since = today - dt.timedelta(days=29)
    per_day = {
        a["day"]: a["n"]
        for a in DailyAggregate.objects.filter(school=school, day__gte=since)
        .values("day")
        .annotate(n=Sum("count"))
    }
    recent = (
        Prediction.objects.filter(school=school, created_at__date__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    )
    for row in recent:
        per_day[row["day"]] = max(per_day.get(row["day"], 0), row["n"])
    days = [since + dt.timedelta(days=i) for i in range(30)]
    volume = day_columns(days, [per_day.get(d, 0) for d in days])
    bands = {
        b["band"]: b["n"]
        for b in Prediction.objects.filter(school=school, created_at__date__gte=since)
        .values("band")
        .annotate(n=Count("id"))
    }
    order = ["low", "medium", "high"]
    performance, latest, published_notes = _recall_by_group(school, user)
    return {
        # a line needs two checks; with one, the page lists that check's recall per group
        "fairness_chart": (
            time_chart(performance, periods=periods)
            if any(len(v) >= 2 for v in performance.values())
            else None
        ),
        "recall_latest": list(latest.items()),
        "recall_checked_at": max((p[-1][0] for p in performance.values()), default=None),
        "recall_private": user is not None,
        "recall_notes": published_notes,
        "drift_chart": chart,
        "drift_checks": checks[:5],
        "volume": volume,
        "volume_total": sum(per_day.get(d, 0) for d in days),
        "band_bars": column_bars([bands.get(b, 0) for b in order], order, width=120, height=50),
        "bands": [(b, bands.get(b, 0)) for b in order],
        "open_alerts": [a for a in alerts if a.status != Alert.Status.RESOLVED],
        "unseen_categories": unseen_categories(school, since),
    }


RECALL_COUNTS = ("positives", "found")


def _recall_by_group(school, user) -> tuple[dict[str, list], dict[str, Rate], list[str]]:  # noqa: ANN001
    """Recall per group over the school's performance checks: the series to chart, the latest
    value per group, and how the numbers were published. District staff (who see the rows) get
    the measured values; anyone else each check's table as published with differential privacy
    (noised once, then reused; suppressed below the minimum cell size when no budget is left)."""
    performance: dict[str, list] = {}
    latest: dict[str, Rate] = {}
    notes: list[str] = []
    for check in PerformanceCheck.objects.filter(school=school).order_by("checked_at")[:50]:
        rows = {"all students": check.metrics, **{g["group"]: g for g in check.groups}}
        rows = {name: e for name, e in rows.items() if e.get("recall") is not None}
        if user is None:
            rates = {name: Rate(e["recall"], "exact") for name, e in rows.items()}
        else:
            table = {
                name: {c: int(e[c]) for c in RECALL_COUNTS}
                for name, e in rows.items()
                if all(e.get(c) is not None for c in RECALL_COUNTS)
            }
            # a student is counted once per attribute (and once in "all students"), in at most
            # two counts each time
            attributes = {name.split("=")[0] for name in table if name != "all students"}
            shown = publish(
                district=school.district,
                dataset=None,
                key=f"performance-check:{check.pk}",
                what=f"recall by group at {school.name}, outcomes of {check.checked_at:%Y-%m-%d}",
                table=table,
                sensitivity=len(RECALL_COUNTS) * (len(attributes) + 1),
                actor=user,
                target=check,
            )
            # a check stored before its counts were kept cannot be published: not shown
            rates = {
                name: shown.rate(name, "found", "positives")
                if name in table
                else Rate(None, "suppressed", min_cell=shown.min_cell)
                for name in rows
            }
            if shown.summary and shown.summary not in notes:
                notes.append(shown.summary)
        for name, rate in rates.items():
            if rate.value is not None:
                performance.setdefault(name, []).append((check.checked_at, rate.value))
            latest[name] = rate
    return performance, latest, notes[-2:]


def _district_monitoring(district) -> dict:  # noqa: ANN001
    """Per school: the version in use, open alerts, the last drift check; and p95 latency per
    device profile over time."""

    open_alerts = dict(
        Alert.objects.filter(district=district)
        .exclude(status=Alert.Status.RESOLVED)
        .values_list("school")
        .annotate(n=Count("id"))
    )
    latest = DriftCheck.objects.filter(school=OuterRef("pk")).order_by("-checked_at")
    schools = list(
        district.schools.order_by("name").annotate(last_check=Subquery(latest.values("pk")[:1]))
    )
    last_checks = DriftCheck.objects.in_bulk([s.last_check for s in schools if s.last_check])
    rows = [
        {
            "school": school,
            "deployment": resolve(school),
            "alerts": open_alerts.get(school.pk, 0),
            "drift": last_checks.get(school.last_check),
        }
        for school in schools
    ]
    since = timezone.localdate() - dt.timedelta(days=60)
    by_profile: dict[str, dict] = {}
    aggregates = DailyAggregate.objects.filter(school__district=district, day__gte=since)
    for a in aggregates.exclude(latency_p95_ms=None):
        profile = a.device_profile or "unknown"
        by_profile.setdefault(profile, {}).setdefault(a.day, []).append(a.latency_p95_ms)
    latency = time_chart(
        {
            p: [(day, statistics.median(v)) for day, v in sorted(days.items())]
            for p, days in by_profile.items()
        },
        periods=[(p.kind, p.name, p.start, p.end) for p in district.calendar.exclude(kind="term")],
    )
    return {"school_rows": rows, "latency_chart": latency}


def _resolve(school):  # noqa: ANN001, ANN202

    return resolve(school)


def _attention(user, district: District) -> dict:  # noqa: ANN001
    """What asks for this person on the district's home: the steps waiting for their decision
    (for those who approve) and the newest alerts, each with the page to act on."""
    waiting = []
    if can(user, Action.APPROVE, district):
        steps = (
            StepRun.objects.filter(
                status=StepRun.Status.WAITING_APPROVAL, run__workflow__district=district
            )
            .select_related("run__workflow", "run__version")
            .order_by("started_at", "id")
        )
        waiting = [
            {"step": s, "run": s.run, "label": _step_label(s), "since": s.started_at}
            for s in steps[:10]
        ]
    alerts = Alert.objects.filter(district=district).select_related("school")[:5]
    return {"pending_approvals": waiting, "recent_alerts": list(alerts)}


def _step_label(step: StepRun) -> str:
    p = plan(step.run.version.graph)
    return p.nodes[step.node_id].label or p.block(step.node_id).label


# --- models: the registry for district staff, the model in use for a teacher -----------------
def in_use(user) -> list[tuple[School, Deployment]]:  # noqa: ANN001
    """(school, deployment) for each school the user sees only as a school (teachers) and that
    a deployment serves."""
    if visible_districts(user).exists():
        return []
    found = [(school, resolve(school)) for school in visible_schools(user).order_by("name")]
    return [(school, d) for school, d in found if d is not None]


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    """District staff: every version. Teachers: the model their school uses, with its card."""
    return TemplateResponse(
        request,
        "registry/list.html",
        {
            "models": registry_views.models_for(request.user),
            "in_use": in_use(request.user),
            "may_train": any(
                can(request.user, Action.MANAGE_DATA, d) for d in visible_districts(request.user)
            ),
        },
    )


@login_required
def school_model_card(request: HttpRequest, pk: int) -> HttpResponse:
    """The card of the model in use at a school, for anyone who sees the school (a teacher sees
    no other version, and none of the district's own pages)."""
    school = _get_school_for_user(request, pk)
    deployment = resolve(school)
    if deployment is None:
        raise Http404("No model is deployed for this school.")
    model = deployment.model_version
    whole = can(request.user, Action.VIEW, model.district)  # district staff: the full card
    context = registry_views.card_context(request.user, model, school=None if whole else school)
    return TemplateResponse(request, "registry/card.html", context)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every site for /favicon.ico: send them the SVG icon."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and docker-compose: the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"status": "error", "database": str(exc).splitlines()[0]}, status=503)
    return JsonResponse({"status": "ok"})


# --- error pages: friendly HTML for people, the API's one error shape under /api/ ---------------
def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 raised outside a view's own checks (e.g. a form with too many fields)."""
    if _is_api(request):
        detail = "The request could not be read: send a smaller JSON body."
        return JsonResponse(error_body(detail, "parse_error"), status=400)
    return defaults.bad_request(request, exception)


def forbidden(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403: the page says why (the reason the view gave) and where to go."""
    if _is_api(request):
        detail = str(exception) or "You do not have permission to perform this action."
        return JsonResponse(error_body(detail, "permission_denied"), status=403)
    return defaults.permission_denied(request, exception, template_name="403.html")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404: the same answer for an object that does not exist and one the caller may not see;
    the page never repeats the exception's text, which could tell them apart."""
    if _is_api(request):
        return JsonResponse(error_body("Not found.", "not_found"), status=404)
    return TemplateResponse(request, "404.html", status=404).render()


def server_error(request: HttpRequest) -> HttpResponse:
    """500: a standalone page (no database, no context processors), JSON under /api/."""
    if _is_api(request):
        body = error_body("The server could not answer this request.", "server_error")
        return JsonResponse(body, status=500)
    return defaults.server_error(request, template_name="500.html")
