"""Navigation by role, for base.html."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from edumlops.schools.permissions import Action, can, roles, visible_districts, visible_schools


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [], "nav_roles": []}
    items = [("Home", reverse("home"))]
    districts = list(visible_districts(user))
    items += [(d.name, reverse("district", args=[d.pk])) for d in districts]
    if not districts:  # teachers: their school(s); staff reach schools from the district page
        items += [(s.name, reverse("school", args=[s.pk])) for s in visible_schools(user)]
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
    items.append(("Alerts", reverse("alerts")))
    items.append(("Thresholds", reverse("thresholds")))
    if user.is_staff:
        items.append(("Admin", reverse("admin:index")))
    labels = {"teacher": "Teacher", "district_staff": "District staff", "admin": "ML lead / admin"}
    return {"nav": items, "nav_roles": sorted(labels[r] for r in roles(user))}
