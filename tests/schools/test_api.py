"""The schools API applies the same permissions as the pages."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api():
    def as_user(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return as_user


def test_the_api_needs_authentication(db):
    assert APIClient().get("/api/schools/").status_code == 401


def test_a_teacher_lists_only_their_school(api, teacher_a, school_a, school_b):
    data = api(teacher_a).get("/api/schools/").json()
    assert [s["code"] for s in data] == ["a"]
    assert data[0]["permissions"]["approve"] is False
    assert data[0]["permissions"]["edit_thresholds"] is True


def test_a_teacher_gets_404_for_another_school(api, teacher_a, school_b):
    assert api(teacher_a).get(f"/api/schools/{school_b.pk}/").status_code == 404


def test_district_staff_list_every_school_of_their_district(
    api, staff, school_a, school_b, other_school
):
    data = api(staff).get("/api/schools/").json()
    assert sorted(s["code"] for s in data) == ["a", "b"]
    assert all(s["permissions"]["approve"] for s in data)


def test_the_district_comes_with_its_calendar(api, staff, district):
    data = api(staff).get(f"/api/districts/{district.pk}/").json()
    assert data["slug"] == "maple"
    assert [(p["kind"], p["name"]) for p in data["calendar"]] == [
        ("term", "Autumn"),
        ("break", "Winter break"),
        ("term", "Spring"),
    ]


def test_teachers_see_no_district_in_the_api(api, teacher_a, district):
    client = api(teacher_a)
    assert client.get("/api/districts/").json() == []
    assert client.get(f"/api/districts/{district.pk}/").status_code == 404


def test_me_lists_the_users_memberships(api, teacher_a, school_a):
    data = api(teacher_a).get("/api/me/").json()
    assert data["username"] == "teacher_a"
    assert data["memberships"] == [
        {"role": "teacher", "school": school_a.pk, "district": None, "scope": "Alder School"}
    ]


def test_me_is_one_object_with_nullable_scopes(api, platform_admin, teacher_a, school_a):
    data = api(platform_admin).get("/api/me/").json()
    assert data == {
        "username": "platform_admin",
        "memberships": [
            {"role": "admin", "school": None, "district": None, "scope": "all districts"}
        ],
    }
    mine = api(teacher_a).get("/api/me/").json()["memberships"]
    assert mine == [
        {"role": "teacher", "school": school_a.pk, "district": None, "scope": str(school_a)}
    ]


def test_another_districts_school_and_district_answer_exactly_like_missing_ones(
    api, teacher_a, staff, other_school, other_district, school_b, district
):
    cases = [
        (api(teacher_a), f"/api/schools/{other_school.pk}/", "/api/schools/999999/"),
        (api(teacher_a), f"/api/schools/{school_b.pk}/", "/api/schools/999999/"),
        (api(staff), f"/api/schools/{other_school.pk}/", "/api/schools/999999/"),
        (api(teacher_a), f"/api/districts/{other_district.pk}/", "/api/districts/999999/"),
        (api(teacher_a), f"/api/districts/{district.pk}/", "/api/districts/999999/"),
        (api(staff), f"/api/districts/{other_district.pk}/", "/api/districts/999999/"),
    ]
    for client, seen_path, unknown_path in cases:
        seen, unknown = client.get(seen_path), client.get(unknown_path)
        assert seen.status_code == unknown.status_code == 404
        assert (
            seen.json()
            == unknown.json()
            == {
                "detail": "No School matches the given query."
                if "schools" in seen_path
                else "No District matches the given query.",
                "code": "not_found",
                "errors": [],
            }
        )
