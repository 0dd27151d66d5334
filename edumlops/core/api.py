"""The API's doors: one error shape, typed request parsing, and a JSON parser that refuses what no
handler should see (documented in docs/api.md).

Every error the API answers has the same body::

    {"detail": "what went wrong and how to fix it",
     "code": "invalid",
     "errors": [{"field": "scope", "message": "…"}]}

`errors` names each bad field (`field` is "" for the body as a whole) and is empty for errors that
are not about the request's values (401, 403, 404, 429, …).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

# --- the one error shape -------------------------------------------------------------------------


class FieldErrorOut(serializers.Serializer):
    field = serializers.CharField(help_text='The field, dotted for nested ones; "" for the body.')
    message = serializers.CharField()


class ErrorOut(serializers.Serializer):
    """The body of every API error."""

    detail = serializers.CharField(help_text="What went wrong and how to fix it.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `invalid`.")
    errors = FieldErrorOut(many=True, help_text="One entry per bad field; empty otherwise.")


def _flatten(detail: Any, field: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "__all__") else str(key)
            yield from _flatten(value, f"{field}.{name}" if field and name else (name or field))
    elif isinstance(detail, list):
        if all(not isinstance(item, (Mapping, list)) for item in detail):
            for item in detail:
                yield field, str(item)
        else:
            for index, item in enumerate(detail):
                if item:
                    yield from _flatten(item, f"{field}.{index}" if field else str(index))
    else:
        yield field, str(detail)


def error_body(detail: Any, code: str) -> dict[str, Any]:
    if isinstance(detail, Mapping) and set(detail) == {"detail"}:
        detail = detail["detail"]
        if isinstance(detail, list) and len(detail) == 1:
            detail = detail[0]
    if isinstance(detail, (Mapping, list)):
        errors = [{"field": f, "message": m} for f, m in _flatten(detail)]
        summary = "; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
        )
        return {"detail": summary or "The request is not valid.", "code": code, "errors": errors}
    return {"detail": str(detail), "code": code, "errors": []}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, headers such as Retry-After and WWW-Authenticate), with the body
    rewritten into the one error shape."""
    # imported here: rest_framework.views reads the settings' parser classes, which live in this
    # module, so importing it at the top would be circular when this module is imported first
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, Http404) and not isinstance(exc, exceptions.NotFound):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        exc = TooLarge("The form body is too large: send the file as multipart, or fewer values.")
    elif isinstance(exc, SuspiciousOperation):  # e.g. a form with more fields than Django reads
        exc = exceptions.ParseError(f"The request body was refused: {exc}")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        if not isinstance(code, str):
            code = "invalid"
        response.data = error_body(exc.detail, code)
    return response


def api_error(detail: Any, code: str = "invalid", status_code: int = 400) -> Response:
    """An error answered directly by a handler, in the one shape."""
    return Response(error_body(detail, code), status=status_code)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


# --- typed request parsing -----------------------------------------------------------------------

S = TypeVar("S", bound=serializers.Serializer)


def parse(serializer_class: type[S], data: Any, **context: Any) -> dict[str, Any]:
    """The validated data of `data` (a request body or query parameters) read through
    `serializer_class`, or a 400 naming each bad field. A JSON array or scalar where an object
    is expected is a 400 too."""
    if hasattr(data, "dict") and hasattr(data, "getlist"):
        data = _querydict(data, serializer_class)
    instance = serializer_class(data=data, context=context)
    instance.is_valid(raise_exception=True)
    return instance.validated_data


def _querydict(data: Any, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """A QueryDict as a plain dict: list fields keep every value, others take the last one."""
    fields = serializer_class().fields
    out: dict[str, Any] = {}
    for key in data:
        if isinstance(fields.get(key), serializers.ListField):
            out[key] = data.getlist(key)
        else:
            out[key] = data.get(key)
    return out


# --- OpenAPI: the error responses an operation can answer ----------------------------------------

ERROR_DESCRIPTIONS = {
    400: "The request is not valid: `errors` names each bad field.",
    401: "No credentials, or credentials that are unknown or revoked.",
    403: "Signed in, but this role may not do this here: `detail` says why.",
    404: "No such object, or not one you may see.",
    405: "Method not allowed.",
    406: "Only JSON is answered.",
    409: "The object is not in a state that allows this.",
    413: "The request body is too large.",
    415: "The body's media type is not accepted.",
    429: "Too many requests: wait the seconds in `Retry-After`.",
    503: "A service it needs (the broker) is down: try again shortly.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """`responses=` entries for `extend_schema` documenting the error codes an operation
    answers besides those added to every operation (see `add_error_responses`)."""
    return {code: OpenApiResponse(ErrorOut, description=ERROR_DESCRIPTIONS[code]) for code in codes}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: document on every operation the error codes any of
    them can answer (400 for bad bodies or query strings, 401/403 when authentication is
    required, 404 with a path parameter, 405/406/415/413/429 from the framework)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    if "Error" not in components:
        components["Error"] = {
            "type": "object",
            "description": "The body of every API error.",
            "properties": {
                "detail": {"type": "string"},
                "code": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                    },
                },
            },
            "required": ["detail", "code", "errors"],
        }
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            codes = {400, 405, 406, 415, 429}
            if operation.get("security") != [{}] and {} not in operation.get("security", [{}]):
                codes |= {401, 403}
            if "{" in path:
                codes.add(404)
            if method in ("post", "put", "patch"):
                codes.add(413)
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                responses.setdefault(
                    str(code),
                    {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result


# --- a JSON parser that refuses what no handler should see ---------------------------------------

MAX_DEPTH = 32


class StrictJSONParser(JSONParser):
    """JSON with limits, checked before any handler (or database) sees the values: a body of at
    most `API_MAX_BODY_BYTES` (413), nesting of at most 32 levels, no NUL characters or unpaired
    surrogates in strings or keys, numbers within the range of a double, no NaN or Infinity
    (each a 400 saying which)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = getattr(settings, "API_MAX_BODY_BYTES", 10 * 1024 * 1024)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise TooLarge(f"The body is larger than {limit} bytes: send fewer rows per request.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"The body is not UTF-8 (byte {exc.start}).") from exc
        if not text.strip():
            return {}
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON nested more than {MAX_DEPTH} levels.") from exc
        except ValueError as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from exc
        _check(data)
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is outside the range of a double")
    return value


def _check(data: Any) -> None:
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise exceptions.ParseError(f"JSON nested more than {MAX_DEPTH} levels.")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    _check_text(key, name)
                stack.append((item, depth + 1, name))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:
                raise exceptions.ParseError(
                    f"{where or 'The body'}: the number is outside the range of a double."
                ) from None


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise exceptions.ParseError(f"{where or 'The body'}: text may not contain NUL (\\u0000).")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise exceptions.ParseError(
            f"{where or 'The body'}: text holds an unpaired surrogate (\\ud800–\\udfff)."
        ) from None
