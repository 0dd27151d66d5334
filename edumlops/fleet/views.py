"""The Edge page: every school server of a district — last contact, online or offline for how
long, the version it serves against the one its school should, its cache, queue and device —
and, for admins, registering a node (its token shown once) and revoking one.

District staff and admins see their districts' nodes; a teacher sees the nodes of their own
school, read-only. The table refreshes itself (htmx) every poll interval.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from edumlops.core.http import posted_id
from edumlops.fleet import tokens
from edumlops.fleet.api import register_command
from edumlops.fleet.models import EdgeNode, describe
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, can, require, visible_districts, visible_schools

TEMPLATE = "fleet/edge.html"


def _latency_bars(rows: list[dict]) -> None:
    """p50/p95 latency of each node's model on its device, as bars on one scale for the page."""

    def ms(row: dict, key: str) -> float | None:
        value = row["profile"].get(key)
        return float(value) if isinstance(value, int | float) and value >= 0 else None

    top = max((ms(r, "latency_p95_ms") or ms(r, "latency_p50_ms") or 0 for r in rows), default=0)
    for row in rows:
        row["latency"] = [
            {"label": label, "value": f"{value:.2f}", "percent": round(100 * value / top, 1)}
            for label, key in (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"))
            if (value := ms(row, key)) is not None and top > 0
        ]


def _register(request: HttpRequest, district: object) -> dict:
    """Register a node; the page shows its token and the register command this once."""
    require(request.user, Action.MANAGE, district)
    school = School.objects.filter(district=district, pk=request.POST.get("school") or 0).first()
    if school is None:
        messages.error(request, "Choose the school the node is for.")
        return {}
    try:
        node, key = tokens.create(school, request.POST.get("name", ""), request.user)
    except tokens.NodeError as exc:
        messages.error(request, str(exc))
        return {}
    return {"new_node": node, "new_token": key, "command": register_command(request, key)}


@login_required
def edge_page(request: HttpRequest) -> HttpResponse:
    districts = list(visible_districts(request.user))
    district = next(
        (d for d in districts if str(d.pk) == request.GET.get("district")),
        districts[0] if districts else None,
    )
    if district is not None:
        schools = list(district.schools.order_by("name"))
    else:
        schools = list(visible_schools(request.user).order_by("name"))
        if not schools:
            raise PermissionDenied("The Edge page is for district staff, admins and teachers.")
    may_manage = district is not None and can(request.user, Action.MANAGE, district)
    extra: dict = {}
    if request.method == "POST":
        if district is None:
            raise PermissionDenied("Only an admin registers or revokes edge nodes.")
        if request.POST.get("do") == "register":
            extra = _register(request, district)
        elif request.POST.get("do") == "revoke":
            node = get_object_or_404(
                EdgeNode, pk=posted_id(request.POST.get("node")), school__district=district
            )
            require(request.user, Action.MANAGE, district)
            try:
                tokens.revoke(node, request.user)
                messages.success(request, f"{node.name} at {node.school} is revoked.")
            except tokens.NodeError as exc:
                messages.error(request, str(exc))
        if "new_token" not in extra:
            return redirect(f"{request.path}?district={district.pk}")
    nodes = list(
        EdgeNode.objects.filter(school__in=schools)
        .select_related("school__district", "created_by")
        .order_by("revoked_at", "school__name", "name")
    )
    rows = describe(nodes, timezone.now())
    _latency_bars(rows)
    context = {
        "district": district,
        "districts": districts,
        "schools": schools,
        "rows": rows,
        "may_manage": may_manage,
        "poll_seconds": int(settings.EDGE_POLL_SECONDS),
        "refresh_seconds": max(5, min(60, int(settings.EDGE_POLL_SECONDS))),
        **extra,
    }
    if request.htmx:
        return TemplateResponse(request, f"{TEMPLATE}#nodes", context)
    return TemplateResponse(request, TEMPLATE, context)
