"""The compiler is pure: golden graphs, plans and Celery signatures, with no broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery.canvas import _chain, chord, group

from workflows.compiler import InvalidGraph, compile_plan, plan, validate

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


def test_compile_runs_branches_as_a_group_and_joins_after_them():
    sig = compile_plan(plan(diamond()), run_id=7)
    assert isinstance(sig, _chain)
    first, middle, rest = sig.tasks[0], sig.tasks[1], sig.tasks[2:]
    assert (first.task, first.args) == ("workflows.run_step", (7, "start"))
    # chain(group, task) is a chord: the join waits for both branches
    assert isinstance(middle, chord)
    assert [(t.task, t.args) for t in middle.tasks] == [
        ("workflows.run_step", (7, "left")),
        ("workflows.run_step", (7, "right")),
    ]
    body = middle.body
    flat = [body, *rest] if not isinstance(body, _chain) else [*body.tasks, *rest]
    assert [(t.task, t.args) for t in flat] == [
        ("workflows.run_step", (7, "join")),
        ("workflows.finish_segment", (7,)),
    ]
    assert all(t.immutable for t in [first, *middle.tasks, *flat])


def test_compile_holds_back_what_comes_after_an_approval_gate():
    graph = {
        "nodes": [
            node("start", "manual_trigger"),
            node("ok", "approval_gate"),
            node("tell", "notify"),
            node("side", "wait", seconds=0),
        ],
        "edges": [
            edge("start", "start", "ok", "input"),
            edge("ok", "approved", "tell", "input"),
            edge("start", "start", "side", "input"),
        ],
    }
    p = plan(graph)
    assert p.first_segment() == ["start", "ok", "side"]
    sig = compile_plan(p, run_id=1)
    names = json.dumps(sig)
    assert '"tell"' not in names and '"ok"' in names
    rest = compile_plan(p, run_id=1, only=["tell"])
    assert [(t.task, t.args) for t in rest.tasks] == [
        ("workflows.run_step", (1, "tell")),
        ("workflows.finish_segment", (1,)),
    ]


def test_a_straight_chain_compiles_to_a_plain_chain():
    nodes = [node("start", "manual_trigger")] + [node(f"w{i}", "wait", seconds=0) for i in range(5)]
    edges = [edge("start", "start", "w0", "input")] + [
        edge(f"w{i}", "done", f"w{i + 1}", "input") for i in range(4)
    ]
    sig = compile_plan(plan({"nodes": nodes, "edges": edges}), run_id=3)
    assert not any(isinstance(t, group | chord) for t in sig.tasks)
    assert len(sig.tasks) == 7
