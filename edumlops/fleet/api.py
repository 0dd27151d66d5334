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
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.deployments import services
from edumlops.deployments.models import Deployment
from edumlops.fleet import bundles, tokens
from edumlops.fleet.models import EdgeEvent, EdgeNode, describe
from edumlops.ml import signing
from edumlops.ml.bundle_files import BUNDLE_FILES
from edumlops.registry.models import ModelVersion
from edumlops.schools.models import School
from edumlops.schools.permissions import Action, require, visible_schools

PROTOCOL = 1
HISTORY = 5
CONTENT_TYPES = {
    "manifest.json": "application/json",
    "manifest.sig": "text/plain; charset=utf-8",
    "model.onnx": "application/octet-stream",
}
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
NODE_KINDS = [k for k in EdgeEvent.Kind.values if k != EdgeEvent.Kind.PUBLISHED]


def node_call(methods: list[str]) -> Callable:
    """A view only a registered, unrevoked node may call (Bearer edge_…)."""

    def wrap(view: Callable) -> Callable:
        view = permission_classes([tokens.IsEdgeNode])(view)
        view = authentication_classes([tokens.EdgeNodeAuthentication])(view)
        return api_view(methods)(view)

    return wrap


def _error(message: str, code: int = 400) -> Response:
    return Response({"detail": message}, status=code)


def poll_seconds() -> int:
    return int(settings.EDGE_POLL_SECONDS)


# --- node calls -------------------------------------------------------------------------------
@extend_schema(responses={200: None})
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


@extend_schema(responses={200: None, 304: None, 503: None})
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


@extend_schema(responses={200: None, 206: None, 404: None, 416: None})
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
        response = FileResponse(fh, status=206, content_type=CONTENT_TYPES[file])
        response["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    else:
        length = end - start + 1
        response = StreamingHttpResponse(
            _chunks(path, start, length), status=206, content_type=CONTENT_TYPES[file]
        )
        response["Content-Length"] = str(length)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return response


class ReportError(ValueError):
    pass


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _heartbeat(node: EdgeNode, body: dict[str, Any]) -> dict[str, Any]:
    """The node fields a report changes, checked; ReportError names the first bad one."""
    changes: dict[str, Any] = {}
    if "active_version" in body:
        value = body["active_version"]
        if value is not None and not _whole(value):
            raise ReportError("active_version must be a model version id (a whole number) or null.")
        if value is not None:
            model = ModelVersion.objects.filter(
                pk=value, district_id=node.school.district_id
            ).first()
            if model is None:
                raise ReportError(
                    f"active_version {value} is not a model version of "
                    f"{node.school.district}: report the id from the manifest's "
                    "desired.model_version."
                )
        changes["active_version_id"] = value
    if "cached_versions" in body:
        value = body["cached_versions"]
        if not isinstance(value, list) or not all(_whole(v) for v in value) or len(value) > 50:
            raise ReportError("cached_versions must be a list of model version ids (at most 50).")
        changes["cached_versions"] = value
    if "device_profile" in body:
        value = body["device_profile"]
        if not isinstance(value, dict) or len(json.dumps(value, default=str)) > 4000:
            raise ReportError("device_profile must be an object (at most 4000 characters).")
        changes["device_profile"] = value
    if "pending_telemetry" in body:
        value = body["pending_telemetry"]
        if not _whole(value) or value < 0:
            raise ReportError("pending_telemetry must be a whole number ≥ 0.")
        changes["pending_telemetry"] = value
    for name, limit in (("serving", 20), ("agent_version", 40)):
        if name in body:
            value = body[name]
            if not isinstance(value, str) or len(value) > limit:
                raise ReportError(f"{name} must be text of at most {limit} characters.")
            changes[name] = value
    return changes


def _events(node: EdgeNode, items: Any, now: dt.datetime) -> list[EdgeEvent]:
    if not isinstance(items, list) or len(items) > 500:
        raise ReportError("events must be a list (at most 500 per report).")
    named = [i.get("version") for i in items if isinstance(i, dict)]
    versions = set(
        ModelVersion.objects.filter(
            district_id=node.school.district_id, pk__in=[v for v in named if _whole(v)]
        ).values_list("pk", flat=True)
    )
    out: dict[str, EdgeEvent] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReportError(f"Event {n} must be an object with id, kind, version, detail, at.")
        client_id = item.get("id")
        if not isinstance(client_id, str) or not 0 < len(client_id.strip()) <= 80:
            raise ReportError(f"Event {n}: id must be text of 1 to 80 characters, one per event.")
        kind = item.get("kind")
        if kind not in NODE_KINDS:
            raise ReportError(f"Event {n}: kind must be one of {', '.join(NODE_KINDS)}.")
        version = item.get("version")
        if version is not None and not _whole(version):
            raise ReportError(f"Event {n}: version must be a model version id or null.")
        detail = item.get("detail", "")
        if not isinstance(detail, str):
            raise ReportError(f"Event {n}: detail must be text.")
        at = now
        if item.get("at") is not None:
            at = parse_datetime(str(item["at"])) if isinstance(item["at"], str) else None
            if at is None:
                raise ReportError(f"Event {n}: at must be an ISO 8601 date and time.")
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


ReportIn = inline_serializer(
    "EdgeReportIn",
    {
        "active_version": serializers.IntegerField(allow_null=True, required=False),
        "cached_versions": serializers.ListField(child=serializers.IntegerField(), required=False),
        "agent_version": serializers.CharField(required=False),
        "device_profile": serializers.DictField(required=False),
        "pending_telemetry": serializers.IntegerField(required=False),
        "serving": serializers.CharField(required=False),
        "events": serializers.ListField(child=serializers.DictField(), required=False),
    },
)


@extend_schema(request=ReportIn, responses={200: None, 400: None})
@node_call(["POST"])
def report(request: Request) -> Response:
    """Heartbeat: what the node serves and caches, its device profile, its queue, and its events
    (each stored once per id, even when a report is sent twice)."""
    node: EdgeNode = request.auth
    body = request.data
    now = timezone.now()
    try:
        if not isinstance(body, dict):
            raise ReportError("Send a JSON object: see POST /api/edge/report/ in the protocol.")
        changes = _heartbeat(node, body)
        events = _events(node, body.get("events") or [], now)
    except ReportError as exc:
        return _error(str(exc))
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


TelemetryIn = inline_serializer(
    "EdgeTelemetryIn",
    {
        "idempotency_key": serializers.CharField(),
        "aggregates": serializers.ListField(child=serializers.DictField()),
    },
)


@extend_schema(request=TelemetryIn, responses={200: None, 201: None, 400: None})
@node_call(["POST"])
def telemetry(request: Request) -> Response:
    """Daily aggregates of this node's predictions (no raw rows), counted exactly once per
    idempotency_key: a resent batch answers 200 with "duplicate": true and adds nothing."""
    from edumlops.monitoring import telemetry as t

    node: EdgeNode = request.auth
    body = request.data
    if not isinstance(body, dict):
        return _error('Send {"idempotency_key": "...", "aggregates": [...]}.')
    aggregates = body.get("aggregates")
    if isinstance(aggregates, list):  # the source is this node, whatever the batch says
        aggregates = [{**a, "node": node.name} if isinstance(a, dict) else a for a in aggregates]
    try:
        added, duplicate = t.receive(
            node.school.district, body.get("idempotency_key", ""), node.school, aggregates
        )
    except t.TelemetryError as exc:
        return _error(str(exc))
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


NodeIn = inline_serializer(
    "EdgeNodeIn", {"school": serializers.IntegerField(), "name": serializers.CharField()}
)


@extend_schema(request=NodeIn, responses={200: None, 201: None, 400: None})
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
    body = request.data if isinstance(request.data, dict) else {}
    if not _whole(body.get("school")):
        return _error('Say which school the node is for: {"school": <id>, "name": "rhs-server-1"}.')
    school = get_object_or_404(visible_schools(request.user), pk=body["school"])
    require(request.user, Action.MANAGE, school.district)
    try:
        node, key = tokens.create(school, str(body.get("name", "")), request.user)
    except tokens.NodeError as exc:
        return _error(str(exc))
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


@extend_schema(request=None, responses={200: None, 400: None})
@api_view(["POST"])
def node_revoke(request: Request, pk: int) -> Response:
    """Revoke a node's token (admins): every call it makes from now on gets 401."""
    node = get_object_or_404(
        EdgeNode.objects.filter(school__in=visible_schools(request.user)), pk=pk
    )
    require(request.user, Action.MANAGE, node.school.district)
    try:
        tokens.revoke(node, request.user)
    except tokens.NodeError as exc:
        return _error(str(exc))
    return Response({"id": node.pk, "revoked": True, "revoked_at": node.revoked_at.isoformat()})
