"""REST API of the workflow engine. Every endpoint checks edumlops.schools.permissions."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.schools.models import District
from edumlops.schools.permissions import Action, require, visible_districts
from workflows import engine
from workflows.blocks import catalog
from workflows.compiler import validate
from workflows.graph import Graph, diff
from workflows.models import Notification, Run, Workflow, WorkflowVersion


# --- serializers ------------------------------------------------------------------------------
class GraphField(serializers.JSONField):
    pass


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
    district = serializers.PrimaryKeyRelatedField(queryset=District.objects.all())
    description = serializers.CharField(allow_blank=True, default="")
    graph = GraphField(required=False)
    message = serializers.CharField(max_length=500, allow_blank=True, default="first version")


class RunIn(serializers.Serializer):
    conf = serializers.DictField(required=False, default=dict)
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Run this version (default: the newest runnable)."
    )


class DecisionIn(serializers.Serializer):
    comment = serializers.CharField(max_length=5000)
    node_id = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)


class VersionOut(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField()

    class Meta:
        model = WorkflowVersion
        fields = ["number", "message", "created_by", "created_at", "draft", "errors"]


class WorkflowOut(serializers.ModelSerializer):
    owner = serializers.StringRelatedField()
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
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    duration_seconds = serializers.FloatField()
    logs = serializers.JSONField()
    metrics = serializers.JSONField()
    outputs = serializers.JSONField()
    progress = serializers.JSONField()
    error = serializers.CharField()
    reason = serializers.CharField()
    # what the step asked district staff to approve ("summary" plus the ids it applies)
    proposal = serializers.JSONField(allow_null=True)
    wake_at = serializers.DateTimeField(allow_null=True, help_text="A waiting step's next check.")


class RunOut(serializers.ModelSerializer):
    steps = StepOut(many=True, read_only=True)
    version = serializers.IntegerField(source="version.number")
    started_by = serializers.StringRelatedField()
    approvals = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "workflow",
            "version",
            "status",
            "reason",
            "trigger_node",
            "conf",
            "started_by",
            "created_at",
            "finished_at",
            "steps",
            "approvals",
        ]

    def get_approvals(self, run: Run) -> list[dict]:
        return [
            {
                "node_id": a.node_id,
                "user": str(a.user),
                "decision": a.decision,
                "comment": a.comment,
                "at": a.created_at,
            }
            for a in run.approvals.select_related("user")
        ]


ERRORS = inline_serializer(
    "GraphErrors",
    fields={
        "valid": serializers.BooleanField(),
        "errors": serializers.ListField(child=serializers.DictField()),
    },
)


def _invalid(errors: list) -> Response:
    return Response(
        {"valid": False, "errors": [e.as_dict() for e in errors]},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _get_workflow_for_user(request: Request, pk: int, action: Action) -> Workflow:
    workflow = get_object_or_404(
        Workflow.objects.filter(district__in=visible_districts(request.user)), pk=pk
    )
    require(request.user, action, workflow)
    return workflow


def _get_run_for_user(request: Request, pk: int, action: Action) -> Run:
    run = get_object_or_404(
        Run.objects.select_related("workflow", "version").filter(
            workflow__district__in=visible_districts(request.user)
        ),
        pk=pk,
    )
    require(request.user, action, run)
    return run


def _run_response(run: Run, code: int = status.HTTP_200_OK) -> Response:
    run = Run.objects.select_related("version", "started_by").get(pk=run.pk)
    return Response(RunOut(run).data, status=code)


class BrokerDown(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "broker_unavailable"


def _engine_call(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    try:
        return fn(*args, **kwargs)
    except engine.EngineError as exc:
        raise ValidationError({"detail": str(exc)}) from None
    except engine.BrokerUnavailable as exc:
        # saved, never half done: the reconciler sends it once the broker is back
        raise BrokerDown(str(exc)) from None


# --- endpoints --------------------------------------------------------------------------------
@extend_schema(responses={200: OpenApiResponse(description="Every block, with its JSON Schema")})
@api_view(["GET"])
def blocks(request: Request) -> Response:
    return Response(catalog())


@extend_schema(request=ValidateIn, responses={200: ERRORS, 400: ERRORS})
@api_view(["POST"])
def validate_graph(request: Request) -> Response:
    body = ValidateIn(data=request.data)
    body.is_valid(raise_exception=True)
    errors = validate(body.validated_data["graph"])
    if errors:
        return _invalid(errors)
    return Response({"valid": True})


@extend_schema(methods=["GET"], responses=WorkflowOut(many=True))
@extend_schema(methods=["POST"], request=WorkflowIn, responses={201: WorkflowOut, 400: ERRORS})
@api_view(["GET", "POST"])
def workflow_list(request: Request) -> Response:
    if request.method == "GET":
        workflows = Workflow.objects.filter(
            district__in=visible_districts(request.user)
        ).prefetch_related("versions")
        return Response(WorkflowOut(workflows, many=True).data)
    body = WorkflowIn(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    require(request.user, Action.MANAGE, data["district"])
    if "graph" in data:
        errors = validate(data["graph"])
        if errors:
            return _invalid(errors)
    if Workflow.objects.filter(district=data["district"], name=data["name"]).exists():
        raise ValidationError({"name": ["A workflow of this name exists in the district."]})
    with transaction.atomic():
        workflow = Workflow.objects.create(
            district=data["district"],
            name=data["name"],
            description=data["description"],
            owner=request.user,
        )
        if "graph" in data:
            workflow.save_version(data["graph"], data["message"], request.user)
    return Response(WorkflowOut(workflow).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=WorkflowOut)
@api_view(["GET"])
def workflow_detail(request: Request, pk: int) -> Response:
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    return Response(WorkflowOut(workflow).data)


@extend_schema(request=VersionIn, responses={201: VersionOut, 400: ERRORS})
@api_view(["POST"])
def workflow_versions(request: Request, pk: int) -> Response:
    workflow = _get_workflow_for_user(request, pk, Action.MANAGE)
    body = VersionIn(data=request.data)
    body.is_valid(raise_exception=True)
    graph = body.validated_data["graph"]
    errors = validate(graph)
    if errors and not body.validated_data["draft"]:
        return _invalid(errors)
    if any(e.code == "malformed" for e in errors):
        return _invalid(errors)  # not even a graph's shape: nothing the canvas could reopen
    version = workflow.save_version(
        graph,
        body.validated_data["message"],
        request.user,
        errors=[e.as_dict() for e in errors],
    )
    return Response(VersionOut(version).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=OpenApiResponse(description="The graph of one version"))
@api_view(["GET"])
def workflow_version(request: Request, pk: int, number: int) -> Response:
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    version = get_object_or_404(workflow.versions, number=number)
    return Response({**VersionOut(version).data, "graph": version.graph})


@extend_schema(responses=OpenApiResponse(description="Nodes, edges and parameters that changed"))
@api_view(["GET"])
def workflow_diff(request: Request, pk: int, number: int) -> Response:
    """Version `number` against `?against=` (default: the version before it)."""
    workflow = _get_workflow_for_user(request, pk, Action.VIEW)
    new = get_object_or_404(workflow.versions, number=number)
    against = request.query_params.get("against", str(number - 1))
    if not against.isdigit():
        raise ValidationError({"against": ["Give a version number."]})
    old = get_object_or_404(workflow.versions, number=int(against))
    changes = diff(Graph.model_validate(old.graph), Graph.model_validate(new.graph))
    return Response({"from": old.number, "to": new.number, **changes})


BROKER_DOWN = OpenApiResponse(
    description="The task broker cannot be reached: the run (or decision) is saved and goes on "
    "by itself once the broker is back; the body's `detail` says so."
)


@extend_schema(request=RunIn, responses={201: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def workflow_runs(request: Request, pk: int) -> Response:
    workflow = _get_workflow_for_user(request, pk, Action.MANAGE)
    body = RunIn(data=request.data)
    body.is_valid(raise_exception=True)
    version = None
    if "version" in body.validated_data:
        version = get_object_or_404(workflow.versions, number=body.validated_data["version"])
    run = _engine_call(
        engine.start_run,
        workflow,
        user=request.user,
        conf=body.validated_data["conf"],
        version=version,
    )
    return _run_response(run, status.HTTP_201_CREATED)


@extend_schema(responses=RunOut)
@api_view(["GET"])
def run_detail(request: Request, pk: int) -> Response:
    return _run_response(_get_run_for_user(request, pk, Action.VIEW))


def _decide(request: Request, pk: int, decide) -> Response:  # noqa: ANN001
    run = _get_run_for_user(request, pk, Action.APPROVE)
    body = DecisionIn(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    _engine_call(decide, run, request.user, data["comment"], data["node_id"])
    return _run_response(run)


@extend_schema(request=DecisionIn, responses={200: RunOut, 503: BROKER_DOWN})
@api_view(["POST"])
def run_approve(request: Request, pk: int) -> Response:
    return _decide(request, pk, engine.approve)


@extend_schema(request=DecisionIn, responses=RunOut)
@api_view(["POST"])
def run_reject(request: Request, pk: int) -> Response:
    return _decide(request, pk, engine.reject)


@extend_schema(request=None, responses=RunOut)
@api_view(["POST"])
def run_cancel(request: Request, pk: int) -> Response:
    run = _get_run_for_user(request, pk, Action.MANAGE)
    _engine_call(engine.cancel, run, request.user)
    return _run_response(run)


@extend_schema(responses=OpenApiResponse(description="The user's notifications, newest first"))
@api_view(["GET"])
def notifications(request: Request) -> Response:
    items = Notification.objects.filter(user=request.user)[:100]
    return Response(
        [
            {
                "id": n.id,
                "title": n.title,
                "body": n.body,
                "link": n.link,
                "created_at": n.created_at,
                "read": n.read_at is not None,
            }
            for n in items
        ]
    )
