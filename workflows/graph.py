"""The saved form of a workflow: nodes and edges, as JSON (docs/graph-format.md,
workflows/graph.schema.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: float = 0
    y: float = 0


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Unique within the graph; letters, digits, '_' and '-'.",
    )
    kind: str = Field(min_length=1, max_length=64, description="The block's kind, e.g. notify.")
    version: int = Field(1, ge=1, description="The block's version the node was made with.")
    params: dict[str, Any] = Field(default_factory=dict, description="The block's parameters.")
    position: Position = Field(default_factory=Position, description="Where it sits on the canvas.")
    label: str = Field("", max_length=200, description="An optional name shown on the canvas.")


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="The id of the node the edge leaves.")
    source_port: str = Field(min_length=1, description="An output port of the source block.")
    target: str = Field(min_length=1, description="The id of the node the edge enters.")
    target_port: str = Field(min_length=1, description="An input port of the target block.")

    def label(self) -> str:
        return f"{self.source}.{self.source_port} → {self.target}.{self.target_port}"


class Graph(BaseModel):
    """A workflow version's graph."""

    model_config = ConfigDict(extra="forbid", title="EduMLOps workflow graph")
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    notes: list[dict[str, Any]] = Field(
        default_factory=list, description="Sticky notes on the canvas; not executed."
    )


def json_schema() -> dict[str, Any]:
    schema = Graph.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://edumlops.org/schemas/workflow-graph.json"
    return schema


def normalized(data: dict[str, Any]) -> dict[str, Any]:
    """A graph's JSON with every default filled in, the form two graphs are compared in."""
    return Graph.model_validate(data).model_dump(mode="json")


def same_graph(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two graphs say the same (defaults filled in; a graph that does not parse is
    compared as it is)."""
    try:
        return normalized(a) == normalized(b)
    except ValueError:
        return a == b


def diff(old: Graph, new: Graph) -> dict[str, Any]:
    """Which nodes, edges and parameters changed between two versions."""
    old_nodes = {n.id: n for n in old.nodes}
    new_nodes = {n.id: n for n in new.nodes}
    old_edges = {e.label() for e in old.edges}
    new_edges = {e.label() for e in new.edges}
    changed = []
    for node_id in sorted(old_nodes.keys() & new_nodes.keys()):
        a, b = old_nodes[node_id], new_nodes[node_id]
        params = {
            key: {"old": a.params.get(key), "new": b.params.get(key)}
            for key in sorted(a.params.keys() | b.params.keys())
            if a.params.get(key) != b.params.get(key)
        }
        if params or a.kind != b.kind or a.version != b.version or a.label != b.label:
            entry: dict[str, Any] = {"id": node_id, "params": params}
            if (a.kind, a.version) != (b.kind, b.version):
                entry["block"] = {"old": f"{a.kind}@{a.version}", "new": f"{b.kind}@{b.version}"}
            if a.label != b.label:
                entry["label"] = {"old": a.label, "new": b.label}
            changed.append(entry)
    return {
        "nodes_added": sorted(new_nodes.keys() - old_nodes.keys()),
        "nodes_removed": sorted(old_nodes.keys() - new_nodes.keys()),
        "nodes_changed": changed,
        "edges_added": sorted(new_edges - old_edges),
        "edges_removed": sorted(old_edges - new_edges),
    }


if __name__ == "__main__":
    import json
    import sys

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
