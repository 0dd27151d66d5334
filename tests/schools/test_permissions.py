"""The permissions matrix: each role against each action and scope."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from edumlops.schools.permissions import (
    Action,
    can,
    require,
    visible_districts,
    visible_schools,
)

A = Action
ALL = set(Action)

# user fixture -> {scope fixture: actions allowed there}; every other (action, scope) is refused.
MATRIX = {
    "teacher_a": {
        "school_a": {A.VIEW, A.EDIT_THRESHOLDS},
    },
    "staff": {
        "district": {
            A.VIEW,
            A.EDIT_THRESHOLDS,
            A.ROLL_BACK,
            A.APPROVE,
            A.PROMOTE,
            A.VIEW_AUDIT,
            A.MANAGE_DATA,
        },
        "school_a": {
            A.VIEW,
            A.EDIT_THRESHOLDS,
            A.ROLL_BACK,
            A.APPROVE,
            A.PROMOTE,
            A.VIEW_AUDIT,
            A.MANAGE_DATA,
        },
        "school_b": {
            A.VIEW,
            A.EDIT_THRESHOLDS,
            A.ROLL_BACK,
            A.APPROVE,
            A.PROMOTE,
            A.VIEW_AUDIT,
            A.MANAGE_DATA,
        },
    },
    "district_admin": {
        "district": {A.VIEW, A.EDIT_THRESHOLDS, A.ROLL_BACK, A.VIEW_AUDIT, A.MANAGE, A.MANAGE_DATA},
        "school_a": {A.VIEW, A.EDIT_THRESHOLDS, A.ROLL_BACK, A.VIEW_AUDIT, A.MANAGE, A.MANAGE_DATA},
        "school_b": {A.VIEW, A.EDIT_THRESHOLDS, A.ROLL_BACK, A.VIEW_AUDIT, A.MANAGE, A.MANAGE_DATA},
    },
    "platform_admin": {
        scope: {A.VIEW, A.EDIT_THRESHOLDS, A.ROLL_BACK, A.VIEW_AUDIT, A.MANAGE, A.MANAGE_DATA}
        for scope in ("district", "school_a", "school_b", "other_district", "other_school")
    },
    "outsider": {
        scope: {
            A.VIEW,
            A.EDIT_THRESHOLDS,
            A.ROLL_BACK,
            A.APPROVE,
            A.PROMOTE,
            A.VIEW_AUDIT,
            A.MANAGE_DATA,
        }
        for scope in ("other_district", "other_school")
    },
    "nobody": {},
}
SCOPES = ["district", "school_a", "school_b", "other_district", "other_school"]


@pytest.mark.parametrize("user_name", sorted(MATRIX))
@pytest.mark.parametrize("scope_name", SCOPES)
@pytest.mark.parametrize("action", list(Action), ids=str)
def test_each_role_against_each_action_and_scope(request, user_name, scope_name, action):
    user = request.getfixturevalue(user_name)
    scope = request.getfixturevalue(scope_name)
    expected = action in MATRIX[user_name].get(scope_name, set())
    assert can(user, action, scope) is expected


def test_a_teacher_of_school_a_sees_nothing_of_school_b(teacher_a, school_a, school_b, district):
    assert list(visible_schools(teacher_a)) == [school_a]
    assert list(visible_districts(teacher_a)) == []
    assert not any(can(teacher_a, action, school_b) for action in Action)
    assert not any(can(teacher_a, action, district) for action in Action)


def test_only_district_staff_approve(teacher_a, staff, district_admin, platform_admin, school_a):
    approvers = [
        u for u in (teacher_a, staff, district_admin, platform_admin) if can(u, "approve", school_a)
    ]
    assert approvers == [staff]


def test_teachers_roll_back_their_own_school_only_when_the_district_allows_it(
    teacher_a, school_a, school_b, district
):
    assert not can(teacher_a, A.ROLL_BACK, school_a)
    district.teachers_may_roll_back = True
    district.save()
    school_a.refresh_from_db()
    school_b.refresh_from_db()
    assert can(teacher_a, A.ROLL_BACK, school_a)
    assert not can(teacher_a, A.ROLL_BACK, school_b)
    assert not can(teacher_a, A.ROLL_BACK, district)


def test_anonymous_and_inactive_users_may_do_nothing(staff, school_a):
    from django.contrib.auth.models import AnonymousUser

    assert not can(AnonymousUser(), A.VIEW, school_a)
    staff.is_active = False
    assert not can(staff, A.VIEW, school_a)


def test_objects_name_their_scope_through_permission_scope(staff, outsider, school_a):
    class Deployment:
        def permission_scope(self):
            return school_a

    assert can(staff, A.ROLL_BACK, Deployment())
    assert not can(outsider, A.ROLL_BACK, Deployment())


def test_require_raises_permission_denied_naming_the_action(teacher_a, school_a):
    require(teacher_a, A.VIEW, school_a)
    with pytest.raises(PermissionDenied, match="may not approve"):
        require(teacher_a, A.APPROVE, school_a)


def test_an_object_without_a_scope_is_a_programming_error(staff):
    with pytest.raises(TypeError, match="names no permission scope"):
        can(staff, A.VIEW, object())


def test_staff_and_admins_see_every_school_of_their_district(
    staff, platform_admin, school_a, school_b, other_school
):
    assert set(visible_schools(staff)) == {school_a, school_b}
    assert set(visible_schools(platform_admin)) == {school_a, school_b, other_school}
