"""The audit page: district staff filter the trail and export it as CSV."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse

from edumlops.audit.models import AuditRecord
from edumlops.core.exports import csv_response
from edumlops.schools.permissions import Action, can, visible_districts

CSV_COLUMNS = (
    "id",
    "created_at",
    "district",
    "actor",
    "action",
    "target_type",
    "target_id",
    "target",
    "before",
    "after",
    "reason",
    "hash",
    "prev_hash",
)


@dataclass(frozen=True)
class Change:
    """One field of an audit record as a person reads it: field: old → new."""

    field: str
    old: str
    new: str


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted field names ({"a": {"b": 1}} → {"a.b": 1})."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if prefix:
        return {prefix: value}
    return {} if value in ({}, None, "") else {"value": value}


def _words(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value) or "none"
    return json.dumps(value, sort_keys=True, default=str)


def changes(before: Any, after: Any) -> list[Change]:
    """The fields of `before` and `after` that differ (or are only on one side), in order."""
    old, new = _flat(before), _flat(after)
    fields = list(dict.fromkeys([*old, *new]))
    return [
        Change(f, _words(old.get(f)), _words(new.get(f)))
        for f in fields
        if f not in old or f not in new or old[f] != new[f]
    ]


def _districts(request: HttpRequest) -> list:
    return [d for d in visible_districts(request.user) if can(request.user, Action.VIEW_AUDIT, d)]


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def filtered(request: HttpRequest) -> tuple[QuerySet[AuditRecord], dict[str, str], list[str]]:
    districts = _districts(request)
    if not districts:
        raise PermissionDenied("The audit trail is for district staff and administrators.")
    records = AuditRecord.objects.filter(district__in=districts).select_related("district")
    f = {k: request.GET.get(k, "").strip() for k in ("action", "actor", "target", "from", "to")}
    errors = []
    if f["action"]:
        records = records.filter(action=f["action"])
    if f["actor"]:
        records = records.filter(actor_name__icontains=f["actor"])
    if f["target"]:
        records = records.filter(target_label__icontains=f["target"])
    for key, lookup in (("from", "created_at__date__gte"), ("to", "created_at__date__lte")):
        if f[key]:
            day = _parse_date(f[key])
            if day is None:
                errors.append(f"'{f[key]}' is not a date: use YYYY-MM-DD.")
            else:
                records = records.filter(**{lookup: day})
    return records.order_by("-id"), f, errors


@login_required
def audit_page(request: HttpRequest) -> HttpResponse:
    records, f, errors = filtered(request)
    if request.GET.get("export") == "csv":
        return _csv(records)
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    for r in page:
        r.changes = changes(r.before, r.after)
    query = "&".join(f"{k}={v}" for k, v in f.items() if v)
    return TemplateResponse(
        request,
        "audit/list.html",
        {
            "page": page,
            "filters": f,
            "errors": errors,
            "actions": AuditRecord.Action.choices,
            "query": query,
        },
    )


def _csv(records: QuerySet[AuditRecord]) -> StreamingHttpResponse:
    rows = (
        [
            r.id,
            r.created_at.isoformat(),
            r.district.slug if r.district else "",
            r.actor_name,
            r.action,
            r.target_type,
            r.target_id,
            r.target_label,
            json.dumps(r.before, sort_keys=True),
            json.dumps(r.after, sort_keys=True),
            r.reason,
            r.hash,
            r.prev_hash,
        ]
        for r in records.iterator(chunk_size=1000)
    )
    # every text cell a spreadsheet would run as a formula is quoted (docs/security.md, Exports)
    return csv_response(CSV_COLUMNS, rows, "audit.csv")
