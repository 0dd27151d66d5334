"""Pilot → promote → rollback on real PostgreSQL: which version each school resolves at each
step, the history kept, last known good, and the audit trail."""

from __future__ import annotations

import pytest

from edumlops.audit.models import AuditRecord, verify
from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.schools.models import School

pytestmark = pytest.mark.django_db


def versions(district):
    return {
        s.name: (d.model_version.version if (d := services.resolve(s)) else None)
        for s in School.objects.filter(district=district)
    }


def test_pilot_then_promote_then_rollback(two_models, district, school_a, school_b, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff, reason="first model")
    assert versions(district) == {school_a.name: v1.version, school_b.name: v1.version}

    pilot = services.roll_out(v2, scope="pilot", schools=[school_a], user=staff, reason="try v2")
    assert versions(district) == {school_a.name: v2.version, school_b.name: v1.version}

    whole = services.promote(pilot, user=staff, reason="pilot went well")
    assert versions(district) == {school_a.name: v2.version, school_b.name: v2.version}
    pilot.refresh_from_db()
    assert pilot.status == "promoted" and whole.previous.model_version == v1
    assert services.last_known_good(whole).model_version == v1

    back = services.rollback(whole, user=staff, reason="recall dropped")
    assert versions(district) == {school_a.name: v1.version, school_b.name: v1.version}
    whole.refresh_from_db()
    assert whole.status == "rolled_back" and whole.ended_reason == "recall dropped"
    assert back.model_version == v1 and back.active
    # nothing earlier than v1: a second rollback needs a named target
    with pytest.raises(services.DeploymentError, match="no earlier version"):
        services.rollback(back, user=staff, reason="again")

    actions = list(AuditRecord.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["rollout", "rollout", "promotion", "rollback"]
    rollback = AuditRecord.objects.get(action="rollback")
    assert rollback.before["version"] == v2.version and rollback.after["version"] == v1.version
    assert verify()[1] is None
    assert Deployment.objects.filter(district=district, status="active").count() == 1


def test_a_pilot_rollback_without_target_returns_its_schools_to_the_district(
    two_models, district, school_a, school_b, staff
):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    pilot = services.roll_out(v2, scope="pilot", schools=[school_a], user=staff)
    now = services.rollback(pilot, user=staff, reason="pilot school complained")
    assert now.scope == "district" and versions(district)[school_a.name] == v1.version


def test_one_school_rolls_back_alone(two_models, district, school_a, school_b, teacher_a):
    v1, v2 = two_models
    services.roll_out(v1, scope="district")
    services.roll_out(v2, scope="district")
    services.rollback_school(school_a, user=teacher_a, reason="odd scores in my class")
    assert versions(district) == {school_a.name: v1.version, school_b.name: v2.version}


def test_clear_errors_leave_nothing_changed(two_models, district, school_a, staff, other_school):
    v1, v2 = two_models
    with pytest.raises(services.DeploymentError, match="A pilot needs at least one school"):
        services.roll_out(v1, scope="pilot", schools=[])
    with pytest.raises(services.DeploymentError, match="Not schools of"):
        services.roll_out(v1, scope="pilot", schools=[other_school])
    services.roll_out(v1, scope="pilot", schools=[school_a])
    with pytest.raises(services.DeploymentError, match="already pilot another version"):
        services.roll_out(v2, scope="pilot", schools=[school_a])
    v2.bundle = {}
    v2.save()
    with pytest.raises(services.DeploymentError, match="no signed ONNX bundle"):
        services.roll_out(v2, scope="district")
    with pytest.raises(services.DeploymentError, match="Say why"):
        services.rollback(Deployment.objects.get(), user=staff, reason=" ")
    assert Deployment.objects.count() == 1
    assert AuditRecord.objects.filter(action="rollout").count() == 1
