"""Integration tokens: created by district staff (the key shown once, only its hash stored),
scoped to a district or one school, revocable, each change in the audit trail."""

from __future__ import annotations

import hashlib

import pytest
from rest_framework.test import APIClient

from edumlops.audit.models import AuditRecord
from edumlops.deployments import services
from edumlops.deployments.models import IntegrationToken, Prediction
from tests.deployments.conftest import rows_for

pytestmark = pytest.mark.django_db


def test_a_school_token_predicts_for_its_school_only(
    two_models, district, school_a, school_b, staff, teacher_a
):
    services.roll_out(two_models[0], scope="district", user=staff)
    staff_client = APIClient()
    staff_client.force_authenticate(staff)
    response = staff_client.post(
        "/api/tokens/",
        {"name": "SIS at A", "district": district.pk, "school": school_a.pk},
        format="json",
    )
    assert response.status_code == 201, response.json()
    key = response.json()["key"]
    stored = IntegrationToken.objects.get()
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert "key" not in staff_client.get("/api/tokens/").json()[0]
    assert AuditRecord.objects.filter(action="token_created").count() == 1

    sis = APIClient()
    sis.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    ok = sis.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows_for(2)}, format="json")
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
    other = sis.post(f"/api/schools/{school_b.pk}/predict/", {"rows": rows_for(1)}, format="json")
    assert other.status_code == 403
    assert sis.get("/api/deployments/").status_code == 401  # the token serves predict only
    assert Prediction.objects.count() == 2

    staff_client.post(f"/api/tokens/{stored.pk}/revoke/")
    gone = sis.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows_for(1)}, format="json")
    assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
    assert AuditRecord.objects.filter(action="token_created").count() == 2

    teacher = APIClient()
    teacher.force_authenticate(teacher_a)
    response = teacher.post("/api/tokens/", {"name": "mine", "district": district.pk})
    assert response.status_code == 400  # a district they do not see, as if it did not exist
    assert response.json()["errors"] == [
        {
            "field": "district",
            "message": f"No district {district.pk} that you may see: check the id.",
        }
    ]
