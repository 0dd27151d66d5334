"""The template gallery: the page (cards with a "Use this template" form) and its API.

Anyone signed in may read the templates; making a workflow from one needs Action.MANAGE on the
district (admins / ML leads). The work itself is `workflows.gallery.use`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from edumlops.core.api import parse
from edumlops.datasets.models import DatasetVersion
from edumlops.schools.models import District, School
from edumlops.schools.permissions import Action, can, visible_districts
from workflows.api import ID_MAX, seen_districts
from workflows.gallery import TEMPLATES, ChoiceError, Template, missing_roles, use
from workflows.models import WorkflowVersion


def _manageable(user: Any) -> list[District]:
    return [d for d in visible_districts(user) if can(user, Action.MANAGE, d)]


def _get_template(key: str) -> Template:
    template = TEMPLATES.get(key)
    if template is None:
        raise Http404(f"There is no template '{key}' (templates: {', '.join(TEMPLATES)}).")
    return template


def _district_for(user: Any, raw: Any) -> District:
    """The district to make the workflow in: the one named, or the only one the user manages.
    One the user does not see is answered like an unknown id."""
    districts = _manageable(user)
    if not districts:
        raise PermissionDenied("Only admins (ML leads) make workflows from templates.")
    if raw in (None, ""):
        if len(districts) == 1:
            return districts[0]
        listed = ", ".join(f"{d.pk} ({d.name})" for d in districts)
        raise ChoiceError("district", f"You manage several districts: name one of {listed}.")
    district = None
    if str(raw).isdigit() and int(raw) <= ID_MAX:
        district = seen_districts(user).filter(pk=int(raw)).first()
    if district is None:
        raise ChoiceError("district", f"There is no district {raw}: use a district's id.")
    if district not in districts:
        raise PermissionDenied("Only admins (ML leads) make workflows from templates.")
    return district


def _created(version: WorkflowVersion) -> dict[str, Any]:
    return {
        "id": version.workflow_id,
        "version": version.number,
        "draft": version.draft,
        "errors": version.errors,
        "url": reverse("workflow-edit", args=[version.workflow_id]),
    }


NEEDS = {
    "label": "a label (or an outcome defined from a column)",
    "sensitive": "sensitive attributes",
    "school": "a school column",
}


# --- the page ---------------------------------------------------------------------------------
def _form_choices(template: Template, post: QueryDict) -> dict[str, Any]:
    """The form's strings as choices; a blank field is left out (its default, or a draft)."""
    data: dict[str, Any] = {}
    for spec in template.choice_fields():
        name = spec["name"]
        if spec["widget"] == "schools":
            data[name] = [v for v in post.getlist(name) if v.strip()]
        elif post.get(name, "").strip():
            data[name] = post[name].strip()
    return data


def _fields(
    template: Template,
    versions: list[DatasetVersion],
    schools: list[School],
    several: bool,
    posted: QueryDict | None,
) -> list[dict[str, Any]]:
    """The template's choices with what the form needs: options and the current values."""
    fields = []
    for spec in template.choice_fields():
        name = spec["name"]
        field = {**spec, "id": f"{template.key}-{name}"}
        if spec["widget"] == "dataset_version":
            field["options"] = [
                (
                    str(v.pk),
                    f"{v} — {v.rows} rows"
                    + (f", label {v.role_set.label}" if v.role_set.label else "")
                    + (f" ({v.district.name})" if several else ""),
                )
                for v in versions
                if not missing_roles(v, spec["needs"])
            ]
            field["needs_text"] = " and ".join(NEEDS[n] for n in spec["needs"])
        if spec["widget"] == "schools":
            field["options"] = [
                (
                    s.code,
                    f"{s.name} ({s.size_band}, {s.locality})"
                    + (f" — {s.district.name}" if several else ""),
                )
                for s in schools
            ]
        if posted is not None:
            field["value"] = posted.get(name, "")
            field["selected"] = posted.getlist(name)
        elif spec["widget"] == "dataset_version" and field["options"]:
            field["value"] = field["options"][0][0]  # the newest version that fits
            field["selected"] = []
        else:
            field["value"] = "" if spec["default"] is None else str(spec["default"])
            field["selected"] = []
        fields.append(field)
    return fields


def _draft_message(name: str, version: WorkflowVersion) -> str:
    gaps = sum(1 for e in version.errors if e["code"] == "missing_block")
    other = len(version.errors) - gaps
    if not gaps:
        return (
            f"“{name}” was saved as a draft: fill in the {other} thing(s) marked on the canvas, "
            "then save it to run it."
        )
    return (
        f"“{name}” was saved as a draft that cannot run: it needs {gaps} block(s) that do not "
        "exist yet (the MISSING BLOCK notes on the canvas say what they would do)."
        + (f" {other} other problem(s) are marked on the canvas." if other else "")
    )


@login_required
def gallery(request: HttpRequest) -> HttpResponse:
    districts = _manageable(request.user)
    failed: dict[str, Any] = {}
    code = 200
    if request.method == "POST":
        template = _get_template(request.POST.get("template", ""))
        name = request.POST.get("name", "")
        try:
            district = _district_for(request.user, request.POST.get("district"))
            version = use(
                template,
                district=district,
                user=request.user,
                name=name,
                choices=_form_choices(template, request.POST),
            )
        except ChoiceError as exc:
            failed = {"key": template.key, "field": exc.field, "message": exc.message}
            code = 400
        else:
            if version.draft:
                messages.warning(request, _draft_message(name.strip(), version))
            else:
                messages.success(
                    request, f"“{name.strip()}” is ready to run: it starts {template.starts}."
                )
            return redirect("workflow-edit", pk=version.workflow_id)
    versions = list(
        DatasetVersion.objects.filter(district__in=districts)
        .select_related("dataset", "district")
        .order_by("-created_at", "-pk")
    )
    schools = list(School.objects.filter(district__in=districts).select_related("district"))
    several = len(districts) > 1
    cards = []
    for template in TEMPLATES.values():
        posted = request.POST if failed.get("key") == template.key else None
        cards.append(
            {
                "t": template,
                "steps": template.preview(),
                "fields": _fields(template, versions, schools, several, posted),
                "name": posted.get("name", "") if posted else template.title,
                "district": posted.get("district", "") if posted else "",
                "error": failed if posted else None,
            }
        )
    return TemplateResponse(
        request,
        "workflows/gallery.html",
        {"cards": cards, "districts": districts, "may_use": bool(districts)},
        status=code,
    )


# --- the API ----------------------------------------------------------------------------------
class UseIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    district = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=ID_MAX,
        help_text="The district's id (optional when you manage only one).",
    )
    choices = serializers.DictField(
        required=False,
        default=dict,
        help_text="The template's choices by name (GET /api/templates/ lists them); a choice "
        "needed to run may be left out: the workflow is then saved as a draft.",
    )


class TemplateUsedOut(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    draft = serializers.BooleanField()
    errors = serializers.ListField(
        child=serializers.DictField(), help_text="A draft's validation errors (node, port…)."
    )
    url = serializers.CharField()


class TemplateOut(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    summary = serializers.CharField()
    source = serializers.DictField(allow_null=True)
    why = serializers.CharField()
    available = serializers.BooleanField()
    starts = serializers.CharField()
    blocks = serializers.ListField(child=serializers.JSONField())
    steps = serializers.ListField(child=serializers.DictField())
    missing = serializers.ListField(child=serializers.DictField())
    choices = serializers.ListField(child=serializers.DictField())
    graph = serializers.DictField(help_text="The graph with the default choices.")


@extend_schema(responses={200: TemplateOut(many=True)})
@api_view(["GET"])
def api_templates(request: Request) -> Response:
    """Every template: its card, steps, missing blocks, choices, and its graph with the default
    choices."""
    return Response([{**t.as_dict(), "graph": t.build()} for t in TEMPLATES.values()])


@extend_schema(request=UseIn, responses={201: TemplateUsedOut})
@api_view(["POST"])
def api_use_template(request: Request, key: str) -> Response:
    """Make a workflow from a template (admins); 400 names the choice at fault (as
    `choices.<name>`), 403 for a role that may not."""
    template = _get_template(key)
    if not _manageable(request.user):
        raise PermissionDenied("Only admins (ML leads) make workflows from templates.")
    data = parse(UseIn, request.data)
    try:
        district = _district_for(request.user, data.get("district"))
        version = use(
            template,
            district=district,
            user=request.user,
            name=data["name"],
            choices=data["choices"],
        )
    except ChoiceError as exc:
        if exc.field in ("name", "district"):
            raise ValidationError({exc.field: [exc.message]}) from None
        raise ValidationError({"choices": {exc.field: [exc.message]}}) from None
    return Response(_created(version), status=status.HTTP_201_CREATED)
