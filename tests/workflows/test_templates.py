"""Every template file in workflows/templates/: it follows the template format, each choice lands
on a parameter its block accepts, and the graph with the default choices compiles (a template with
missing blocks only has the hole they leave). Also the loader's checks and the schema-to-field
helper the gallery and the Thresholds page share."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from edumlops.ml.naming import MODEL_NAME_PATTERN
from workflows.blocks import REGISTRY
from workflows.compiler import validate
from workflows.forms import FormField, model_of
from workflows.gallery import TARGET, TEMPLATE_DIR, TEMPLATES, load, problems
from workflows.training import TRAIN_MODEL, TrainingRequest

FILES = sorted(TEMPLATE_DIR.glob("*.json"))


def read(path):
    return json.loads(path.read_text())


def placeholder(prop):
    """A value for a choice with no default that a run needs (the dataset version)."""
    assert "integer" in prop["type"], "only numbered choices (dataset versions) have no default"
    return prop.get("minimum", 1)


def filled(template):
    """The template's choices: the defaults, and a placeholder where a run needs a value."""
    values = {}
    for name, prop in template.schema["properties"].items():
        if prop.get("default") is None and (
            prop.get("to_run") or name in template.schema.get("required", [])
        ):
            values[name] = placeholder(prop)
    return template.parse(values)


def test_there_is_a_file_per_template_and_train_a_model_is_one_of_them():
    assert {p.stem for p in FILES} == set(TEMPLATES) | {"train-model"}
    assert "train-model" not in TEMPLATES  # it has a page of its own, not a gallery card
    assert [t.gallery_order for t in TEMPLATES.values()] == list(range(1, len(TEMPLATES) + 1))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_template_file_follows_the_template_and_graph_formats(path):
    assert problems(read(path)) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_choice_lands_on_a_parameter_its_block_accepts(path):
    data = read(path)
    nodes = {n["id"]: n for n in data["graph"]["nodes"]}
    for name, prop in data["choices"]["properties"].items():
        for target in [*prop["targets"], *prop.get("when_given", {})]:
            node_id, param = TARGET.match(target).groups()
            node = nodes[node_id]
            block = REGISTRY[(node["kind"], node.get("version", 1))]
            assert param in block.Params.model_fields, (
                f"{path.stem}: choice {name} lands on {target}, but {node['kind']} has no "
                f"parameter {param} (it has {', '.join(block.Params.model_fields)})"
            )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_graph_with_the_default_choices_compiles_but_for_the_hole_of_a_missing_block(path):
    template = load(path.stem)
    graph = template.build(filled(template))
    errors = validate(graph)
    if template.available:
        assert errors == [], [e.message for e in errors]
    else:
        assert errors and {e.code for e in errors} <= {"missing_input", "unreachable"}
        assert all(f"MISSING BLOCK — {m.label}" in str(graph["notes"]) for m in template.missing)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_model_name_follows_the_one_rule(path):
    template = load(path.stem)
    for field in template.choice_fields():
        if field["name"] == "model_name":
            assert field["pattern"] == MODEL_NAME_PATTERN


def test_the_loader_names_what_is_wrong_in_a_file():
    data = read(TEMPLATE_DIR / "watch-model.json")
    data["choices"]["properties"]["dataset_version"]["targets"] = ["nodes[nope].params.x"]
    data["graph"]["nodes"][0]["colour"] = "red"
    assert problems(data) == [
        "graph/nodes/0: Additional properties are not allowed ('colour' was unexpected)",
        "choices/dataset_version: nodes[nope].params.x names no node of the graph.",
    ]
    data["choices"]["properties"]["dataset_version"]["targets"] = ["data.dataset_version"]
    assert problems(data) == [
        "choices/properties/dataset_version/targets/0: 'data.dataset_version' does not match "
        "'^nodes\\\\[[A-Za-z0-9_-]+\\\\]\\\\.params\\\\.[A-Za-z0-9_]+$'"
    ]


def test_a_choice_lands_on_every_target_and_an_empty_one_leaves_the_graph_as_it_is():
    request = TrainingRequest(dataset_version=4, seed=7, algorithm="random_forest")
    params = {n["id"]: n["params"] for n in TRAIN_MODEL.build(request)["nodes"]}
    assert params["data"] == {"dataset_version": 4}
    assert params["split"]["seed"] == params["train"]["seed"] == params["bias"]["seed"] == 7
    assert params["train"]["algorithm"] == "random_forest"
    default = {n["id"]: n["params"] for n in TRAIN_MODEL.build()["nodes"]}
    assert "dataset_version" not in default["data"]

    early = TEMPLATES["early-warning"]
    named = {n["id"]: n for n in early.build(early.parse({"pilot_schools": ["a"]}))["nodes"]}
    assert named["pilot"]["params"]["selection"] == "names"  # set when the choice is given
    sample = {n["id"]: n for n in early.build(early.parse({}))["nodes"]}
    assert sample["pilot"]["params"]["selection"] == "stratified"


# --- one JSON-Schema property as a form field -------------------------------------------------
def test_a_schema_property_becomes_a_form_field():
    field = FormField.of(
        "gap",
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.1,
            "title": "Largest gap",
            "description": "Between groups.",
        },
    )
    assert (field.label, field.help, field.default) == ("Largest gap", "Between groups.", 0.1)
    assert field.bounds.text() == "more than 0 and at most 1"
    assert not field.bounds.admits(0) and field.bounds.admits(1)
    nullable = FormField.of("v", {"type": ["integer", "null"], "minimum": 1})
    assert nullable.bounds.integer and nullable.bounds.text() == "at least 1"
    assert FormField.of("n", {"type": "string", "format": "model-name"}).pattern == (
        MODEL_NAME_PATTERN
    )
    assert FormField.of("a", {"type": "string", "enum": ["x", "y"]}).options == ("x", "y")


def test_a_schema_becomes_a_model_that_checks_values_like_the_schema():
    model = model_of(
        "Choices",
        {
            "type": "object",
            "required": ["n"],
            "properties": {
                "n": {"type": "integer", "minimum": 1, "title": "N"},
                "kind": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "tags": {"type": "array", "items": {"type": "string"}, "default": ["x"]},
                "maybe": {"type": ["number", "null"], "maximum": 1, "default": None},
            },
        },
    )
    value = model.model_validate({"n": "2"})
    assert value.model_dump() == {"n": 2, "kind": "a", "tags": ["x"], "maybe": None}
    for bad, kind in [
        ({}, "missing"),
        ({"n": 0}, "greater_than_equal"),
        ({"n": 1, "kind": "c"}, "literal_error"),
        ({"n": 1, "maybe": 2}, "less_than_equal"),
        ({"n": 1, "other": 1}, "extra_forbidden"),
    ]:
        with pytest.raises(ValidationError) as caught:
            model.model_validate(bad)
        assert caught.value.errors()[0]["type"] == kind
