"""Dataset pages: the list with the upload form, and a version's profile with its roles form."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.core.charts import column_chart
from edumlops.datasets.models import Dataset, DatasetVersion, ingest, limits
from edumlops.ml.datasets import OUTCOME_NO, OUTCOME_YES, DatasetError
from edumlops.schools.permissions import Action, can, visible_districts


def _get_version_for_user(request: HttpRequest, pk: int) -> DatasetVersion:
    return get_object_or_404(
        DatasetVersion.objects.select_related("dataset", "district").filter(
            district__in=visible_districts(request.user)
        ),
        pk=pk,
    )


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    districts = list(visible_districts(request.user))
    uploadable = [d for d in districts if can(request.user, Action.MANAGE_DATA, d)]
    error, code = "", 200
    if request.method == "POST":
        district = next(
            (d for d in uploadable if str(d.pk) == request.POST.get("district")),
            uploadable[0] if len(uploadable) == 1 else None,
        )
        if district is None:
            raise PermissionDenied("You may not upload datasets here.")
        upload = request.FILES.get("file")
        try:
            if upload is None:
                raise DatasetError("Choose a CSV file to upload.")
            if upload.size > limits().max_bytes:
                raise DatasetError(
                    f"The file is {upload.size / 2**20:.1f} MB; the limit is "
                    f"{limits().max_bytes / 2**20:.0f} MB. Upload a smaller extract."
                )
            name = request.POST.get("name", "").strip() or upload.name.rsplit(".", 1)[0]
            version, created = ingest(
                district=district,
                name=name,
                data=upload.read(),
                user=request.user,
                original_name=upload.name,
            )
        except DatasetError as exc:
            error, code = str(exc), 400
        else:
            if created:
                messages.success(request, f"Uploaded {version}: mark its label and roles below.")
            else:
                messages.info(request, f"This file is already stored as {version}.")
            return redirect("dataset-version", pk=version.pk)
    datasets = (
        Dataset.objects.filter(district__in=districts)
        .select_related("district")
        .prefetch_related("versions")
    )
    return TemplateResponse(
        request,
        "datasets/list.html",
        {
            "datasets": datasets,
            "uploadable": uploadable,
            "error": error,
            "max_mb": limits().max_bytes // 2**20,
        },
        status=code,
    )


OP_WORDS = {
    "<": "is below",
    "<=": "is at most",
    ">": "is above",
    ">=": "is at least",
    "==": "equals",
    "between": "is between (both included)",
    "in": "is one of (categories, separated by commas)",
}
FIELD_WORDS = {
    "outcome.name": "Name",
    "outcome.column": "Column",
    "outcome.op": "Rule",
    "outcome.value": "Value",
    "outcome.keep_leaky": "Columns kept",
}


def _outcome_from_post(post: Any) -> dict[str, Any]:
    """The rule the outcome form sends, in the API's shape."""
    op = post.get("op", "")
    value: Any = post.get("value", "").strip()
    if op == "between":
        value = [value, post.get("value_hi", "").strip()]
    elif op == "in":
        value = [v.strip() for v in value.split(",") if v.strip()]
    return {
        "name": post.get("name", "").strip(),
        "column": post.get("column", ""),
        "op": op,
        "value": value,
        "keep_leaky": post.getlist("keep_leaky"),
    }


@login_required
def version_profile(request: HttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk)
    may_edit = can(request.user, Action.MANAGE_DATA, version)
    error, outcome_error, code = "", "", 200
    posted: dict[str, Any] = {}
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("You may not change this dataset's roles.")
        if request.POST.get("form") == "outcome":
            remove = "remove" in request.POST
            posted = {} if remove else _outcome_from_post(request.POST)
            changes = {"outcome": None if remove else posted}
            done = "Outcome rule removed." if remove else "Outcome defined: it is now the label."
        else:
            changes = {
                "label": request.POST.get("label") or None,
                "positive": request.POST.getlist("positive"),
                "sensitive": request.POST.getlist("sensitive"),
                "school": request.POST.get("school") or None,
                "grade": request.POST.get("grade") or None,
                "time": request.POST.get("time") or None,
            }
            done = "Roles saved."
        try:
            version.change_roles(changes, request.user)
        except DatasetError as exc:
            code = 400
            if exc.field.startswith("outcome"):
                outcome_error = f"{FIELD_WORDS.get(exc.field, 'Outcome')}: {exc}"
            else:
                error = str(exc)
        else:
            messages.success(request, done)
            return redirect("dataset-version", pk=version.pk)
    roles = version.role_set
    outcome = roles.outcome
    label = request.GET.get("label", roles.label or "")
    columns = [{**c, "chart": column_chart(c)} for c in version.schema]
    if outcome is not None and label == outcome.name:
        label_values = [OUTCOME_YES, OUTCOME_NO]
    else:
        label_column = next((c for c in version.schema if c["name"] == label), None)
        label_values = [t["value"] for t in (label_column or {}).get("stats", {}).get("top", [])]
    why_excluded = {e["column"]: e["why"] for e in outcome.excluded} if outcome else {}
    form = posted or (outcome.definition() if outcome else {})
    value = form.get("value")
    return TemplateResponse(
        request,
        "datasets/profile.html",
        {
            "version": version,
            "dataset": version.dataset,
            "columns": [{**c, "excluded": why_excluded.get(c["name"], "")} for c in columns],
            "roles": roles,
            "outcome": outcome,
            "label": label,
            "label_values": [v for v in label_values if v != "(other)"],
            "may_edit": may_edit,
            "error": error,
            "outcome_error": outcome_error,
            "outcome_form": {
                **form,
                "value_text": ", ".join(map(_plain, value))
                if isinstance(value, list) and form.get("op") != "between"
                else _plain(value[0] if isinstance(value, list) and value else value),
                "value_hi": _plain(value[1])
                if isinstance(value, list) and len(value) > 1 and form.get("op") == "between"
                else "",
            },
            "rule_columns": [c for c in columns if c["kind"] in RULE_KINDS],
            "ops": OP_WORDS,
            "models": version.models.order_by("-created_at")[:10],
        },
        status=code,
    )


RULE_KINDS = ("numeric", "categorical", "boolean")


def _plain(value: Any) -> str:
    """A value as the form shows it: 10, not 10.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
