"""Who a rate counts: a user however they sign in, a non-user key by its id, else the address."""

from __future__ import annotations

from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from edumlops.core.models import UserKey
from edumlops.core.throttles import PredictThrottle
from edumlops.deployments import tokens as integration_tokens


def key_of(user=None, auth=None, addr="10.0.0.1") -> str:
    request = APIRequestFactory().post("/api/x/", REMOTE_ADDR=addr)
    if user is not None:
        force_authenticate(request, user=user, token=auth)
    view = APIView()
    drf_request = view.initialize_request(request)
    return PredictThrottle().get_cache_key(drf_request, view)


def test_two_keys_of_one_user_share_the_user_s_count(staff):
    first, _ = UserKey.issue(staff, "laptop")
    second, _ = UserKey.issue(staff, "script")
    assert key_of(staff, first) == key_of(staff, second) == key_of(staff) == key_of(staff, None)
    assert str(staff.pk) in key_of(staff, first)


def test_an_integration_token_counts_apart_from_the_user_who_made_it(district, staff):
    token, _ = integration_tokens.create(district, "SIS", staff)
    assert key_of(staff, token) != key_of(staff)


def test_anonymous_callers_count_by_address(db):
    assert key_of(addr="10.0.0.1") != key_of(addr="10.0.0.2")
    assert key_of(addr="10.0.0.1") == key_of(addr="10.0.0.1")
