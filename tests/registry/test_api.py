"""The registry API's doors (issue 16): the documented shapes (a model without a dataset has a
null `dataset_version`), the alias body read through a serializer (a JSON array was a 500), and
another district's model answered exactly like a missing one."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from edumlops.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def registered(district) -> ModelVersion:
    return ModelVersion.objects.create(
        district=district,
        name=f"{district.slug}-at-risk",
        version="1",
        run_id="r" * 32,
        algorithm="logistic_regression",
        dataset_sha256="0" * 64,
    )


def test_a_model_without_a_dataset_reads_as_null(staff, district):
    model = registered(district)
    data = client_for(staff).get(f"/api/models/{model.pk}/").json()
    assert data["dataset_version"] is None and data["workflow_run"] is None
    assert data["model_uri"] == f"models:/{model.name}/1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([None, None], ""),
        ([], ""),
        ({}, "alias"),
        ({"alias": "king"}, "alias"),
        ({"alias": {}}, "alias"),
    ],
)
def test_a_bad_alias_body_is_a_400_naming_the_field(staff, district, body, field):
    model = registered(district)
    response = client_for(staff).post(f"/api/models/{model.pk}/alias/", body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert set(data) == {"detail", "code", "errors"} and data["code"] == "invalid"
    assert field in {e["field"] for e in data["errors"]}
    assert ModelVersion.objects.get(pk=model.pk).aliases == []


def test_an_admin_may_not_move_an_alias(staff, platform_admin, ml_stores, district):
    model = registered(district)
    refused = client_for(platform_admin).post(
        f"/api/models/{model.pk}/alias/", {"alias": "champion"}, format="json"
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert "promote" in refused.json()["detail"]


def test_another_districts_model_answers_exactly_like_a_missing_one(
    teacher_a, staff, other_district, district
):
    theirs, ours = registered(other_district), registered(district)
    cases = [
        (client_for(staff), theirs),
        (client_for(teacher_a), theirs),
        (client_for(teacher_a), ours),
    ]
    for client, model in cases:
        for suffix in ("", "card.json", "card.md"):
            seen = client.get(f"/api/models/{model.pk}/{suffix}")
            unknown = client.get(f"/api/models/{model.pk + 1000}/{suffix}")
            assert seen.status_code == unknown.status_code == 404
            assert seen.json() == unknown.json()
        seen = client.post(f"/api/models/{model.pk}/alias/", {"alias": "champion"}, format="json")
        unknown = client.post(
            f"/api/models/{model.pk + 1000}/alias/", {"alias": "champion"}, format="json"
        )
        assert seen.status_code == unknown.status_code == 404 and seen.json() == unknown.json()
    assert [m["id"] for m in client_for(staff).get("/api/models/").json()] == [ours.pk]
