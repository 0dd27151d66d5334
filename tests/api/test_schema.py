"""The OpenAPI document itself: valid OpenAPI 3, generated without a warning (a warning such as
two serializers sharing a component name means some operation is described wrongly), and every
operation with a documented success answer and the error component."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator


def test_the_schema_is_valid_and_generates_without_warnings(db, tmp_path):
    # --fail-on-warn turns each of drf-spectacular's warnings into a failure; --validate checks
    # the document against the OpenAPI 3 specification
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield f"{method.upper()} {path}", operation


def test_every_operation_documents_a_success_with_a_body_or_an_empty_answer(schema):
    missing = []
    for name, operation in operations(schema):
        ok = [code for code in operation["responses"] if code.startswith(("2", "3"))]
        if not ok:
            missing.append(name)
    assert not missing, f"no success answer documented: {missing}"


def test_every_error_answer_is_the_one_error_shape(schema):
    wrong = []
    for name, operation in operations(schema):
        for code, response in operation["responses"].items():
            if not code.startswith(("4", "5")):
                continue
            body = response.get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "")
            if not ref.endswith(("/Error", "/ErrorOut")) and not _extends_error(schema, ref):
                wrong.append(f"{name} {code}: {ref or body}")
    assert not wrong, "\n".join(wrong)


def _extends_error(schema: dict, ref: str) -> bool:
    """A richer error (a graph's node/port/param, a predict row) still has the three fields."""
    if not ref:
        return False
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return {"detail", "code", "errors"} <= set(component.get("properties", {}))
