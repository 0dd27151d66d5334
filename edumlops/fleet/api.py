"""The edge API (docs/edge-protocol.md): what a node calls with its token — hello, manifest,
bundle files, report, telemetry — and what people call to register and revoke nodes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import ErrorOut, error_body, parse
from edumlops.core.throttles import TelemetryThrottle
from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.fleet import bundles, tokens
from edumlops.fleet.models import EdgeEvent, EdgeNode, describe
from edumlops.ml import signing
from edumlops.ml.bundle_files import BUNDLE_FILES
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, can, visible_schools

PROTOCOL = 1
HISTORY = 5
CONTENT_TYPES = {
    "manifest.json": "application/json",
    "manifest.sig": "text/plain; charset=utf-8",
    "model.onnx": "application/octet-stream",
}
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
NODE_KINDS = [k for k in EdgeEvent.Kind.values if k != EdgeEvent.Kind.PUBLISHED]
ID_MAX = 2**63 - 1


def _id(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


# --- answers ------------------------------------------------------------------------------------
class NamedOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SchoolRefOut(NamedOut):
    code = serializers.CharField()


class HelloOut(serializers.Serializer):
    protocol = serializers.IntegerField()
    node = NamedOut()
    school = SchoolRefOut()
    district = NamedOut()
    public_key_pem = serializers.CharField()
    signing_key_id = serializers.CharField()
    poll_seconds = serializers.IntegerField()
    server_time = serializers.DateTimeField()


class BundleFileOut(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField()


class DesiredOut(serializers.Serializer):
    model_version = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    deployment = serializers.IntegerField()
    scope = serializers.CharField()
    files = BundleFileOut(many=True)


class ManifestOut(serializers.Serializer):
    etag = serializers.CharField()
    school = serializers.IntegerField()
    desired = DesiredOut(allow_null=True, help_text="What to serve now; null: nothing.")
    history = serializers.ListField(child=serializers.IntegerField())
    poll_seconds = serializers.IntegerField()


class ReportOut(serializers.Serializer):
    ok = serializers.BooleanField()
    desired_version = serializers.IntegerField(allow_null=True)
    events_stored = serializers.IntegerField()


class EdgeTelemetryOut(serializers.Serializer):
    added = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class NodeOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    school = serializers.IntegerField()
    school_name = serializers.CharField()
    district = serializers.IntegerField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    revoked = serializers.BooleanField()
    last_contact = serializers.DateTimeField(allow_null=True)
    online = serializers.BooleanField()
    contact = serializers.CharField()
    active_version = serializers.IntegerField(allow_null=True)
    desired_version = serializers.IntegerField(allow_null=True)
    sync = serializers.CharField()
    sync_text = serializers.CharField()
    cached_versions = serializers.ListField(child=serializers.IntegerField())
    pending_telemetry = serializers.IntegerField()
    device_profile = serializers.JSONField(allow_null=True)
    serving = serializers.CharField(allow_blank=True)
    agent_version = serializers.CharField(allow_blank=True)
    last_event = serializers.DictField(allow_null=True)


class NodeCreatedOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    school = serializers.IntegerField()
    token = serializers.CharField(help_text="Shown this once.")
    register = serializers.CharField(help_text="The command to run at the school.")


class RevokedOut(serializers.Serializer):
    id = serializers.IntegerField()
    revoked = serializers.BooleanField()
    revoked_at = serializers.DateTimeField()


# --- requests -----------------------------------------------------------------------------------
class ReportIn(serializers.Serializer):
    active_version = _id(allow_null=True, required=False)
    cached_versions = serializers.ListField(child=_id(), max_length=50, required=False)
    agent_version = serializers.CharField(max_length=40, allow_blank=True, required=False)
    device_profile = serializers.DictField(required=False)
    pending_telemetry = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    serving = serializers.CharField(max_length=20, allow_blank=True, required=False)
    events = serializers.ListField(
        child=serializers.DictField(),
        max_length=500,
        required=False,
        help_text="Each {id, kind, version, detail, at}; stored once per id.",
    )


class EdgeTelemetryIn(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=120)
    aggregates = serializers.ListField(
        child=serializers.DictField(),
        max_length=10_000,
        help_text="Daily aggregates: day, model_version, count, bands, … (no raw rows).",
    )


class NodeIn(serializers.Serializer):
    school = _id(help_text="The school the node serves.")
    name = serializers.CharField(max_length=80, allow_blank=True, help_text="e.g. rhs-server-1")


def node_call(methods: list[str]) -> Callable:
    """A view only a registered, unrevoked node may call (Bearer edge_…)."""

    def wrap(view: Callable) -> Callable:
        view = permission_classes([tokens.IsEdgeNode])(view)
        view = authentication_classes([tokens.EdgeNodeAuthentication])(view)
        return api_view(methods)(view)

    return wrap


def _error(message: str, code: int = 400, field: str | None = None) -> Response:
    """An error in the one shape; `field` names the bad value of a 400."""
    body = error_body({field: [message]} if field is not None else message, ERROR_CODES[code])
    if field is not None:
        body["detail"] = message
    return Response(body, status=code)


ERROR_CODES = {
    400: "invalid",
    404: "not_found",
    416: "range_not_satisfiable",
    503: "bundle_unavailable",
}


def poll_seconds() -> int:
    return int(settings.EDGE_POLL_SECONDS)


# --- node calls -------------------------------------------------------------------------------
@extend_schema(responses={200: HelloOut})
@node_call(["GET"])
def hello(request: Request) -> Response:
    """Who am I: the node, its school and district, the district's public signing key (the agent
    pins it) and how often to poll."""
    node: EdgeNode = request.auth
    school = node.school
    key = signing.load_or_create_private_key(Path(settings.SIGNING_KEY_PATH)).public_key()
    return Response(
        {
            "protocol": PROTOCOL,
            "node": {"id": node.pk, "name": node.name},
            "school": {"id": school.pk, "code": school.code, "name": school.name},
            "district": {"id": school.district_id, "name": school.district.name},
            "public_key_pem": signing.public_key_pem(key),
            "signing_key_id": signing.key_id(key),
            "poll_seconds": poll_seconds(),
            "server_time": timezone.now().isoformat(),
        }
    )


def history(school: School, exclude: int | None) -> list[int]:
    """The school's earlier model versions (its pilots and the district's deployments), newest
    first, without `exclude`, at most HISTORY of them."""
    rows = (
        Deployment.objects.filter(
            Q(scope=Deployment.Scope.DISTRICT, district_id=school.district_id)
            | Q(scope=Deployment.Scope.PILOT, schools=school)
        )
        .order_by("-created_at", "-id")
        .values_list("model_version_id", flat=True)[:200]
    )
    out: list[int] = []
    for version in rows:
        if version != exclude and version not in out:
            out.append(version)
        if len(out) == HISTORY:
            break
    return out


def etag_of(desired: dict[str, Any] | None, earlier: list[int]) -> str:
    """Covers the desired version, its deployment and file digests, and the history."""
    basis = None
    if desired is not None:
        basis = {
            "model_version": desired["model_version"],
            "deployment": desired["deployment"],
            "files": [[f["name"], f["size"], f["sha256"]] for f in desired["files"]],
        }
    raw = json.dumps({"protocol": PROTOCOL, "desired": basis, "history": earlier}, sort_keys=True)
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]
    return "*" in tags or etag in tags


@extend_schema(
    parameters=[
        OpenApiParameter(
            "If-None-Match",
            str,
            OpenApiParameter.HEADER,
            required=False,
            description="The ETag of the manifest you have: 304 when it has not changed.",
        )
    ],
    responses={
        200: ManifestOut,
        304: OpenApiResponse(description="Not modified: the manifest you have is current."),
        503: OpenApiResponse(
            ErrorOut, description="The bundle cannot be read now: keep serving, ask later."
        ),
    },
)
@node_call(["GET"])
def manifest(request: Request) -> Response:
    """What this node's school should serve now (`desired`, or null), the earlier versions it may
    keep, and an ETag: send it back in If-None-Match and an unchanged answer is 304, empty."""
    node: EdgeNode = request.auth
    deployment = services.resolve(node.school)
    desired = None
    if deployment is not None:
        model = deployment.model_version
        try:
            files = bundles.files(model)
        except bundles.BundleUnavailable as exc:
            return _error(f"{exc} Keep serving what you have and ask again later.", 503)
        desired = {
            "model_version": model.pk,
            "name": model.display_name,
            "version": model.version,
            "deployment": deployment.pk,
            "scope": deployment.scope,
            "files": [{**f, "url": f"/api/edge/bundles/{model.pk}/{f['name']}"} for f in files],
        }
    earlier = history(node.school, desired["model_version"] if desired else None)
    etag = etag_of(desired, earlier)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    body = {
        "etag": etag,
        "school": node.school_id,
        "desired": desired,
        "history": earlier,
        "poll_seconds": poll_seconds(),
    }
    return Response(body, headers=headers)


def _chunks(path: Path, start: int, length: int, size: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(size, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


FILE_BODY = {
    (200, "application/octet-stream"): OpenApiTypes.BINARY,
    (200, "application/json"): OpenApiTypes.ANY,
    (200, "text/plain"): OpenApiTypes.STR,
    (206, "application/octet-stream"): OpenApiTypes.BINARY,
}


@extend_schema(
    parameters=[
        OpenApiParameter(
            "Range",
            str,
            OpenApiParameter.HEADER,
            required=False,
            description="bytes=N- (or N-M) resumes a download: 206 with those bytes.",
        )
    ],
    responses={
        **FILE_BODY,
        404: OpenApiResponse(ErrorOut, description="No such file or model version here."),
        416: OpenApiResponse(
            ErrorOut, description="The range starts past the end: download it from the start."
        ),
        503: OpenApiResponse(ErrorOut, description="The bundle cannot be read now."),
    },
)
@node_call(["GET"])
def bundle_file(request: Request, model_version: int, file: str) -> HttpResponseBase:
    """One file of a bundle, as stored. `Range: bytes=N-` (or N-M) resumes a download (206)."""
    node: EdgeNode = request.auth
    if file not in BUNDLE_FILES:
        return _error(f"A bundle holds {', '.join(BUNDLE_FILES)}; there is no {file!r}.", 404)
    model = ModelVersion.objects.filter(
        pk=model_version, district_id=node.school.district_id
    ).first()
    if model is None or not (model.bundle or {}).get("manifest"):
        return _error(
            f"No model version {model_version} with a bundle in {node.school.district}: take the "
            "version from your manifest.",
            404,
        )
    try:
        path = bundles.bundle_dir(model) / file
        size = path.stat().st_size
    except (bundles.BundleUnavailable, OSError) as exc:
        return _error(f"{exc} Try again later.", 503)
    match = RANGE.match(request.headers.get("Range", "").strip())
    start, end = (int(match[1]), int(match[2]) if match[2] else size - 1) if match else (0, -1)
    if match and start >= size:
        response: HttpResponseBase = _error(
            f"The range starts at byte {start} but {file} has {size} bytes: download it again "
            "from the start.",
            status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
        )
        response["Content-Range"] = f"bytes */{size}"
        return response
    if not match or end < start:  # no range, or one we do not serve: the whole file
        response = FileResponse(path.open("rb"), content_type=CONTENT_TYPES[file])
    elif end >= size - 1:  # to the end (a resumed download): the file from `start`
        fh = path.open("rb")
        fh.seek(start)
        response = FileResponse(fh, status=206, content_type="application/octet-stream")
        response["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    else:
        length = end - start + 1
        response = StreamingHttpResponse(
            _chunks(path, start, length), status=206, content_type="application/octet-stream"
        )
        response["Content-Length"] = str(length)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return response


class ReportError(ValueError):
    """A report value that cannot be stored; `field` names it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _heartbeat(node: EdgeNode, body: dict[str, Any]) -> dict[str, Any]:
    """The node fields a report changes, checked; ReportError names the first bad one."""
    changes: dict[str, Any] = {}
    if "active_version" in body:
        value = body["active_version"]
        if value is not None and not _whole(value):
            raise ReportError(
                "active_version must be a model version id (a whole number) or null.",
                "active_version",
            )
        if value is not None:
            model = ModelVersion.objects.filter(
                pk=value, district_id=node.school.district_id
            ).first()
            if model is None:
                raise ReportError(
                    f"active_version {value} is not a model version of "
                    f"{node.school.district}: report the id from the manifest's "
                    "desired.model_version.",
                    "active_version",
                )
        changes["active_version_id"] = value
    if "cached_versions" in body:
        value = body["cached_versions"]
        if not isinstance(value, list) or not all(_whole(v) for v in value) or len(value) > 50:
            raise ReportError(
                "cached_versions must be a list of model version ids (at most 50).",
                "cached_versions",
            )
        changes["cached_versions"] = value
    if "device_profile" in body:
        value = body["device_profile"]
        if not isinstance(value, dict) or len(json.dumps(value, default=str)) > 4000:
            raise ReportError(
                "device_profile must be an object (at most 4000 characters).", "device_profile"
            )
        changes["device_profile"] = value
    if "pending_telemetry" in body:
        value = body["pending_telemetry"]
        if not _whole(value) or value < 0:
            raise ReportError("pending_telemetry must be a whole number ≥ 0.", "pending_telemetry")
        changes["pending_telemetry"] = value
    for name, limit in (("serving", 20), ("agent_version", 40)):
        if name in body:
            value = body[name]
            if not isinstance(value, str) or len(value) > limit:
                raise ReportError(f"{name} must be text of at most {limit} characters.", name)
            changes[name] = value
    return changes


def _events(node: EdgeNode, items: Any, now: dt.datetime) -> list[EdgeEvent]:
    if not isinstance(items, list) or len(items) > 500:
        raise ReportError("events must be a list (at most 500 per report).", "events")
    named = [i.get("version") for i in items if isinstance(i, dict)]
    versions = set(
        ModelVersion.objects.filter(
            district_id=node.school.district_id, pk__in=[v for v in named if _whole(v)]
        ).values_list("pk", flat=True)
    )
    out: dict[str, EdgeEvent] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReportError(
                f"Event {n} must be an object with id, kind, version, detail, at.", f"events.{n}"
            )
        client_id = item.get("id")
        if not isinstance(client_id, str) or not 0 < len(client_id.strip()) <= 80:
            raise ReportError(
                f"Event {n}: id must be text of 1 to 80 characters, one per event.", f"events.{n}"
            )
        kind = item.get("kind")
        if kind not in NODE_KINDS:
            raise ReportError(
                f"Event {n}: kind must be one of {', '.join(NODE_KINDS)}.", f"events.{n}"
            )
        version = item.get("version")
        if version is not None and not _whole(version):
            raise ReportError(
                f"Event {n}: version must be a model version id or null.", f"events.{n}"
            )
        detail = item.get("detail", "")
        if not isinstance(detail, str):
            raise ReportError(f"Event {n}: detail must be text.", f"events.{n}")
        at = now
        if item.get("at") is not None:
            at = parse_datetime(str(item["at"])) if isinstance(item["at"], str) else None
            if at is None:
                raise ReportError(
                    f"Event {n}: at must be an ISO 8601 date and time.", f"events.{n}"
                )
            if timezone.is_naive(at):
                at = timezone.make_aware(at, dt.UTC)
        if version is not None and version not in versions:
            detail, version = f"{detail} (version {version}, unknown here)".strip(), None
        out.setdefault(
            client_id.strip(),
            EdgeEvent(
                node=node,
                client_id=client_id.strip(),
                kind=kind,
                model_version_id=version,
                detail=detail[:2000],
                at=at,
            ),
        )
    return list(out.values())


@extend_schema(request=ReportIn, responses={200: ReportOut})
@node_call(["POST"])
def report(request: Request) -> Response:
    """Heartbeat: what the node serves and caches, its device profile, its queue, and its events
    (each stored once per id, even when a report is sent twice)."""
    node: EdgeNode = request.auth
    body = parse(ReportIn, request.data)
    now = timezone.now()
    try:
        changes = _heartbeat(node, body)
        events = _events(node, body.get("events") or [], now)
    except ReportError as exc:
        return _error(str(exc), field=exc.field)
    with transaction.atomic():
        node = EdgeNode.objects.select_for_update().get(pk=node.pk)
        for field, value in changes.items():
            setattr(node, field, value)
        node.last_contact = now
        known = set(
            EdgeEvent.objects.filter(
                node=node, client_id__in=[e.client_id for e in events]
            ).values_list("client_id", flat=True)
        )
        new = [e for e in events if e.client_id not in known]
        EdgeEvent.objects.bulk_create(new, ignore_conflicts=True)
        newest = max(new, key=lambda e: e.at, default=None)
        last_at = parse_datetime(str((node.last_event or {}).get("at", "")))
        if newest is not None and (last_at is None or newest.at >= last_at):
            node.last_event = {
                "kind": newest.kind,
                "version": newest.model_version_id,
                "detail": newest.detail,
                "at": newest.at.isoformat(),
            }
        node.save()
    deployment = services.resolve(node.school)
    return Response(
        {
            "ok": True,
            "desired_version": deployment.model_version_id if deployment else None,
            "events_stored": len(new),
        }
    )


@extend_schema(
    request=EdgeTelemetryIn,
    responses={
        200: OpenApiResponse(EdgeTelemetryOut, description="A resent batch: nothing added."),
        201: EdgeTelemetryOut,
    },
)
@node_call(["POST"])
@throttle_classes([TelemetryThrottle])
def telemetry(request: Request) -> Response:
    """Daily aggregates of this node's predictions (no raw rows), counted exactly once per
    idempotency_key: a resent batch answers 200 with "duplicate": true and adds nothing."""
    from edumlops.monitoring import telemetry as t

    node: EdgeNode = request.auth
    body = parse(EdgeTelemetryIn, request.data)
    # the source is this node, whatever the batch says
    aggregates = [{**a, "node": node.name} for a in body["aggregates"]]
    try:
        added, duplicate = t.receive(
            node.school.district, body["idempotency_key"], node.school, aggregates
        )
    except t.TelemetryError as exc:
        return _error(str(exc), field="aggregates")
    return Response({"added": added, "duplicate": duplicate}, status=200 if duplicate else 201)


# --- people: register, list and revoke nodes ---------------------------------------------------
def register_command(request: Request | Any, key: str) -> str:
    server = request.build_absolute_uri("/").rstrip("/")
    return f"edumlops-edge register --server {server} --token {key}"


def as_dict(row: dict[str, Any]) -> dict[str, Any]:
    node: EdgeNode = row["node"]
    return {
        "id": node.pk,
        "name": node.name,
        "school": node.school_id,
        "school_name": node.school.name,
        "district": node.school.district_id,
        "prefix": node.prefix,
        "created_at": node.created_at.isoformat(),
        "revoked": node.revoked,
        "last_contact": node.last_contact.isoformat() if node.last_contact else None,
        "online": row["contact"]["online"],
        "contact": row["contact"]["state"],
        "active_version": row["active_version"],
        "desired_version": row["desired_version"],
        "sync": row["sync"]["code"],
        "sync_text": row["sync"]["words"],
        "cached_versions": node.cached_versions,
        "pending_telemetry": node.pending_telemetry,
        "device_profile": row["profile"],
        "serving": node.serving,
        "agent_version": node.agent_version,
        "last_event": node.last_event or None,
    }


@extend_schema(methods=["GET"], responses={200: NodeOut(many=True)})
@extend_schema(methods=["POST"], request=NodeIn, responses={201: NodeCreatedOut})
@api_view(["GET", "POST"])
def node_list(request: Request) -> Response:
    """GET: the edge nodes of the schools you see, with their status. POST (admins): register a
    node for a school; the answer holds its token, shown this once."""
    if request.method == "GET":
        nodes = list(
            EdgeNode.objects.filter(school__in=visible_schools(request.user)).select_related(
                "school__district"
            )
        )
        return Response([as_dict(row) for row in describe(nodes, timezone.now())])
    body = parse(NodeIn, request.data)
    school = visible_schools(request.user).filter(pk=body["school"]).first()
    if school is None:
        raise ValidationError(
            {"school": [f"There is no school {body['school']} you see: use a school's id."]}
        )
    if not can(request.user, Action.MANAGE, school.district):
        raise PermissionDenied("Edge nodes are registered by admins.")
    try:
        node, key = tokens.create(school, body["name"], request.user)
    except tokens.NodeError as exc:
        return _error(str(exc), field="name")
    return Response(
        {
            "id": node.pk,
            "name": node.name,
            "school": school.pk,
            "token": key,
            "register": register_command(request, key),
        },
        status=status.HTTP_201_CREATED,
    )


@extend_schema(request=None, responses={200: RevokedOut})
@api_view(["POST"])
def node_revoke(request: Request, pk: int) -> Response:
    """Revoke a node's token (admins): every call it makes from now on gets 401."""
    node = get_object_or_404(
        EdgeNode.objects.filter(school__in=visible_schools(request.user)), pk=pk
    )
    if not can(request.user, Action.MANAGE, node.school.district):
        raise PermissionDenied("Edge nodes are revoked by admins.")
    try:
        tokens.revoke(node, request.user)
    except tokens.NodeError as exc:
        return _error(str(exc))
    return Response({"id": node.pk, "revoked": True, "revoked_at": node.revoked_at.isoformat()})
