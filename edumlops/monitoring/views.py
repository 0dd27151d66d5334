"""The alerts page: open alerts first, why each fired, acknowledge or resolve with a comment."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.core.http import posted_id
from edumlops.monitoring import services
from edumlops.monitoring.api import visible_alerts
from edumlops.monitoring.models import Alert
from edumlops.schools.permissions import Action, can, require


@login_required
def alerts_page(request: HttpRequest) -> HttpResponse:
    alerts = visible_alerts(request.user)
    if request.method == "POST":
        alert = get_object_or_404(alerts, pk=posted_id(request.POST.get("alert")))
        require(request.user, Action.EDIT_THRESHOLDS, alert)
        try:
            services.decide(
                alert, request.user, request.POST.get("status", ""), request.POST.get("comment", "")
            )
            messages.success(request, f"Alert {alert.pk} {alert.status}.")
        except services.AlertError as exc:
            messages.error(request, str(exc))
        return redirect("alerts")
    shown = request.GET.get("status", "open")
    if shown != "all":
        alerts = alerts.filter(status=shown)
    shown_alerts = list(alerts[:200])
    firings = services.alert_followups([a.pk for a in shown_alerts])
    rows = [
        (a, can(request.user, Action.EDIT_THRESHOLDS, a), firings.get(a.pk, []))
        for a in shown_alerts
    ]
    return TemplateResponse(
        request,
        "monitoring/alerts.html",
        {"rows": rows, "shown": shown, "statuses": [*Alert.Status.values, "all"]},
    )
