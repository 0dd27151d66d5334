"""The API's doors in edumlops/core/api.py: the one error shape, parse(), the strict JSON parser,
and Django's own refusals (too many form fields, unknown /api/ paths) answered in that shape."""

from __future__ import annotations

import json

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from edumlops.core.api import error_body, parse
from edumlops.core.models import UserKey

VALIDATE = "/api/workflows/validate/"


def shape(body: dict) -> set[str]:
    return set(body)


@pytest.fixture
def as_staff(staff) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer " + UserKey.issue(staff, "test")[1])
    return client


def raw(client: APIClient, body: bytes, content_type: str = "application/json"):
    return client.generic("POST", VALIDATE, body, content_type=content_type)


def test_error_body_names_nested_fields_and_keeps_plain_details():
    body = error_body({"rows": [{}, {"gpa": ["A number is required."]}]}, "invalid")
    assert body["errors"] == [{"field": "rows.1.gpa", "message": "A number is required."}]
    assert body["detail"] == "rows.1.gpa: A number is required."
    assert error_body({"detail": ["Nothing waits."]}, "invalid") == {
        "detail": "Nothing waits.",
        "code": "invalid",
        "errors": [],
    }


class PairIn(serializers.Serializer):
    name = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(), required=False)


def test_parse_refuses_a_list_where_an_object_is_expected():
    with pytest.raises(serializers.ValidationError) as caught:
        parse(PairIn, [None, None])
    assert "Expected a dictionary" in str(caught.value.detail)


def test_parse_reads_a_query_string_keeping_every_value_of_a_list(rf):
    query = rf.get("/x", {"name": "a", "tags": ["b", "c"]}).GET
    assert parse(PairIn, query) == {"name": "a", "tags": ["b", "c"]}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"graph": {"nodes": [], "edges": []}, "x": "a\\u0000b"}', "NUL"),
        (b'{"x": "\\ud800"}', "surrogate"),
        (b'{"x": ' + b"9" * 400 + b"}", "range of a double"),
        (b'{"x": NaN}', "NaN"),
        (b'{"x": 1e999}', "range of a double"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"x": "caf\xe9"}', "not UTF-8"),
        (b'{"x": ', "not valid JSON"),
    ],
)
def test_the_json_parser_refuses_what_no_handler_should_see(as_staff, body, names):
    response = raw(as_staff, body)
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert shape(answer) == {"detail", "code", "errors"}
    assert answer["code"] == "parse_error"
    assert names in answer["detail"]


def test_a_body_over_the_limit_is_413(as_staff, settings):
    settings.API_MAX_BODY_BYTES = 1000
    response = raw(as_staff, json.dumps({"graph": {"pad": "x" * 2000}}).encode())
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_form_with_more_fields_than_django_reads_is_a_json_400(as_staff):
    body = "&".join(f"f{i}=x" for i in range(1200))
    response = raw(as_staff, body.encode(), "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert shape(response.json()) == {"detail", "code", "errors"}


@pytest.mark.parametrize("path", ["/api/nope/", "/api/runs/null,null/", "/api/models/1/x"])
def test_an_unknown_api_path_is_a_json_404_in_the_error_shape(as_staff, path):
    response = as_staff.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found", "errors": []}


def test_a_wrong_method_is_405_in_the_error_shape(as_staff):
    response = as_staff.delete(VALIDATE)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_no_credentials_is_401_with_a_challenge(db):
    response = APIClient().get("/api/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated"
