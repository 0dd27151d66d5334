"""The template gallery: ready-made workflows kept as data, one file each in
workflows/templates/<key>.json (the file format: workflows/template.schema.json).

A file holds the card text, the choices a person makes as a JSON Schema whose properties say
where each value lands (`"targets": ["nodes[<id>].params.<name>"]`), and the graph in the
saved-graph format with the default choices. A step whose block does not exist yet is listed
under `missing`: it is shown on the card with what it would do and left out of the graph (its
edges too, so the graph has an honest hole the compiler reports), and the workflow made from it
is saved as a draft that cannot run. Nothing is faked with a block that does something else.

This module loads and checks the files, fills a person's choices into a graph, and makes a
workflow from a template.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from django.db import IntegrityError, transaction
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from edumlops.datasets.models import DatasetVersion
from workflows.blocks import REGISTRY
from workflows.compiler import GraphError, validate
from workflows.forms import fields_of, model_of
from workflows.models import Workflow, WorkflowVersion

HERE = Path(__file__).parent
TEMPLATE_DIR = HERE / "templates"
FILE_SCHEMA = json.loads((HERE / "template.schema.json").read_text())
GRAPH_SCHEMA = json.loads((HERE / "graph.schema.json").read_text())
TARGET = re.compile(r"^nodes\[([A-Za-z0-9_-]+)\]\.params\.([A-Za-z0-9_]+)$")

Choices = BaseModel  # a template's choices, typed: a model made from its `choices` schema


class TemplateFileError(ValueError):
    """A template file that does not follow workflows/template.schema.json."""


# --- what a template is made of ---------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """The seed article a template comes from (../shared/seeds/)."""

    title: str
    section: str
    seed: str  # file name in the shared seeds folder

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "section": self.section, "seed": self.seed}


@dataclass(frozen=True)
class Step:
    """One node of the template's graph: `inlets` are (source id, source port, target port),
    a missing step's too."""

    id: str
    kind: str
    label: str
    inlets: tuple[tuple[str, str, str], ...] = ()

    def block_label(self) -> str:
        return REGISTRY[(self.kind, 1)].label


@dataclass(frozen=True)
class MissingBlock:
    """A step the template needs whose block does not exist yet."""

    kind: str
    label: str
    what_it_would_do: str
    id: str
    position: dict[str, float]
    inlets: tuple[tuple[str, str, str], ...] = ()  # what it would be fed (not in the graph)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "label": self.label, "what_it_would_do": self.what_it_would_do}

    def error(self) -> dict[str, Any]:
        return GraphError(
            f'Missing block "{self.label}" ({self.kind}): it does not exist yet, so this '
            f"workflow cannot run. {self.what_it_would_do}",
            "missing_block",
        ).as_dict()

    def note(self, number: int) -> dict[str, Any]:
        return {
            "id": f"n{number}",
            "text": f"MISSING BLOCK — {self.label}: {self.what_it_would_do} It does not exist "
            "yet, so this workflow stays a draft that cannot run.",
            "position": self.position,
        }


def _target(path: str) -> tuple[str, str]:
    """ "nodes[train].params.model_name" → ("train", "model_name")."""
    found = TARGET.match(path)
    if found is None:
        raise TemplateFileError(f"{path!r} is not of the form nodes[<id>].params.<name>.")
    return found[1], found[2]


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    summary: str
    why: str
    source: Source | None
    schema: dict[str, Any]  # the choices, as JSON Schema
    graph: dict[str, Any]  # with the default choices, the missing steps left out
    steps: tuple[Step | MissingBlock, ...]
    choices: type[Choices]
    gallery_order: int | None = None

    @property
    def missing(self) -> list[MissingBlock]:
        return [s for s in self.steps if isinstance(s, MissingBlock)]

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def starts(self) -> str:
        """How a run of it starts, in words."""
        trigger = next(
            s for s in self.steps if isinstance(s, Step) and REGISTRY[(s.kind, 1)].is_trigger
        )
        if REGISTRY[(trigger.kind, 1)].starts_by_hand:
            return "when you press Run"
        return f"by itself ({trigger.label[0].lower()}{trigger.label[1:]})"

    def blocks(self) -> list[dict[str, str]]:
        """The existing blocks it uses, each once, in step order."""
        seen: dict[str, str] = {}
        for step in self.steps:
            if isinstance(step, Step) and step.kind not in seen:
                seen[step.kind] = step.block_label()
        return [{"kind": k, "label": v} for k, v in seen.items()]

    def preview(self) -> list[dict[str, Any]]:
        """The steps in order, for the card: a missing one says what it would do."""
        steps = []
        for s in self.steps:
            item: dict[str, Any] = {"id": s.id, "kind": s.kind, "label": s.label}
            if isinstance(s, MissingBlock):
                item |= {"block": s.label, "missing": True, "what_it_would_do": s.what_it_would_do}
            else:
                item |= {"block": s.block_label(), "missing": False}
            steps.append(item)
        return steps

    def parse(self, data: dict[str, Any]) -> Choices:
        """The person's choices, typed; ChoiceError names the field and the fix."""
        try:
            return self.choices.model_validate(data)
        except PydanticError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "choices"
            if err["type"] == "extra_forbidden":
                known = ", ".join(self.choices.model_fields)
                raise ChoiceError(
                    name, f"This template has no choice '{name}' (its choices: {known})."
                ) from None
            spec = self.choices.model_fields.get(name)
            label, fix = (spec.title, f" {spec.description}") if spec else (name, "")
            raise ChoiceError(name, f"{label}: {err['msg']}.{fix}") from None

    def build(self, choices: Choices | None = None) -> dict[str, Any]:
        """The graph with the choices filled in (the defaults when None) and a sticky note for
        each missing step. A choice left empty (None) leaves its targets as they are."""
        values = (
            choices.model_dump()
            if choices is not None
            else {f.name: f.default for f in fields_of(self.schema)}
        )
        graph = copy.deepcopy(self.graph)
        nodes = {n["id"]: n for n in graph["nodes"]}
        for name, prop in self.schema["properties"].items():
            value = values.get(name)
            if value is None:
                continue
            landing = dict.fromkeys(prop["targets"], value)
            if value:
                landing |= prop.get("when_given", {})
            for path, put in landing.items():
                node, param = _target(path)
                nodes[node].setdefault("params", {})[param] = copy.deepcopy(put)
        first = len(graph["notes"]) + 1
        graph["notes"] += [gap.note(i) for i, gap in enumerate(self.missing, start=first)]
        return graph

    def choice_fields(self) -> list[dict[str, Any]]:
        """The choices as form fields: name, label, help, widget, default, limits."""
        return [
            {
                "name": f.name,
                "label": f.label,
                "help": f.help,
                "widget": f.widget,
                "default": f.default,
                "to_run": bool(f.prop.get("to_run")),
                "needs": f.prop.get("needs", []),
                "min": f.bounds.minimum,
                "max": f.bounds.maximum,
                "step": f.prop.get("step"),
                "pattern": f.pattern,
            }
            for f in fields_of(self.schema)
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "summary": self.summary,
            "source": self.source.as_dict() if self.source else None,
            "why": self.why,
            "available": self.available,
            "starts": self.starts,
            "blocks": self.blocks(),
            "steps": self.preview(),
            "missing": [m.as_dict() for m in self.missing],
            "choices": self.choice_fields(),
        }


class ChoiceError(ValueError):
    """A choice that cannot be used: `field` names it, the message says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- reading the files --------------------------------------------------------------------------
def problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with a template file's content: its format, its graph's format, its choices
    schema, and targets naming nodes the graph does not have."""
    found = [
        f"{'/'.join(map(str, e.absolute_path)) or '(file)'}: {e.message}"
        for e in jsonschema.Draft202012Validator(FILE_SCHEMA).iter_errors(data)
    ]
    if found:
        return found
    found += [
        f"graph/{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(GRAPH_SCHEMA).iter_errors(data["graph"])
    ]
    try:
        jsonschema.Draft202012Validator.check_schema(data["choices"])
    except jsonschema.SchemaError as exc:
        found.append(f"choices: {exc.message}")
    ids = {n["id"] for n in data["graph"].get("nodes", [])}
    for name, prop in data["choices"]["properties"].items():
        for path in [*prop["targets"], *prop.get("when_given", {})]:
            node = TARGET.match(path)[1]  # type: ignore[index]  # the file schema checked it
            if node not in ids:
                found.append(f"choices/{name}: {path} names no node of the graph.")
    return found


def _link(edge: dict[str, str]) -> tuple[str, str, str]:
    return edge["source"], edge["source_port"], edge["target_port"]


def _steps(data: dict[str, Any]) -> tuple[Step | MissingBlock, ...]:
    """The graph's nodes and the missing steps, each missing one after the step it follows."""
    graph, gaps = data["graph"], data.get("missing", [])
    edges = [*graph.get("edges", [])]
    edges += [{**e, "source": gap["id"]} for gap in gaps for e in gap.get("feeds", [])]
    inlets: dict[str, list[tuple[str, str, str]]] = {}
    for e in edges:
        inlets.setdefault(e["target"], []).append(_link(e))
    steps: list[Step | MissingBlock] = [
        Step(n["id"], n["kind"], n.get("label", ""), tuple(inlets.get(n["id"], [])))
        for n in graph.get("nodes", [])
    ]
    for gap in gaps:
        at = next(n for n, s in enumerate(steps) if s.id == gap["after"]) + 1
        fed = tuple(_link(e) for e in gap.get("inlets", []))
        steps.insert(
            at,
            MissingBlock(
                gap["kind"], gap["label"], gap["what_it_would_do"], gap["id"], gap["position"], fed
            ),
        )
    return tuple(steps)


def load(key: str) -> Template:
    """The template in workflows/templates/<key>.json; TemplateFileError says what is wrong."""
    path = TEMPLATE_DIR / f"{key}.json"
    data = json.loads(path.read_text())
    found = problems(data)
    if found:
        raise TemplateFileError(f"{path}: " + "; ".join(found))
    source = data.get("source")
    return Template(
        key=key,
        title=data["title"],
        summary=data["summary"],
        why=data["why"],
        source=Source(**source) if source else None,
        schema=data["choices"],
        graph={"nodes": [], "edges": [], "notes": [], **data["graph"]},
        steps=_steps(data),
        choices=model_of(f"{key.title().replace('-', '')}Choices", data["choices"]),
        gallery_order=data.get("gallery_order"),
    )


def load_all() -> dict[str, Template]:
    """Every template file, by key."""
    return {path.stem: load(path.stem) for path in sorted(TEMPLATE_DIR.glob("*.json"))}


ALL = load_all()
# the gallery's cards, in their order; a template without a place there (Train a model) has a
# page of its own
TEMPLATES: dict[str, Template] = {
    t.key: t
    for t in sorted(ALL.values(), key=lambda t: t.gallery_order or 0)
    if t.gallery_order is not None
}
WATCH_MODEL = TEMPLATES["watch-model"]  # the demo's monitoring workflow (seed_demo)


# --- using a template -----------------------------------------------------------------------
def check_choices(template: Template, choices: Choices, district: Any) -> None:
    """What the database must confirm: the dataset version and schools belong to `district` and
    have the roles the template needs."""
    fields = {f["name"]: f for f in template.choice_fields()}
    for name, spec in fields.items():
        value = getattr(choices, name)
        if spec["widget"] == "dataset_version" and value is not None:
            version = (
                DatasetVersion.objects.filter(pk=value, district=district)
                .select_related("dataset")
                .first()
            )
            if version is None:
                raise ChoiceError(
                    name,
                    f"There is no dataset version {value} in {district}: pick one listed on the "
                    "Datasets page of this district.",
                )
            lacking = missing_roles(version, spec["needs"])
            if lacking:
                raise ChoiceError(
                    name,
                    f'"{version}" has no {" and no ".join(lacking)} marked: mark '
                    f"{'them' if len(lacking) > 1 else 'it'} on the dataset's page "
                    f"(/datasets/versions/{version.pk}/) first"
                    + (
                        " (no yes/no column? define the outcome from one, e.g. a grade below 10)."
                        if "label" in spec["needs"] and not version.role_set.label
                        else "."
                    ),
                )
        if spec["widget"] == "schools" and value:
            schools = list(district.schools.all())
            known = {s.code.lower() for s in schools} | {s.name.lower() for s in schools}
            unknown = [v for v in value if v.strip().lower() not in known]
            if unknown:
                raise ChoiceError(
                    name,
                    f"No school {', '.join(map(repr, unknown))} in {district}: use school codes "
                    f"or names from the district page ({', '.join(s.code for s in schools)}).",
                )


ROLE_NAMES = {
    "label": "label column and positive class",
    "sensitive": "sensitive attribute",
    "school": "school column",
}


def missing_roles(version: Any, needs: list[str]) -> list[str]:
    roles = version.role_set
    present = {
        "label": bool(roles.label and roles.positive),
        "sensitive": bool(roles.sensitive),
        "school": bool(roles.school),
    }
    return [ROLE_NAMES[n] for n in needs if not present[n]]


def use(
    template: Template,
    *,
    district: Any,
    user: Any,
    name: str,
    choices: dict[str, Any],
) -> WorkflowVersion:
    """Make a workflow from the template with the person's choices; its first version is a
    draft (listing what to fill in or which blocks are missing) when it could not run as is.
    Raises ChoiceError, writing nothing, when a choice or the name cannot be used."""
    name = name.strip()
    if not name:
        raise ChoiceError("name", "Give the workflow a name.")
    parsed = template.parse(choices)
    check_choices(template, parsed, district)
    graph = template.build(parsed)
    errors = [e.as_dict() for e in validate(graph)] + [m.error() for m in template.missing]
    try:
        with transaction.atomic():
            if Workflow.objects.filter(district=district, name=name).exists():
                raise IntegrityError
            workflow = Workflow.objects.create(
                district=district,
                name=name,
                description=f"{template.summary} (From the template “{template.title}”.)",
                owner=user,
            )
            return workflow.save_version(
                graph, f"from the template “{template.title}”", user, errors=errors
            )
    except IntegrityError:
        raise ChoiceError(
            "name", f"{district} already has a workflow named “{name}”: choose another name."
        ) from None
