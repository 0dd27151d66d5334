"""Login, the home dashboard by role, and the district and school pages' access checks."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD


@pytest.fixture
def login(client):
    def as_user(user):
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return as_user


def test_pages_need_a_login(client, school_a):
    response = client.get(reverse("school", args=[school_a.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_teacher_lands_on_their_school_dashboard(login, teacher_a, school_a):
    response = login(teacher_a).get("/", follow=True)
    assert response.redirect_chain[-1][0] == reverse("school", args=[school_a.pk])
    assert b"School dashboard" in response.content
    assert b"Alder School" in response.content


def test_district_staff_land_on_the_district_dashboard(login, staff, district, school_a, school_b):
    response = login(staff).get("/", follow=True)
    assert response.redirect_chain[-1][0] == reverse("district", args=[district.pk])
    page = response.content.decode()
    assert "District dashboard" in page
    assert "Alder School" in page and "Birch School" in page
    assert 'class="timeline"' in page
    assert 'data-testid="get-started"' not in page  # building workflows is the admin's


def test_the_admin_is_shown_how_to_start_from_the_early_warning_template(
    login, district_admin, district
):
    page = login(district_admin).get("/", follow=True).content.decode()
    assert 'data-testid="get-started"' in page
    assert f'href="{reverse("workflow-templates")}"' in page and "Early-warning model" in page


def test_a_teacher_of_school_a_gets_404_for_school_b_and_the_district(
    login, teacher_a, school_b, district
):
    client = login(teacher_a)
    assert client.get(reverse("school", args=[school_b.pk])).status_code == 404
    assert client.get(reverse("district", args=[district.pk])).status_code == 404


def test_staff_of_another_district_see_nothing_here(login, outsider, district, school_a):
    client = login(outsider)
    assert client.get(reverse("district", args=[district.pk])).status_code == 404
    assert client.get(reverse("school", args=[school_a.pk])).status_code == 404


def test_a_user_without_membership_is_told_whom_to_ask(login, nobody):
    response = login(nobody).get("/")
    assert response.status_code == 200
    assert b"Ask your district" in response.content


def test_navigation_follows_the_role(login, teacher_a, staff, district):
    teacher_page = login(teacher_a).get("/", follow=True).content.decode()
    assert "Maple Valley</a>" not in teacher_page
    assert "Teacher</span>" in teacher_page
    staff_page = login(staff).get("/", follow=True).content.decode()
    assert f'href="{reverse("district", args=[district.pk])}"' in staff_page
    assert "District staff</span>" in staff_page


def test_the_school_page_lists_what_the_user_may_do(login, teacher_a, school_a):
    page = login(teacher_a).get(reverse("school", args=[school_a.pk])).content.decode()
    assert '<li class="yes">Edit thresholds</li>' in page
    assert '<li class="no">Approve</li>' in page


def test_htmx_is_served_from_the_package_not_the_internet(login, teacher_a, school_a):
    page = login(teacher_a).get(reverse("school", args=[school_a.pk])).content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in page
    assert "https://" not in page


def test_logout_ends_the_session(login, teacher_a):
    client = login(teacher_a)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_healthz_answers_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
