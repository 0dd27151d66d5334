"""The graph format: its JSON Schema file stays in step with the model; versions diff."""

from __future__ import annotations

import json
from pathlib import Path

from workflows.graph import Graph, diff, json_schema

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_json_schema_matches_the_model():
    committed = json.loads((ROOT / "workflows" / "graph.schema.json").read_text())
    assert committed == json_schema(), (
        "regenerate: python -m workflows.graph > workflows/graph.schema.json"
    )


def test_diff_names_added_removed_and_changed_nodes_edges_and_params():
    old = Graph.model_validate(
        {
            "nodes": [
                {"id": "s", "kind": "manual_trigger"},
                {"id": "g", "kind": "condition_gate", "params": {"threshold": 0.7}},
                {"id": "w", "kind": "wait"},
            ],
            "edges": [
                {"source": "s", "source_port": "start", "target": "w", "target_port": "input"}
            ],
        }
    )
    new = Graph.model_validate(
        {
            "nodes": [
                {"id": "s", "kind": "manual_trigger"},
                {"id": "g", "kind": "condition_gate", "params": {"threshold": 0.8}},
                {"id": "n", "kind": "notify"},
            ],
            "edges": [
                {"source": "s", "source_port": "start", "target": "n", "target_port": "input"}
            ],
        }
    )
    assert diff(old, new) == {
        "nodes_added": ["n"],
        "nodes_removed": ["w"],
        "nodes_changed": [{"id": "g", "params": {"threshold": {"old": 0.7, "new": 0.8}}}],
        "edges_added": ["s.start → n.input"],
        "edges_removed": ["s.start → w.input"],
    }


def test_the_example_in_the_graph_format_doc_is_valid():
    from workflows.compiler import validate

    text = (ROOT / "docs" / "graph-format.md").read_text()
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    assert validate(json.loads(example)) == []
