"""Navigation by role, for base.html."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from edumlops.registry.models import AnswerReview
from edumlops.registry.reviews import rating_districts
from edumlops.schools.permissions import Action, can, roles, visible_districts, visible_schools
from workflows.models import Notification


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [], "nav_roles": [], "notifications_unread": 0, "notifications_latest": []}
    items = [("Home", reverse("home"))]
    districts = list(visible_districts(user))
    items += [(d.name, reverse("district", args=[d.pk])) for d in districts]
    if not districts:  # teachers: their school(s); staff reach schools from the district page
        items += [(s.name, reverse("school", args=[s.pk])) for s in visible_schools(user)]
        items.append(("Models", reverse("models")))  # the model in use at their school
    if districts:
        items += [
            ("Workflows", reverse("workflows")),
            ("Datasets", reverse("datasets")),
            ("Models", reverse("models")),
            ("Deployments", reverse("deployments")),
            ("Edge", reverse("edge")),
        ]
        if any(can(user, Action.APPROVE, d) for d in districts):
            items.append(("Approvals", reverse("approvals")))
        if any(can(user, Action.VIEW_AUDIT, d) for d in districts):
            items.append(("Audit", reverse("audit")))
            items.append(("Privacy", reverse("privacy")))
    if AnswerReview.objects.filter(district__in=rating_districts(user)).exists():
        items.append(("Answers to rate", reverse("ratings")))
    items.append(("Alerts", reverse("alerts")))
    items.append(("Thresholds", reverse("thresholds")))
    if user.is_staff:
        items.append(("Admin", reverse("admin:index")))
    labels = {"teacher": "Teacher", "district_staff": "District staff", "admin": "ML lead / admin"}
    return {
        "nav": items,
        "nav_roles": sorted(labels[r] for r in roles(user)),
        **_notifications(user),
    }


def _notifications(user) -> dict:  # noqa: ANN001
    """The header's notifications menu: the unread count and the five newest."""
    mine = Notification.objects.filter(user=user)
    return {
        "notifications_unread": mine.filter(read_at__isnull=True).count(),
        "notifications_latest": list(mine[:5]),
    }
