"""The predict API's fast path (integration tokens): it answers exactly as the full DRF path,
steps aside for everything else so errors stay the same, and forgets a rolled-back deployment,
a revoked token or a pilot's changed schools on the very next request."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from edumlops.core.keys import hash_key
from edumlops.deployments import hotpath, rollout, services, tokens
from edumlops.deployments.models import Prediction, ServingState
from tests.deployments.conftest import rows_for

pytestmark = pytest.mark.django_db


def by_token(key: str, school, body, **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return Client().post(
        f"/api/schools/{school.pk}/predict/",
        data,
        content_type=headers.pop("content_type", "application/json"),
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **headers,
    )


def fast(response) -> bool:
    """Answered by the fast path (it says how long it took; the full path does not)."""
    return response.has_header("Server-Timing")


@pytest.fixture
def key(district, staff):
    return tokens.create(district, "SIS", staff)[1]


@pytest.fixture
def deployed(two_models, staff):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    return services.roll_out(v2, scope="district", user=staff)


def test_the_fast_path_answers_as_the_full_path_and_records_the_same(
    deployed, school_a, staff, key
):
    rows = rows_for(30)
    rows[4] = {**rows[4], "locality": "lunar"}  # never seen in training: a warning
    quick = by_token(key, school_a, {"rows": rows})
    assert quick.status_code == 200 and fast(quick), quick.content
    full = APIClient()
    full.force_authenticate(staff)
    slow = full.post(f"/api/schools/{school_a.pk}/predict/", {"rows": rows}, format="json")
    assert slow.status_code == 200 and not fast(slow)
    assert quick["Content-Type"] == slow["Content-Type"] == "application/json"
    assert json.loads(quick.content) == slow.json()
    assert json.loads(quick.content)["warnings"][0]["row"] == 4
    recorded = list(
        Prediction.objects.filter(school=school_a)
        .order_by("id")
        .values("features", "probability", "band", "deployment", "unseen_categories")
    )
    assert len(recorded) == 60
    assert recorded[:30] == recorded[30:]
    assert recorded[4]["unseen_categories"] == ["locality"]
    assert recorded[0]["features"] == rows[0]


def test_one_row_by_token_is_answered_fast(deployed, school_a, key):
    response = by_token(key, school_a, {"row": rows_for(1)[0]})
    assert response.status_code == 200 and fast(response)
    assert len(response.json()["predictions"]) == 1


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        ('{"rows": []}', "application/json", 400),
        ('{"rows": [1]}', "application/json", 400),
        ('{"row": {}, "rows": []}', "application/json", 400),
        ('{"rows": [{"gpa": NaN}]}', "application/json", 400),
        ("not json", "application/json", 400),
        ('{"rows": [{}]}', "text/plain", 415),
    ],
)
def test_a_bad_body_gets_the_full_paths_answer_and_records_nothing(
    deployed, school_a, key, body, content_type, status
):
    response = by_token(key, school_a, body, content_type=content_type)
    assert response.status_code == status, response.content
    assert not fast(response)
    assert set(response.json()) >= {"detail", "code"}
    assert not Prediction.objects.exists()


def test_a_bad_row_is_named_by_the_full_path(deployed, school_a, key):
    rows = rows_for(3)
    rows[2] = {**rows[2], "prior_gpa": "high", "locality": "x" * 300}
    response = by_token(key, school_a, {"rows": rows})
    assert response.status_code == 400 and not fast(response)
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"rows.2.prior_gpa", "rows.2.locality"}
    rows = rows_for(3)
    rows[1] = {**rows[1], "locality": "nul\x00"}  # the full path's parser refuses NUL
    response = by_token(key, school_a, {"rows": rows})
    assert response.status_code == 400 and not fast(response)
    assert not Prediction.objects.exists()


def test_tokens_of_another_school_or_district_and_unknown_keys_get_the_full_paths_refusal(
    deployed, district, school_a, school_b, other_school, staff
):
    row = {"row": rows_for(1)[0]}
    school_only = tokens.create(district, "one school", staff, school_b)[1]
    assert by_token(school_only, school_a, row).status_code == 403
    assert by_token(school_only, school_b, row).status_code == 200
    assert by_token("edu_not-a-key", school_a, row).status_code == 401
    assert by_token(school_only, other_school, row).status_code == 404


def test_a_revoked_token_is_refused_on_the_next_request(deployed, school_a, staff, key):
    row = {"row": rows_for(1)[0]}
    assert by_token(key, school_a, row).status_code == 200  # kept in this process now
    token = tokens.IntegrationTokenAuthentication().find(hash_key(key))
    tokens.revoke(token, staff)
    response = by_token(key, school_a, row)
    assert response.status_code == 401 and not fast(response)


def test_a_rollback_is_answered_by_the_previous_version_on_the_next_request(
    deployed, school_a, staff, key
):
    row = {"row": rows_for(1)[0]}
    assert by_token(key, school_a, row).json()["predictions"][0]["model"]["version"] == "2"
    before = ServingState.objects.get(pk=1).generation
    rollout.rollback(deployed, user=staff, reason="bad week")
    assert ServingState.objects.get(pk=1).generation > before
    answer = by_token(key, school_a, row)
    assert fast(answer) and answer.json()["predictions"][0]["model"]["version"] == "1"


def test_a_pilot_reaches_its_schools_and_leaves_them_on_the_next_request(
    two_models, school_a, school_b, staff, key
):
    v1, v2 = two_models
    services.roll_out(v1, scope="district", user=staff)
    row = {"row": rows_for(1)[0]}

    def version(school):
        return by_token(key, school, row).json()["predictions"][0]["model"]["version"]

    assert (version(school_a), version(school_b)) == ("1", "1")
    pilot = services.roll_out(v2, scope="pilot", schools=[school_a], user=staff)
    assert (version(school_a), version(school_b)) == ("2", "1")
    pilot.schools.add(school_b)  # a school joins the pilot
    assert version(school_b) == "2"
    rollout.rollback(pilot, user=staff, reason="pilot over")
    assert (version(school_a), version(school_b)) == ("1", "1")


def test_the_throttle_counts_fast_requests_and_refuses_with_retry_after(
    deployed, school_a, key, settings
):
    settings.EDUMLOPS_THROTTLE_RATES = {**settings.EDUMLOPS_THROTTLE_RATES, "predict": "3/min"}
    from django.core.cache import cache

    cache.clear()
    row = {"row": rows_for(1)[0]}
    answers = [by_token(key, school_a, row) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert all(fast(a) for a in answers[:3]) and not fast(answers[3])
    assert int(answers[3]["Retry-After"]) >= 1
    assert Prediction.objects.count() == 3


def test_no_generation_row_means_nothing_is_kept(deployed, school_a, key):
    ServingState.objects.all().delete()
    row = {"row": rows_for(1)[0]}
    assert by_token(key, school_a, row).status_code == 200
    assert hotpath.kept().generation is None
    hotpath.bump()  # puts the row back
    assert ServingState.objects.get(pk=1).generation == 1


def test_a_lost_redis_increment_is_caught_up_from_the_database(
    deployed, school_a, staff, key, monkeypatch
):
    """Redis away at the commit (or a crash right after it): each process still reads the
    database's generation every VERIFY_EVERY seconds."""
    row = {"row": rows_for(1)[0]}
    assert by_token(key, school_a, row).json()["predictions"][0]["model"]["version"] == "2"
    monkeypatch.setattr(hotpath, "_publish", lambda: None)  # the increments never arrive
    rollout.rollback(deployed, user=staff, reason="bad week")
    monkeypatch.setattr(hotpath, "VERIFY_EVERY", 0.0)  # the second has passed
    answer = by_token(key, school_a, row)
    assert fast(answer) and answer.json()["predictions"][0]["model"]["version"] == "1"


def test_redis_losing_the_shared_generation_drops_what_was_kept(deployed, school_a, staff, key):
    from django.core.cache import caches

    row = {"row": rows_for(1)[0]}
    assert by_token(key, school_a, row).json()["predictions"][0]["model"]["version"] == "2"
    before = hotpath._kept.generation
    backend = caches["default"]
    backend._cache.get_client(write=True).delete(
        backend.make_and_validate_key("serving-generation")
    )
    answer = by_token(key, school_a, row)
    assert fast(answer) and hotpath._kept.generation != before
