"""Dataset pages: the list with the upload form, and a version's profile with its roles form."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from edumlops.core.charts import column_chart
from edumlops.datasets.models import Dataset, DatasetVersion, ingest, limits
from edumlops.ml.datasets import DatasetError, Roles
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


@login_required
def version_profile(request: HttpRequest, pk: int) -> HttpResponse:
    version = _get_version_for_user(request, pk)
    may_edit = can(request.user, Action.MANAGE_DATA, version)
    error, code = "", 200
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied("You may not change this dataset's roles.")
        roles = Roles(
            label=request.POST.get("label") or None,
            positive=request.POST.getlist("positive"),
            sensitive=request.POST.getlist("sensitive"),
            school=request.POST.get("school") or None,
            grade=request.POST.get("grade") or None,
            time=request.POST.get("time") or None,
        )
        try:
            version.set_roles(roles)
        except DatasetError as exc:
            error, code = str(exc), 400
        else:
            messages.success(request, "Roles saved.")
            return redirect("dataset-version", pk=version.pk)
    roles = version.role_set
    label = request.GET.get("label", roles.label or "")
    columns = [{**c, "chart": column_chart(c)} for c in version.schema]
    label_column = next((c for c in version.schema if c["name"] == label), None)
    label_values = [t["value"] for t in (label_column or {}).get("stats", {}).get("top", [])]
    return TemplateResponse(
        request,
        "datasets/profile.html",
        {
            "version": version,
            "dataset": version.dataset,
            "columns": columns,
            "roles": roles,
            "label": label,
            "label_values": [v for v in label_values if v != "(other)"],
            "may_edit": may_edit,
            "error": error,
            "models": version.models.order_by("-created_at")[:10],
        },
        status=code,
    )
