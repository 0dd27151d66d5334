"""May this user do X on this object? The one place that answers, for pages and the API alike.

Objects are districts or schools, or anything else that names its scope through a
``permission_scope()`` method returning a School or a District (a deployment, a workflow run...).

| action          | teacher (own school)      | district staff (district) | admin (district/all) |
| --------------- | ------------------------- | ------------------------- | -------------------- |
| view            | yes                       | yes                       | yes                  |
| edit_thresholds | yes                       | yes                       | yes                  |
| roll_back       | if the district allows it | yes                       | yes                  |
| approve         | no                        | yes                       | no (*)               |
| promote         | no                        | yes                       | no (*)               |
| view_audit      | no                        | yes                       | yes                  |
| manage          | no                        | no                        | yes                  |
| manage_data     | no                        | yes                       | yes                  |

(*) whoever builds the workflows does not approve their own rollouts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet

from edumlops.schools.models import District, Membership, School

Role = Membership.Role


class Action(StrEnum):
    VIEW = "view"
    EDIT_THRESHOLDS = "edit_thresholds"
    ROLL_BACK = "roll_back"
    APPROVE = "approve"
    PROMOTE = "promote"
    VIEW_AUDIT = "view_audit"
    MANAGE = "manage"
    MANAGE_DATA = "manage_data"  # upload datasets, mark their roles, train models


# What each role may do inside its own scope. Teachers' rollback also needs the district's consent.
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.TEACHER: frozenset({Action.VIEW, Action.EDIT_THRESHOLDS, Action.ROLL_BACK}),
    Role.DISTRICT_STAFF: frozenset(
        {
            Action.VIEW,
            Action.EDIT_THRESHOLDS,
            Action.ROLL_BACK,
            Action.APPROVE,
            Action.PROMOTE,
            Action.VIEW_AUDIT,
            Action.MANAGE_DATA,
        }
    ),
    Role.ADMIN: frozenset(
        {
            Action.VIEW,
            Action.EDIT_THRESHOLDS,
            Action.ROLL_BACK,
            Action.VIEW_AUDIT,
            Action.MANAGE,
            Action.MANAGE_DATA,
        }
    ),
}


class Scoped(Protocol):
    def permission_scope(self) -> School | District: ...


def _scope_of(obj: Any) -> tuple[District, School | None]:
    if isinstance(obj, School):
        return obj.district, obj
    if isinstance(obj, District):
        return obj, None
    if hasattr(obj, "permission_scope"):
        return _scope_of(obj.permission_scope())
    raise TypeError(f"{type(obj).__name__} names no permission scope")


def _memberships(user: Any) -> list[Membership]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    cached = getattr(user, "_edumlops_memberships", None)
    if cached is None:
        cached = list(user.memberships.select_related("school", "district"))
        user._edumlops_memberships = cached
    return cached


def _covers(membership: Membership, district: District, school: School | None) -> bool:
    """Does the membership's scope include the object's scope?"""
    if membership.school_id:
        return school is not None and membership.school_id == school.pk
    if membership.district_id:
        return membership.district_id == district.pk
    return membership.role == Role.ADMIN  # platform-wide admin


def can(user: Any, action: Action | str, obj: Any) -> bool:
    action = Action(action)
    district, school = _scope_of(obj)
    for membership in _memberships(user):
        if action not in ROLE_ACTIONS[membership.role]:
            continue
        if not _covers(membership, district, school):
            continue
        if (
            action == Action.ROLL_BACK
            and membership.role == Role.TEACHER
            and not district.teachers_may_roll_back
        ):
            continue
        return True
    return False


# Why a role may not take an action, for the 403's detail.
WHY: dict[Action, str] = {
    Action.VIEW: "it is outside your school or district",
    Action.EDIT_THRESHOLDS: "it is outside your school or district",
    Action.ROLL_BACK: "rollbacks here are for district staff, or for teachers where the district "
    "allows it",
    Action.APPROVE: "approvals are decided by district staff",
    Action.PROMOTE: "rollouts and promotions are decided by district staff",
    Action.VIEW_AUDIT: "the audit trail is for district staff and admins",
    Action.MANAGE: "only admins manage schools, edge nodes and users",
    Action.MANAGE_DATA: "datasets, training and integration tokens are for district staff and "
    "admins",
}


def require(user: Any, action: Action | str, obj: Any) -> None:
    if not can(user, action, obj):
        action = Action(action)
        raise PermissionDenied(f"You may not {action.value.replace('_', ' ')} here: {WHY[action]}.")


def roles(user: Any) -> set[str]:
    return {m.role for m in _memberships(user)}


def visible_schools(user: Any) -> QuerySet[School]:
    """Every school the user may view."""
    query = Q(pk__in=[])
    for m in _memberships(user):
        if m.school_id:
            query |= Q(pk=m.school_id)
        elif m.district_id:
            query |= Q(district_id=m.district_id)
        elif m.role == Role.ADMIN:
            return School.objects.select_related("district")
    return School.objects.filter(query).select_related("district")


def visible_districts(user: Any) -> QuerySet[District]:
    """Districts the user may view as a whole (not just one school of)."""
    query = Q(pk__in=[])
    for m in _memberships(user):
        if m.district_id:
            query |= Q(pk=m.district_id)
        elif not m.school_id and m.role == Role.ADMIN:
            return District.objects.all()
    return District.objects.filter(query)
