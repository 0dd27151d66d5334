"""The Thresholds page: no canvas, one form per workflow with the thresholds the user may change
for a school (its own values) or, for district staff, for the whole district. Read-only ones are
shown with who sets them. Saving makes a new workflow version and an audit record per value.

Also `GET/POST /api/thresholds/?school=ID` (or `?district=ID`), with the same rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import api_error, errors, parse
from edumlops.core.http import posted_id
from edumlops.schools.models import District, School
from edumlops.schools.permissions import visible_districts, visible_schools
from workflows import thresholds
from workflows.api import ID_MAX, seen_districts
from workflows.models import Workflow

TEMPLATE = "workflows/thresholds.html"


@dataclass(frozen=True)
class Scope:
    """Whose values: one school's own, or the district's."""

    district: District
    school: School | None = None

    @property
    def value(self) -> str:
        return f"school-{self.school.pk}" if self.school else f"district-{self.district.pk}"

    @property
    def label(self) -> str:
        return self.school.name if self.school else f"{self.district.name} (whole district)"


def _scopes(user: Any) -> list[Scope]:
    """The scopes the user may change thresholds for, district before its schools."""
    found = []
    districts = list(visible_districts(user))
    for district in districts:
        if thresholds.may_edit(user, district, None):
            found.append(Scope(district))
        found += [Scope(district, s) for s in district.schools.order_by("name")]
    others = visible_schools(user).exclude(district__in=districts).order_by("name")
    found += [Scope(s.district, s) for s in others if thresholds.may_edit(user, s.district, s)]
    return found


def _get_scope_for_user(user: Any, data: Any) -> tuple[Scope, list[Scope]]:
    """The scope named by `scope=school-ID|district-ID` (or `school=ID` / `district=ID`), else
    the user's first; PermissionDenied for one the user may not change."""
    scopes = _scopes(user)
    if not scopes:
        raise PermissionDenied(
            "Thresholds are changed by the teachers of a school and by district staff."
        )
    wanted = data.get("scope") or (
        f"school-{data['school']}"
        if data.get("school")
        else f"district-{data['district']}"
        if data.get("district")
        else ""
    )
    if not wanted:
        return scopes[0], scopes
    scope = next((s for s in scopes if s.value == wanted), None)
    if scope is None:
        raise PermissionDenied("You may not change thresholds there.")
    return scope, scopes


@dataclass
class Row:
    """One threshold as the form shows it."""

    t: thresholds.Threshold
    id: str
    value: str
    district_value: str
    default: str
    error: str = ""

    @property
    def described_by(self) -> str:
        ids = [f"{self.id}-help", f"{self.id}-range"]
        if not self.t.editable:
            ids.append(f"{self.id}-readonly")
        if self.error:
            ids.append(f"{self.id}-error")
        return " ".join(ids)


@dataclass
class Item:
    """One workflow's form."""

    workflow: Workflow
    version_number: int
    rows: list[Row]
    editable: bool
    recent: Any
    errors: list[str] = field(default_factory=list)  # the ones that name no field
    failed: bool = False
    saved: str = ""


def _items(
    user: Any,
    scope: Scope,
    only: Workflow | None = None,
    entered: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    saved: str = "",
) -> list[Item]:
    items = []
    for wt in thresholds.for_scope(user, scope.district, scope.school):
        if only is not None and wt.workflow.pk != only.pk:
            continue
        mine = only is not None
        rows = []
        for t in wt.thresholds:
            shown = thresholds.fmt(t.value)
            if mine and entered is not None and t.key in entered and t.editable:
                shown = entered[t.key]
            rows.append(
                Row(
                    t=t,
                    id=f"t{wt.workflow.pk}-{t.node}-{t.name}",
                    value=shown,
                    district_value=thresholds.fmt(t.district_value),
                    default=thresholds.fmt(t.default),
                    error=(errors or {}).get(t.key, "") if mine else "",
                )
            )
        keys = {t.key for t in wt.thresholds}
        items.append(
            Item(
                workflow=wt.workflow,
                version_number=wt.version.number,
                rows=rows,
                editable=wt.editable,
                recent=thresholds.recent_changes(scope.district, scope.school, wt.workflow),
                errors=[m for k, m in (errors or {}).items() if k not in keys] if mine else [],
                failed=bool(errors) and mine,
                saved=saved if mine else "",
            )
        )
    return items


def _save(
    request: HttpRequest, scope: Scope, workflow: Workflow
) -> tuple[str, dict[str, str], int]:
    """Apply the posted form: the success message, or the errors per key; and the status."""
    changes = {k: v for k, v in request.POST.items() if "." in k}
    try:
        base = int(request.POST.get("version", ""))
    except ValueError:
        base = None
    try:
        new, done = thresholds.apply_changes(
            workflow,
            request.user,
            scope.school,
            changes,
            reason=request.POST.get("reason", "").strip(),
            base_version=base,
        )
    except thresholds.StaleForm as exc:
        return "", exc.errors, 409
    except thresholds.ThresholdError as exc:
        return "", exc.errors, 400
    if not done:
        return "Nothing changed: the values are the ones already in force.", {}, 200
    listed = "; ".join(f"{c.label}: {c.describe()}" for c in done)
    return f"Saved for {scope.label}: {listed}. {workflow} is now version {new.number}.", {}, 200


@login_required
def thresholds_page(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else request.GET
    scope, scopes = _get_scope_for_user(request.user, data)
    context: dict[str, Any] = {"scope": scope, "scopes": scopes}
    if request.method != "POST":
        return TemplateResponse(
            request, TEMPLATE, {**context, "items": _items(request.user, scope)}
        )

    workflow = get_object_or_404(
        Workflow, pk=posted_id(request.POST.get("workflow")), district=scope.district
    )
    saved, errors, status = _save(request, scope, workflow)
    if saved and not request.htmx:
        messages.success(request, saved)
        return redirect(f"{request.path}?scope={scope.value}#workflow-{workflow.pk}")
    # what was typed is shown again with its error; a stale form shows the values now in force
    entered = {k: v for k, v in request.POST.items() if "." in k} if status == 400 else None
    items = _items(request.user, scope, workflow, entered, errors, saved)
    if not items:
        raise Http404(f"{workflow} has no thresholds to change.")
    # Always the whole page (menu, stylesheet, title): htmx picks this workflow's section out of
    # it (hx-select), and whatever shows the answer on its own still shows a complete page.
    full = _items(request.user, scope)
    full = [items[0] if i.workflow.pk == workflow.pk else i for i in full]
    response = TemplateResponse(
        request, TEMPLATE, {**context, "items": full, "focus": bool(request.htmx)}, status=status
    )
    response["Vary"] = "HX-Request"
    return response


@login_required
def thresholds_replay(request: HttpRequest) -> HttpResponse:
    """htmx: what the value typed in one threshold's box would have raised over the last term
    (`?scope=&workflow=&key=node.field&<node.field>=value`); the answer is one small panel."""
    scope, _ = _get_scope_for_user(request.user, request.GET)
    workflow = get_object_or_404(
        Workflow, pk=posted_id(request.GET.get("workflow")), district=scope.district
    )
    key = request.GET.get("key", "")
    context: dict[str, Any] = {"scope": scope, "key": key}
    try:
        threshold, value, result = thresholds.replay(
            workflow, scope.school, key, request.GET.get(key, ""), request.user
        )
    except thresholds.ThresholdError as exc:
        context["error"] = " ".join(exc.errors.values())
        return TemplateResponse(request, REPLAY_TEMPLATE, context, status=400)
    context.update(threshold=threshold, value=thresholds.fmt(value), replay=result)
    context["in_force"] = thresholds.fmt(threshold.value)
    return TemplateResponse(request, REPLAY_TEMPLATE, context)


REPLAY_TEMPLATE = "workflows/thresholds.html#replay"


# --- API -------------------------------------------------------------------------------------
SCOPE = re.compile(r"^(school|district)-([0-9]{1,18})$")


class ThresholdsQuery(serializers.Serializer):
    scope = serializers.RegexField(
        SCOPE.pattern, required=False, help_text="school-ID or district-ID."
    )
    school = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="A school's own values."
    )
    district = serializers.IntegerField(
        required=False, min_value=1, max_value=ID_MAX, help_text="The district's values."
    )


class ThresholdsIn(serializers.Serializer):
    workflow = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="The version the form was made from: 409 when there is a newer one.",
    )
    changes = serializers.DictField(
        child=serializers.JSONField(), help_text='{"node.field": value} per threshold changed.'
    )
    reason = serializers.CharField(max_length=2000, allow_blank=True, default="")


class ThresholdOut(serializers.Serializer):
    key = serializers.CharField()
    node = serializers.CharField()
    node_label = serializers.CharField()
    field = serializers.CharField()
    label = serializers.CharField()
    help = serializers.CharField(allow_blank=True)
    unit = serializers.CharField(allow_blank=True)
    scope = serializers.CharField()
    allowed = serializers.CharField()
    minimum = serializers.FloatField(allow_null=True)
    maximum = serializers.FloatField(allow_null=True)
    exclusive_minimum = serializers.BooleanField()
    exclusive_maximum = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    district_value = serializers.JSONField(allow_null=True)
    school_value = serializers.JSONField(allow_null=True)
    value = serializers.JSONField(allow_null=True)
    editable = serializers.BooleanField()
    who = serializers.CharField(help_text="Who may change it, in words.")
    replayable = serializers.BooleanField(
        help_text="GET /api/thresholds/replay/ can show what a value would have raised."
    )


class WorkflowThresholdsOut(serializers.Serializer):
    workflow = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    thresholds = ThresholdOut(many=True)


class ThresholdsOut(serializers.Serializer):
    district = serializers.IntegerField()
    school = serializers.IntegerField(allow_null=True)
    workflows = WorkflowThresholdsOut(many=True)


class ChangeOut(serializers.Serializer):
    node = serializers.CharField()
    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class ChangedOut(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True, help_text="null when nothing changed.")
    changes = ChangeOut(many=True)


class ReplayQuery(ThresholdsQuery):
    workflow = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    key = serializers.CharField(max_length=200, help_text="The threshold: node.field.")
    value = serializers.CharField(max_length=50, help_text="The value to try.")


class ReplayedAlertOut(serializers.Serializer):
    school = serializers.CharField()
    week = serializers.DateField(help_text="The Monday of the week.")
    feature = serializers.CharField()
    psi = serializers.FloatField()
    js = serializers.FloatField()
    rule = serializers.CharField(help_text="The rule that decided, in words.")


class ReplayOut(serializers.Serializer):
    workflow = serializers.IntegerField()
    key = serializers.CharField()
    value = serializers.FloatField()
    in_force = serializers.FloatField(help_text="The value in force now for this scope.")
    period = serializers.CharField(help_text="The last term, in words, with its dates.")
    start = serializers.DateField()
    end = serializers.DateField()
    weeks = serializers.IntegerField()
    checked = serializers.IntegerField(help_text="School-weeks with enough predictions.")
    insufficient = serializers.IntegerField(help_text="School-weeks with too few.")
    alerts = serializers.IntegerField(help_text="How many alerts the value would have raised.")
    raised = ReplayedAlertOut(many=True)


@extend_schema(parameters=[ReplayQuery], responses={200: ReplayOut})
@api_view(["GET"])
def api_thresholds_replay(request: Request) -> Response:
    """How many drift alerts (and which: school, week, feature, value) a drift monitor's
    threshold set to `value` would have raised over the last term, from the stored daily
    aggregates, against each school's training data. Nothing is saved. 400 naming `key` or
    `value` for a threshold no replay covers or a value out of range."""
    query = parse(ReplayQuery, request.query_params)
    scope = _api_scope(request.user, query)
    workflow = Workflow.objects.filter(pk=query["workflow"], district=scope.district).first()
    if workflow is None:
        raise ValidationError(
            {"workflow": [f"There is no workflow {query['workflow']} in {scope.label}."]}
        )
    try:
        threshold, value, result = thresholds.replay(
            workflow, scope.school, query["key"], query["value"], request.user
        )
    except thresholds.ThresholdError as exc:
        raise ValidationError({k or "key": [m] for k, m in exc.errors.items()}) from None
    return Response(
        {
            "workflow": workflow.pk,
            "key": threshold.key,
            "value": value,
            "in_force": threshold.value,
            **result.as_dict(),
        }
    )


def _as_dict(wt: thresholds.WorkflowThresholds) -> dict[str, Any]:
    return {
        "workflow": wt.workflow.pk,
        "name": wt.workflow.name,
        "version": wt.version.number,
        "thresholds": [
            {
                "key": t.key,
                "node": t.node,
                "node_label": t.node_label,
                "field": t.name,
                "label": t.label,
                "help": t.help,
                "unit": t.unit,
                "scope": t.scope,
                "allowed": t.range_text,
                "minimum": t.bounds.minimum,
                "maximum": t.bounds.maximum,
                "exclusive_minimum": t.bounds.exclusive_minimum,
                "exclusive_maximum": t.bounds.exclusive_maximum,
                "default": t.default,
                "district_value": t.district_value,
                "school_value": t.school_value,
                "value": t.value,
                "editable": t.editable,
                "who": t.who,
                "replayable": t.replayable,
            }
            for t in wt.thresholds
        ],
    }


def _api_scope(user: Any, query: dict[str, Any]) -> Scope:
    """The scope of an API call: a school or district the user does not see is a 400 naming
    the parameter, as for an unknown id; one they see but may not change is a 403."""
    wanted = {}
    if "scope" in query:
        kind, pk = SCOPE.match(query["scope"]).groups()  # type: ignore[union-attr]
        wanted = {"field": "scope", kind: int(pk)}
    elif "school" in query:
        wanted = {"field": "school", "school": query["school"]}
    elif "district" in query:
        wanted = {"field": "district", "district": query["district"]}
    if "school" in wanted and not visible_schools(user).filter(pk=wanted["school"]).exists():
        raise ValidationError(
            {wanted["field"]: [f"There is no school {wanted['school']} you see."]}
        )
    if "district" in wanted and not seen_districts(user).filter(pk=wanted["district"]).exists():
        raise ValidationError(
            {wanted["field"]: [f"There is no district {wanted['district']} you see."]}
        )
    data = {k: v for k, v in wanted.items() if k in ("school", "district")}
    return _get_scope_for_user(user, data)[0]


@extend_schema(methods=["GET"], parameters=[ThresholdsQuery], responses={200: ThresholdsOut})
@extend_schema(
    methods=["POST"],
    parameters=[ThresholdsQuery],
    request=ThresholdsIn,
    responses={200: ChangedOut, **errors(409)},
)
@api_view(["GET", "POST"])
def api_thresholds(request: Request) -> Response:
    """GET: the thresholds of each workflow for `?school=ID` (its own values) or `?district=ID`.
    POST `{"workflow": id, "version": n, "changes": {"node.field": value}, "reason": ""}`:
    a new version and an audit record per changed value; 400 with an `errors` entry per key
    (`changes.<node.field>`), or 409 when the workflow has a newer version than `version`."""
    scope = _api_scope(request.user, parse(ThresholdsQuery, request.query_params))
    if request.method == "POST":
        body = parse(ThresholdsIn, request.data)
        workflow = Workflow.objects.filter(pk=body["workflow"], district=scope.district).first()
        if workflow is None:
            raise ValidationError(
                {"workflow": [f"There is no workflow {body['workflow']} in {scope.label}."]}
            )
        try:
            new, done = thresholds.apply_changes(
                workflow,
                request.user,
                scope.school,
                body["changes"],
                reason=body["reason"],
                base_version=body.get("version"),
            )
        except thresholds.StaleForm as exc:
            return api_error({"changes": exc.errors}, "conflict", status.HTTP_409_CONFLICT)
        except thresholds.ThresholdError as exc:
            raise ValidationError({"changes": exc.errors}) from None
        return Response(
            {
                "version": new.number if new else None,
                "changes": [
                    {"node": c.node, "field": c.name, "old": c.old, "new": c.new} for c in done
                ],
            }
        )
    found = thresholds.for_scope(request.user, scope.district, scope.school)
    return Response(
        {
            "district": scope.district.pk,
            "school": scope.school.pk if scope.school else None,
            "workflows": [_as_dict(wt) for wt in found],
        }
    )
