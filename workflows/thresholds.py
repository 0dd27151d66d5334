"""Thresholds people change without opening the canvas.

A block marks a parameter ``{"threshold": "school"}`` (teachers may give their school its own
value, kept in the block's ``school_thresholds``) or ``{"threshold": "district"}`` (one value for
the district, changed by district staff). This module lists them for the runnable version of each
workflow of a district, and applies a set of changes: it checks each value against the bounds of
the parameter's JSON Schema, saves a new workflow version and writes one audit record per changed
value, all in one transaction — all of it or none of it.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet

from edumlops.audit import models as audit
from edumlops.monitoring.charts import Rule
from edumlops.monitoring.checks import DriftParams
from edumlops.monitoring.replay import Replay, replay_drift
from edumlops.schools.models import District, School
from edumlops.schools.permissions import Action, can, require
from workflows.blocks import REGISTRY
from workflows.compiler import validate
from workflows.forms import Bounds, FormField, Number, fmt
from workflows.models import Workflow, WorkflowVersion


class ThresholdError(Exception):
    """Values that cannot be saved: a message per form key ("node.field"; "" for the form)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


class StaleForm(ThresholdError):
    """The workflow got a new version after the form was shown."""


@dataclass
class Threshold:
    """One threshold parameter of one node, as it stands for one scope."""

    node: str
    node_label: str
    name: str
    label: str
    help: str
    unit: str
    scope: str  # "school": a school may have its own value; "district": one for the district
    bounds: Bounds
    default: Number
    district_value: Number
    school_value: Number | None = None  # the school's own value (when a school is chosen)
    overrides: dict[str, Number] = field(default_factory=dict)  # school code → its own value
    editable: bool = False
    replayable: bool = False  # a replay over the last term can show what a value would raise

    @property
    def key(self) -> str:
        return f"{self.node}.{self.name}"

    @property
    def value(self) -> Number:
        return self.district_value if self.school_value is None else self.school_value

    @property
    def who(self) -> str:
        """Who may change it, in words."""
        if self.scope == "school":
            return (
                "District staff set the district's value; the teachers of a school may give "
                "their school its own."
            )
        return "District staff, one value for the whole district."

    @property
    def range_text(self) -> str:
        kind = "a whole number" if self.bounds.integer else "a number"
        return f"{kind} {self.bounds.text()}"

    def parse(self, raw: Any) -> Number | None:
        """The posted value as a number (None for an empty box), or ValueError naming the field
        and its allowed range."""
        where = f"{self.label} ({self.name})"
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(f"{where}: {raw!r} is not a number. Enter {self.range_text}.")
        try:
            value = float(raw.strip()) if isinstance(raw, str) else float(raw)
        except ValueError:
            raise ValueError(
                f"{where}: “{raw}” is not a number. Enter {self.range_text}."
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: “{raw}” is not a number. Enter {self.range_text}.")
        if self.bounds.integer:
            if not value.is_integer():
                raise ValueError(
                    f"{where}: {fmt(value)} is not a whole number. Enter {self.range_text}."
                )
            value = int(value)
        if not self.bounds.admits(value):
            unit = f" {self.unit}" if self.unit else ""
            raise ValueError(
                f"{where}: {fmt(value)}{unit} is out of range. Enter {self.range_text}."
            )
        return value


@dataclass
class WorkflowThresholds:
    workflow: Workflow
    version: WorkflowVersion
    thresholds: list[Threshold]

    @property
    def editable(self) -> bool:
        return any(t.editable for t in self.thresholds)


@dataclass(frozen=True)
class Change:
    """One value changed: the values in force before and after, and whether each was the
    school's own (False: the district's value applied)."""

    node: str
    name: str
    label: str
    old: Number
    new: Number
    old_own: bool = False
    new_own: bool = False

    def describe(self) -> str:
        back = " (the district value)" if self.old_own and not self.new_own else ""
        return f"{self.name} {fmt(self.old)} → {fmt(self.new)}{back}"


def may_edit(user: Any, district: District, school: School | None) -> bool:
    return can(user, Action.EDIT_THRESHOLDS, school or district)


def thresholds_of(version: WorkflowVersion, school: School | None, may: bool) -> list[Threshold]:
    """The threshold parameters of a version's nodes, with their values for this scope."""
    found = []
    for node in version.graph.get("nodes", []):
        block = REGISTRY.get((node.get("kind"), node.get("version", 1)))
        if block is None:
            continue
        properties = block.params_schema().get("properties", {})
        marked = {
            k: p for k, p in properties.items() if p.get("threshold") in ("school", "district")
        }
        if not marked:
            continue
        params = block.Params.model_validate_json(json.dumps(node.get("params", {})))
        per_school: dict[str, dict[str, Number]] = getattr(params, "school_thresholds", {})
        for name, prop in marked.items():
            own = per_school.get(school.code, {}).get(name) if school is not None else None
            form = FormField.of(name, prop)
            found.append(
                Threshold(
                    node=node["id"],
                    node_label=node.get("label") or block.label,
                    name=name,
                    label=form.label,
                    help=form.help,
                    unit=prop.get("unit", ""),
                    scope=prop["threshold"],
                    bounds=form.bounds,
                    default=form.default,
                    district_value=getattr(params, name),
                    school_value=own,
                    overrides={
                        code: values[name]
                        for code, values in sorted(per_school.items())
                        if name in values
                    },
                    editable=may and (school is None or prop["threshold"] == "school"),
                    replayable=node.get("kind") in REPLAYABLE,
                )
            )
    return found


def for_scope(user: Any, district: District, school: School | None) -> list[WorkflowThresholds]:
    """Every workflow of the district whose runnable version has thresholds."""
    may = may_edit(user, district, school)
    found = []
    for workflow in Workflow.objects.filter(district=district).order_by("name"):
        version = workflow.runnable_version()
        if version is None:
            continue
        thresholds = thresholds_of(version, school, may)
        if thresholds:
            found.append(WorkflowThresholds(workflow, version, thresholds))
    return found


def recent_changes(
    district: District, school: School | None, workflow: Workflow | None = None, limit: int = 5
) -> QuerySet[audit.AuditRecord]:
    records = audit.AuditRecord.objects.filter(
        action=audit.AuditRecord.Action.THRESHOLD,
        district=district,
        target_type="workflows.workflow",
        after__school=school.code if school is not None else None,
    )
    if workflow is not None:
        records = records.filter(target_id=str(workflow.pk))
    return records.order_by("-id")[:limit]


def _check_scope(user: Any, workflow: Workflow, school: School | None) -> None:
    if school is not None and school.district_id != workflow.district_id:
        raise PermissionDenied(f"{school} is not a school of {workflow.district}.")
    require(user, Action.EDIT_THRESHOLDS, school or workflow.district)


@transaction.atomic
def apply_changes(
    workflow: Workflow,
    user: Any,
    school: School | None,
    changes: Mapping[str, Any],
    *,
    reason: str = "",
    base_version: int | None = None,
) -> tuple[WorkflowVersion | None, list[Change]]:
    """Apply posted values ("node.field" → value) for a school (its own values) or the district
    (the parameters themselves): a new version and an audit record per changed value, or
    nothing at all. An empty value for a school removes its own value.

    PermissionDenied for a scope the user may not edit or a district-only value for one school;
    ThresholdError (a message per key) for values out of range or not numbers; StaleForm when
    the runnable version is no longer `base_version`."""
    _check_scope(user, workflow, school)
    Workflow.objects.select_for_update().filter(pk=workflow.pk).first()  # one writer at a time
    version = _current_version(workflow, base_version)
    known = {t.key: t for t in thresholds_of(version, school, may=True)}
    parsed = _parse_changes(workflow, version, school, known, changes)
    graph = copy.deepcopy(version.graph)
    nodes = {n["id"]: n for n in graph["nodes"]}
    done = [
        change
        for key, value in parsed.items()
        if (change := _set_value(nodes, known[key], school, value)) is not None
    ]
    if not done:
        return None, []
    problems = validate(graph)
    if problems:
        raise ThresholdError({"": " ".join(p.message for p in problems)})
    where = school.name if school is not None else "the district"
    message = f"Thresholds: {', '.join(c.describe() for c in done)} for {where}"
    if len(message) > 500:
        message = message[:499] + "…"
    new = workflow.save_version(graph, message, user)
    for change in done:
        _audit_change(workflow, user, school, change, version.number, new.number, reason)
    return new, done


def _current_version(workflow: Workflow, base_version: int | None) -> WorkflowVersion:
    version = workflow.runnable_version()
    if version is None:
        raise ThresholdError({"": f"{workflow} has no version that can run yet."})
    if base_version is not None and base_version != version.number:
        raise StaleForm(
            {
                "": f"{workflow} changed (now version {version.number}) since this form was "
                "opened: look at the values again and save once more."
            }
        )
    return version


def _parse_changes(
    workflow: Workflow,
    version: WorkflowVersion,
    school: School | None,
    known: Mapping[str, Threshold],
    changes: Mapping[str, Any],
) -> dict[str, Number | None]:
    """The posted values checked and parsed, or ThresholdError with a message per key."""
    errors: dict[str, str] = {}
    parsed: dict[str, Number | None] = {}
    for key, raw in changes.items():
        threshold = known.get(key)
        if threshold is None:
            errors[key] = f"“{key}” is not a threshold of {workflow} (version {version.number})."
            continue
        if school is not None and threshold.scope != "school":
            raise PermissionDenied(
                f"{threshold.label} ({threshold.name}) is one value for the whole district, "
                "set by district staff: it cannot be changed for one school."
            )
        try:
            parsed[key] = threshold.parse(raw)
        except ValueError as exc:
            errors[key] = str(exc)
            continue
        if parsed[key] is None and school is None:
            errors[key] = (
                f"{threshold.label} ({threshold.name}) is empty. Enter {threshold.range_text}."
            )
    if errors:
        raise ThresholdError(errors)
    return parsed


def _set_value(
    nodes: dict[str, dict[str, Any]], t: Threshold, school: School | None, value: Number | None
) -> Change | None:
    """Write one value into the graph's node parameters; the Change, or None if unchanged."""
    params = nodes[t.node].setdefault("params", {})
    if school is None:
        if value == t.district_value:
            return None
        params[t.name] = value
        return Change(t.node, t.name, t.label, t.district_value, value)
    own = t.school_value is not None
    if (value is None and not own) or (value is not None and value == t.value):
        return None  # unchanged (an empty box where the district's value applies already)
    values = params.setdefault("school_thresholds", {}).setdefault(school.code, {})
    if value is None:
        values.pop(t.name)
    else:
        values[t.name] = float(value)
    if not values:
        del params["school_thresholds"][school.code]
    if not params["school_thresholds"]:
        del params["school_thresholds"]
    new_value = t.district_value if value is None else value
    return Change(t.node, t.name, t.label, t.value, new_value, own, value is not None)


def _audit_change(
    workflow: Workflow,
    user: Any,
    school: School | None,
    change: Change,
    before_version: int,
    after_version: int,
    reason: str,
) -> None:
    code = school.code if school is not None else None
    common = {"node": change.node, "field": change.name, "label": change.label, "school": code}
    audit.record(
        action=audit.AuditRecord.Action.THRESHOLD,
        actor=user,
        target=workflow,
        target_label=f"{workflow} — {school.name if school is not None else 'district'}",
        before={
            **common,
            "value": change.old,
            "version": before_version,
            **({"own": change.old_own} if school is not None else {}),
        },
        after={
            **common,
            "value": change.new,
            "version": after_version,
            **({"own": change.new_own} if school is not None else {}),
        },
        reason=reason,
    )


# --- replay before you save -------------------------------------------------------------------
REPLAYABLE = {"drift_monitor"}


def replay(
    workflow: Workflow, school: School | None, key: str, raw: Any, user: Any = None
) -> tuple[Threshold, Number, Replay]:
    """What the drift monitor of `workflow` would have raised over the last term with `key`
    ("node.field") set to `raw` for this scope (one school, or the district: every school
    without its own value): the threshold, the value and the replay. ThresholdError (naming
    the key) for an unknown key, a threshold no replay covers, or a value out of range."""
    version = workflow.runnable_version()
    if version is None:
        raise ThresholdError({"": f"{workflow} has no version that can run yet."})
    known = {t.key: t for t in thresholds_of(version, school, may=True)}
    threshold = known.get(key)
    if threshold is None:
        raise ThresholdError(
            {"key": f"“{key}” is not a threshold of {workflow} (version {version.number})."}
        )
    node = next(n for n in version.graph["nodes"] if n["id"] == threshold.node)
    if node.get("kind") not in REPLAYABLE:
        raise ThresholdError(
            {
                "key": f"{threshold.label} ({threshold.name}): the replay covers the drift "
                "monitor's thresholds (only their alerts can be recomputed from the stored "
                "aggregates)."
            }
        )
    try:
        value = threshold.parse(raw)
    except ValueError as exc:
        raise ThresholdError({"value": str(exc)}) from None
    if value is None:
        raise ThresholdError(
            {"value": f"{threshold.label} ({threshold.name}) is empty. "
             f"Enter {threshold.range_text}."}
        )  # fmt: skip
    block = REGISTRY[(node["kind"], node.get("version", 1))]
    params = block.Params.model_validate_json(json.dumps(node.get("params", {})))
    assert isinstance(params, DriftParams)
    if school is None:
        params = params.model_copy(update={threshold.name: value})
        schools = list(workflow.district.schools.order_by("name"))
    else:
        own = {**params.school_thresholds.get(school.code, {})}
        if threshold.scope == "school":
            own[threshold.name] = value
            params = params.model_copy(
                update={"school_thresholds": {**params.school_thresholds, school.code: own}}
            )
        else:
            params = params.model_copy(update={threshold.name: value})
        schools = [school]
    return threshold, value, replay_drift(workflow.district, schools, params)


def drift_rule(school: School) -> Rule | None:
    """The drift rule in force for a school: the drift monitor of the first workflow (by name)
    of its district whose runnable version has one, with the school's own values applied."""
    for workflow in Workflow.objects.filter(district=school.district_id).order_by("name"):
        version = workflow.runnable_version()
        if version is None:
            continue
        for node in version.graph.get("nodes", []):
            if node.get("kind") != "drift_monitor":
                continue
            block = REGISTRY[(node["kind"], node.get("version", 1))]
            params = block.Params.model_validate_json(json.dumps(node.get("params", {})))
            assert isinstance(params, DriftParams)
            own = "psi_threshold" in params.school_thresholds.get(school.code, {})
            mine = params.for_school(school.code)
            return Rule(mine.psi_threshold, mine.js_threshold, own, workflow.name)
    return None
