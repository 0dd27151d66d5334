"""The compiler is pure: golden graphs, plans and Celery signatures, with no broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.compiler import InvalidGraph, plan, step_messages, validate

GOLDEN = Path(__file__).parent / "golden"
INVALID = sorted((GOLDEN / "invalid").glob("*.json"))


def node(id, kind, **params):
    return {"id": id, "kind": kind, "version": 1, "params": params}


def edge(source, source_port, target, target_port):
    return {
        "source": source,
        "source_port": source_port,
        "target": target,
        "target_port": target_port,
    }


def diamond():
    return json.loads((GOLDEN / "valid" / "diamond.json").read_text())["graph"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_each_invalid_golden_graph_gives_its_exact_errors(path):
    fixture = json.loads(path.read_text())
    assert [e.as_dict() for e in validate(fixture["graph"])] == fixture["errors"]


def test_there_is_a_golden_graph_for_every_error_kind():
    codes = {e["code"] for p in INVALID for e in json.loads(p.read_text())["errors"]}
    assert codes >= {
        "unknown_kind",
        "unknown_version",
        "unknown_port",
        "unknown_node",
        "type_mismatch",
        "missing_input",
        "too_many_inputs",
        "invalid_param",
        "cycle",
        "unreachable",
        "no_trigger",
        "malformed",
    }


def test_all_errors_come_at_once():
    graph = {
        "nodes": [
            node("start", "manual_trigger"),
            node("x", "nope"),
            node("w", "wait", seconds=-1),
        ],
        "edges": [edge("start", "start", "w", "input"), edge("w", "done", "x", "input")],
    }
    codes = [e.code for e in validate(graph)]
    assert codes == ["unknown_kind", "invalid_param"]


def test_a_valid_graph_has_no_errors():
    assert validate(diamond()) == []


def test_json_text_is_accepted_and_bad_json_is_named():
    assert validate(json.dumps(diamond())) == []
    [error] = validate("{nodes: [")
    assert error.code == "malformed"
    assert error.message.startswith("The graph is not valid JSON: ")


def test_an_empty_graph_asks_for_a_trigger():
    [error] = validate({"nodes": [], "edges": []})
    assert error.message == "The workflow is empty. Add a trigger block to start."


def test_a_self_loop_is_a_cycle():
    graph = {
        "nodes": [node("start", "manual_trigger"), node("w", "wait")],
        "edges": [edge("start", "start", "w", "input"), edge("w", "done", "w", "input")],
    }
    assert [e.message for e in validate(graph)] == [
        "Cycle: w → w. Remove one of these edges so the workflow flows one way."
    ]


def test_the_plan_puts_branches_on_one_level_and_the_join_after_both():
    p = plan(diamond())
    assert p.levels == [["start"], ["left", "right"], ["join"]]
    assert p.upstream("join") == ["left", "right"]
    assert p.descendants("start") == {"left", "right", "join"}


def test_plan_refuses_an_invalid_graph_with_all_its_errors():
    with pytest.raises(InvalidGraph) as excinfo:
        plan({"nodes": [node("a", "wait")], "edges": []})
    assert [e.code for e in excinfo.value.errors] == ["missing_input", "no_trigger"]


def test_each_ready_step_is_one_independent_message_with_ids_only():
    messages = step_messages(7, ["left", "right"])
    assert [(m.task, m.args, m.immutable) for m in messages] == [
        ("workflows.run_step", (7, "left"), True),
        ("workflows.run_step", (7, "right"), True),
    ]
    # nothing of the rest of the plan travels with a message: the database holds it
    assert json.loads(json.dumps(messages[0]))["options"] == {"ignore_result": True}
    assert "link" not in json.dumps(messages)
