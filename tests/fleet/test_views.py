"""The Edge page: who sees which nodes and who may change them, the refreshing fragment, the
"rejected" status in words, and the Edge item in the navigation."""

from __future__ import annotations

import pytest
from django.test import Client

from edumlops.deployments import services
from edumlops.fleet.models import EdgeNode
from tests.fleet.test_api import report_body

pytestmark = pytest.mark.django_db


def page_for(user, **extra) -> tuple[int, str]:
    client = Client()
    client.force_login(user)
    answer = client.get("/edge/", **extra)
    return answer.status_code, answer.content.decode()


def test_staff_see_every_node_of_their_district_but_do_not_register(
    staff, school_a, school_b, register
):
    register(school_a, "a-1")
    register(school_b, "b-1")
    status, html = page_for(staff)
    assert status == 200 and "a-1" in html and "b-1" in html
    assert 'data-testid="register-form"' not in html and "Revoke" not in html
    assert '<a href="/edge/"' in html  # the Edge item in the navigation


def test_a_teacher_sees_their_schools_nodes_read_only(teacher_a, school_a, school_b, register):
    register(school_a, "a-1")
    register(school_b, "b-1")
    status, html = page_for(teacher_a)
    assert status == 200 and "a-1" in html and "b-1" not in html
    assert "read-only" in html and 'data-testid="register-form"' not in html
    assert '<a href="/edge/"' not in html  # not in a teacher's navigation
    client = Client()
    client.force_login(teacher_a)
    refused = client.post("/edge/", {"do": "register", "school": school_a.pk, "name": "mine"})
    assert refused.status_code == 403 and EdgeNode.objects.count() == 2


def test_someone_without_a_school_gets_403(nobody):
    assert page_for(nobody)[0] == 403


def test_staff_cannot_register_or_revoke_through_the_page(staff, school_a, register):
    node, _, _ = register(school_a, "a-1")
    client = Client()
    client.force_login(staff)
    assert (
        client.post("/edge/", {"do": "register", "school": school_a.pk, "name": "x"}).status_code
        == 403
    )
    assert client.post("/edge/", {"do": "revoke", "node": node.pk}).status_code == 403
    assert EdgeNode.objects.filter(revoked_at__isnull=True).count() == 1


def test_an_admin_registration_error_is_said_and_nothing_is_made(
    district_admin, school_a, register
):
    register(school_a, "a-1")
    client = Client()
    client.force_login(district_admin)
    answer = client.post(
        "/edge/", {"do": "register", "school": school_a.pk, "name": "a-1"}, follow=True
    )
    assert "already has a node named a-1" in answer.content.decode()
    assert EdgeNode.objects.count() == 1


def test_htmx_gets_the_table_alone(staff, school_a, register):
    register(school_a, "a-1")
    status, html = page_for(staff, HTTP_HX_REQUEST="true")
    assert status == 200 and html.lstrip().startswith('<section class="card" id="edge-nodes"')
    assert "<html" not in html and "a-1" in html


def test_a_rejected_bundle_is_said_in_words(two_models, school_a, staff, register):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    services.roll_out(v2, scope="district", user=staff)
    _, _, client = register(school_a, "a-1")
    body = report_body(v1)
    body["events"] = [
        {"id": "r", "kind": "rejected", "version": v2.pk, "detail": "manifest.json: bad signature"}
    ]
    assert client.post("/api/edge/report/", body, format="json").status_code == 200
    html = page_for(staff)[1]
    assert f"rejected v{v2.version}: manifest.json: bad signature" in html
    assert "● online" in html
    listed = Client()
    listed.force_login(staff)
    node = listed.get("/api/edge/nodes/").json()[0]
    assert node["sync"] == "rejected" and node["online"] is True
    assert node["active_version"] == v1.pk and node["desired_version"] == v2.pk
