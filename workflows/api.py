"""REST API of the workflow engine. Every endpoint checks edumlops.schools.permissions: a
workflow or run you may not see is a 404 (as for an unknown id); one you see but whose action
your role may not take is a 403 saying why.

A graph that does not validate answers 400 in the one error shape with `valid: false`; each
`errors` entry has `field` ("graph") and `message`, plus the error's `code` and the `node`,
`port`, `param` (and `edge`) at fault, for the canvas to mark."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import ErrorOut, parse
from edumlops.schools.models import District
from edumlops.schools.permissions import Action, can, visible_districts, visible_schools
from workflows import engine
from workflows.blocks import catalog
from workflows.compiler import GraphError, validate
from workflows.graph import Graph, diff, same_graph
from workflows.models import Notification, Run, Workflow, WorkflowVersion

ID_MAX = 2**63 - 1
NUMBER_MAX = 2**31 - 1


def seen_districts(user: Any) -> QuerySet[District]:
    """The districts a user sees as a whole or through one of their schools: an id outside
    these is answered like an unknown one."""
    return District.objects.filter(
        Q(pk__in=visible_districts(user).values("pk"))
        | Q(pk__in=visible_schools(user).values("district_id"))
    )


def require_to(user: Any, action: Action, obj: Any, why: str) -> None:
    """PermissionDenied saying `why` when the user's role may not take `action` on `obj`."""
    if not can(user, action, obj):
        raise PermissionDenied(why)


MAY_NOT_BUILD = "Workflows are built and run by admins (ML leads)."
MAY_NOT_DECIDE = "Approvals are decided by district staff."


# --- serializers ------------------------------------------------------------------------------
class GraphField(serializers.JSONField):
    """A graph: a JSON object (in a form or multipart body, its JSON text)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("Send the graph as JSON.") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                'Send the graph as a JSON object: {"nodes": [...], "edges": [...]}.'
            )
        return super().to_internal_value(data)


class ValidateIn(serializers.Serializer):
    graph = GraphField()


class VersionIn(serializers.Serializer):
    graph = GraphField()
    message = serializers.CharField(max_length=500, allow_blank=True, default="")
    draft = serializers.BooleanField(
        default=False,
        help_text="Save even with validation errors, as a draft that cannot run.",
    )


class WorkflowIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    district = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    description = serializers.CharField(max_length=20000, allow_blank=True, default="")
    graph = GraphField(required=False)
    message = serializers.CharField(max_length=500, allow_blank=True, default="first version")


class RunIn(serializers.Serializer):
    conf = serializers.DictField(required=False, default=dict)
    version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=NUMBER_MAX,
        help_text="Run this version (default: the newest runnable).",
    )
    trigger_node = serializers.CharField(
        required=False,
        max_length=64,
        help_text="The trigger to fire now, by its node id. Any trigger can be fired by hand: a "
        "schedule, a term start or an alert runs now, and the run says it was started by hand. "
        "Needed when the workflow has several triggers and not exactly one 'Start by hand'.",
    )
    school = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=ID_MAX,
        help_text="An alert trigger fired by hand has no alert: the school that blocks working "
        "on the alerted school (e.g. 'Deployment of the alerted school') work on instead.",
    )


class DecisionIn(serializers.Serializer):
    comment = serializers.CharField(max_length=5000)
    node_id = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)


class DiffQuery(serializers.Serializer):
    against = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=NUMBER_MAX,
        help_text="The version to compare with (default: the one before).",
    )


class GraphErrorOut(serializers.Serializer):
    field = serializers.CharField(help_text='"graph" (or the body field it came in).')
    message = serializers.CharField()
    code = serializers.CharField(required=False, help_text="e.g. cycle, type_mismatch.")
    node = serializers.CharField(required=False, allow_null=True)
    port = serializers.CharField(required=False, allow_null=True)
    param = serializers.CharField(required=False, allow_null=True)
    edge = serializers.IntegerField(required=False, allow_null=True)


class GraphInvalidOut(serializers.Serializer):
    """The one error shape; for a graph that does not validate also `valid: false`, and its
    entries name the node, port and parameter at fault."""

    detail = serializers.CharField()
    code = serializers.CharField()
    valid = serializers.BooleanField(required=False)
    errors = GraphErrorOut(many=True)


INVALID_GRAPH = OpenApiResponse(
    GraphInvalidOut,
    description="The request is not valid; for a graph that does not validate `valid` is false "
    "and each entry names the node, port and parameter at fault.",
)


class ValidOut(serializers.Serializer):
    valid = serializers.BooleanField()


class VersionOut(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)
    errors = serializers.ListField(
        child=serializers.DictField(), help_text="A draft's validation errors."
    )

    class Meta:
        model = WorkflowVersion
        fields = ["number", "message", "created_by", "created_at", "draft", "errors"]


class VersionSavedOut(VersionOut):
    """The version saved (201), or — when the graph is the latest version's — that version with
    `unchanged` true and nothing saved (200)."""

    unchanged = serializers.BooleanField(help_text="True: nothing changed, no version was made.")
    detail = serializers.CharField(help_text="What happened, in words.")

    class Meta(VersionOut.Meta):
        fields = [*VersionOut.Meta.fields, "unchanged", "detail"]


class VersionGraphOut(VersionOut):
    graph = serializers.DictField()

    class Meta(VersionOut.Meta):
        fields = [*VersionOut.Meta.fields, "graph"]


class WorkflowOut(serializers.ModelSerializer):
    owner = serializers.StringRelatedField(allow_null=True)
    versions = VersionOut(many=True, read_only=True)
    graph = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "description",
            "district",
            "owner",
            "created_at",
            "versions",
            "graph",
        ]

    def get_graph(self, workflow: Workflow) -> dict | None:
        latest = workflow.latest_version()
        return latest.graph if latest else None


class StepOut(serializers.Serializer):
    node_id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    logs = serializers.JSONField()
    metrics = serializers.JSONField()
    outputs = serializers.JSONField()
    progress = serializers.JSONField()
    error = serializers.CharField()
    reason = serializers.CharField()
    # what the step asked district staff to approve ("summary" plus the ids it applies)
    proposal = serializers.JSONField(allow_null=True)
    wake_at = serializers.DateTimeField(allow_null=True, help_text="A waiting step's next check.")


class ApprovalOut(serializers.Serializer):
    node_id = serializers.CharField()
    user = serializers.CharField()
    decision = serializers.CharField()
    comment = serializers.CharField()
    at = serializers.DateTimeField(source="created_at")


class RunOut(serializers.ModelSerializer):
    steps = StepOut(many=True, read_only=True)
    version = serializers.IntegerField(source="version.number")
    started_by = serializers.StringRelatedField(allow_null=True)
    approvals = serializers.SerializerMethodField()
    started = serializers.SerializerMethodField(
        help_text='Who or what started the run, e.g. "Started by hand by ana: fired the '
        "'Every Monday' trigger now\"."
    )
    summary = serializers.SerializerMethodField(
        help_text="The status in words; a run in which every step after the trigger was "
        'skipped says "Nothing ran: …", not passed.'
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "workflow",
            "version",
            "status",
            "summary",
            "reason",
            "trigger_node",
            "started",
            "conf",
            "started_by",
            "created_at",
            "finished_at",
            "steps",
            "approvals",
        ]

    @extend_schema_field(ApprovalOut(many=True))
    def get_approvals(self, run: Run) -> list[dict]:
        return ApprovalOut(run.approvals.select_related("user"), many=True).data

    def get_started(self, run: Run) -> str:
        return engine.started_text(run)

    def get_summary(self, run: Run) -> str:
        return engine.summary_text(run)


class BlockPortOut(serializers.Serializer):
    name = serializers.CharField()
    types = serializers.ListField(child=serializers.CharField())
    label = serializers.CharField()
    required = serializers.BooleanField()
    many = serializers.BooleanField()


class BlockOut(serializers.Serializer):
    kind = serializers.CharField()
    version = serializers.IntegerField()
    category = serializers.CharField()
    label = serializers.CharField()
    help = serializers.CharField()
    icon = serializers.CharField(allow_blank=True)
    trigger = serializers.BooleanField()
    by_hand = serializers.BooleanField(
        help_text="A trigger made for the Run button; other triggers run now when fired by hand."
    )
    needs_school = serializers.BooleanField(
        help_text="Works on the school of the alert that started the run: an alert trigger "
        "fired by hand asks for a school when this block is downstream."
    )
    inputs = BlockPortOut(many=True)
    outputs = BlockPortOut(many=True)
    params_schema = serializers.DictField(help_text="The parameters' JSON Schema.")


class DiffOut(serializers.Serializer):
    from_ = serializers.IntegerField()
    to = serializers.IntegerField()
    nodes_added = serializers.ListField(child=serializers.CharField())
    nodes_removed = serializers.ListField(child=serializers.CharField())
    nodes_changed = serializers.ListField(child=serializers.DictField())
    edges_added = serializers.ListField(child=serializers.JSONField())
    edges_removed = serializers.ListField(child=serializers.JSONField())

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class NotificationOut(serializers.ModelSerializer):
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "title", "body", "link", "link_label", "created_at", "read"]

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


def _invalid(found: list[GraphError]) -> Response:
    entries = [{"field": "graph", **e.as_dict()} for e in found]
    summary = "; ".join(e.message for e in found[:3]) + ("; …" if len(found) > 3 else "")
    return Response(
        {
            "detail": f"The workflow graph is not valid: {summary}",
            "code": "invalid",
            "valid": False,
            "errors": entries,
        },
        status=status.HTTP_400_BAD_REQUEST,
    )


def _get_workflow_for_user(request: Request, pk: int, action: Action) -> Workflow:
    workflow = get_object_or_404(
        Workflow.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    require_to(request.user, action, workflow, MAY_NOT_BUILD)
    return workflow


def _get_run_for_user(request: Request, pk: int, action: Action) -> Run:
    run = get_object_or_404(
        Run.objects.select_related("workflow", "version").filter(
            workflow__district__in=visible_districts(request.user)
        ),
        pk=pk,
    )
    require_to(
        request.user, action, run, MAY_NOT_DECIDE if action == Action.APPROVE else MAY_NOT_BUILD
    )
    return run


def _run_response(run: Run, code: int = status.HTTP_200_OK) -> Response:
    run = Run.objects.select_related("version", "started_by").get(pk=run.pk)
    return Response(RunOut(run).data, status=code)


class BrokerDown(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task broker cannot be reached: try again shortly."
    default_code = "broker_unavailable"


def _engine_call(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    try:
        return fn(*args, **kwargs)
    except engine.EngineError as exc:  # the run's state, not a value: `errors` stays empty
        raise ValidationError({"detail": str(exc)}) from None
    except engine.BrokerUnavailable as exc:
        # saved, never half done: the reconciler sends it once the broker is back
        raise BrokerDown(str(exc)) from None


BROKER_DOWN = OpenApiResponse(
    ErrorOut,
    description="The task broker cannot be reached: the run (or decision) is saved and goes on "
    "by itself once the broker is back; `detail` says so.",
)


# --- endpoints --------------------------------------------------------------------------------
@extend_schema(responses={200: BlockOut(many=True)})
@api_view(["GET"])
def blocks(request: Request) -> Response:
    """Every block, with its ports and its parameters' JSON Schema."""
    return Response(catalog())


@extend_schema(request=ValidateIn, responses={200: ValidOut, 400: INVALID_GRAPH})
@api_view(["POST"])
def validate_graph(request: Request) -> Response:
    body = parse(ValidateIn, request.data)
    found = validate(body["graph"])
    if found:
        return _invalid(found)
    return Response({"valid": True})


@extend_schema(methods=["GET"], responses={200: WorkflowOut(many=True)})
@extend_schema(
    methods=["POST"], request=WorkflowIn, responses={201: WorkflowOut, 400: INVALID_GRAPH}
)
@api_view(["GET", "POST"])
def workflow_list(request: Request) -> Response:
    if request.method == "GET":
        workflows = Workflow.objects.filter(
            district__in=visible_districts(request.user)
        ).prefetch_related("versions")
        return Response(WorkflowOut(workflows, many=True).data)
    data = parse(WorkflowIn, request.data)
    district = seen_districts(request.user).filter(pk=data["district"]).first()
    if district is None:
        raise ValidationError({"district": [f"There is no district {data['district']} you see."]})
    require_to(request.user, Action.MANAGE, district, MAY_NOT_BUILD)
    if "graph" in data:
        found = validate(data["graph"])
        if found:
            return _invalid(found)
    if Workflow.objects.filter(district=district, name=data["name"]).exists():
        raise ValidationError({"name": ["A workflow of this name exists in the district."]})
    with transaction.atomic():
        workflow = Workflow.objects.create(
            district=district,
            name=data["name"],
            description=data["description"],
            owner=request.user,
        )
        if "graph" in data:
            workflow.save_version(data["graph"], data["message"], request.user)
    return Response(WorkflowOut(workflow).data, status=status.HTTP_201_CREATED)


@extend_schema(responses={200: WorkflowOut})
@api_view(["GET"])
def workflow_detail(request: Request, pk: int) -> Response:
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    return Response(WorkflowOut(workflow).data)


@extend_schema(
    request=VersionIn,
    responses={
        201: VersionSavedOut,
        200: OpenApiResponse(
            VersionSavedOut,
            description="No changes: the graph is the latest version's; nothing was saved.",
        ),
        400: INVALID_GRAPH,
    },
)
@api_view(["POST"])
def workflow_versions(request: Request, pk: int) -> Response:
    """Save a new version — unless the graph is the latest version's (compared in its
    normalized form), which answers 200 with `unchanged: true` and saves nothing."""
    workflow = _get_workflow_for_user(request, pk, Action.MANAGE)
    body = parse(VersionIn, request.data)
    graph = body["graph"]
    found = validate(graph)
    if found and not body["draft"]:
        return _invalid(found)
    if any(e.code == "malformed" for e in found):
        return _invalid(found)  # not even a graph's shape: nothing the canvas could reopen
    latest = workflow.latest_version()
    if latest is not None and same_graph(latest.graph, graph):
        detail = f"No changes since version {latest.number}: nothing saved."
        data = {**VersionOut(latest).data, "unchanged": True, "detail": detail}
        return Response(data, status=status.HTTP_200_OK)
    version = workflow.save_version(
        graph,
        body["message"],
        request.user,
        errors=[e.as_dict() for e in found],
    )
    detail = f"Saved version {version.number}."
    data = {**VersionOut(version).data, "unchanged": False, "detail": detail}
    return Response(data, status=status.HTTP_201_CREATED)


@extend_schema(responses={200: VersionGraphOut})
@api_view(["GET"])
def workflow_version(request: Request, pk: int, number: int) -> Response:
    """One version of a workflow, with its graph."""
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    version = get_object_or_404(workflow.versions, number=number)
    return Response(VersionGraphOut(version).data)


@extend_schema(parameters=[DiffQuery], responses={200: DiffOut})
@api_view(["GET"])
def workflow_diff(request: Request, pk: int, number: int) -> Response:
    """Version `number` against `?against=` (default: the version before it): the nodes, edges
    and parameters that changed."""
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    query = parse(DiffQuery, request.query_params)
    new = get_object_or_404(workflow.versions, number=number)
    old = get_object_or_404(workflow.versions, number=query.get("against", number - 1))
    changes = diff(Graph.model_validate(old.graph), Graph.model_validate(new.graph))
    return Response({"from": old.number, "to": new.number, **changes})


@extend_schema(request=RunIn, responses={201: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def workflow_runs(request: Request, pk: int) -> Response:
    """Run the workflow now: "Start by hand", or any other trigger fired by hand (a schedule,
    a term start, an alert — `trigger_node` names which when there are several)."""
    workflow = _get_workflow_for_user(request, pk, Action.MANAGE)
    body = parse(RunIn, request.data)
    version = None
    if "version" in body:
        version = workflow.versions.filter(number=body["version"]).first()
        if version is None:
            raise ValidationError({"version": [f"{workflow} has no version {body['version']}."]})
    conf = body["conf"]
    if "school" in body:
        conf = {**conf, "school": body["school"]}
    run = _engine_call(
        engine.start_run,
        workflow,
        user=request.user,
        conf=conf,
        trigger_node=body.get("trigger_node"),
        version=version,
    )
    return _run_response(run, status.HTTP_201_CREATED)


@extend_schema(responses={200: RunOut})
@api_view(["GET"])
def run_detail(request: Request, pk: int) -> Response:
    return _run_response(_get_run_for_user(request, pk, Action.VIEW))


def _decide(request: Request, pk: int, decide) -> Response:  # noqa: ANN001
    run = _get_run_for_user(request, pk, Action.APPROVE)
    data = parse(DecisionIn, request.data)
    _engine_call(decide, run, request.user, data["comment"], data["node_id"])
    return _run_response(run)


@extend_schema(request=DecisionIn, responses={200: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def run_approve(request: Request, pk: int) -> Response:
    return _decide(request, pk, engine.approve)


@extend_schema(request=DecisionIn, responses={200: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def run_reject(request: Request, pk: int) -> Response:
    return _decide(request, pk, engine.reject)


@extend_schema(request=None, responses={200: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def run_cancel(request: Request, pk: int) -> Response:
    run = _get_run_for_user(request, pk, Action.MANAGE)
    _engine_call(engine.cancel, run, request.user)
    return _run_response(run)


@extend_schema(responses={200: NotificationOut(many=True)})
@api_view(["GET"])
def notifications(request: Request) -> Response:
    """The user's notifications, newest first (at most 100)."""
    items = Notification.objects.filter(user=request.user)[:100]
    return Response(NotificationOut(items, many=True).data)


@extend_schema(request=None, responses={200: NotificationOut})
@api_view(["POST"])
def notification_read(request: Request, pk: int) -> Response:
    """Mark one of the user's notifications read (anyone else's answers 404)."""
    note = get_object_or_404(Notification, pk=pk, user=request.user)
    Notification.mark_read(request.user, note.pk)
    note.refresh_from_db()
    return Response(NotificationOut(note).data)
