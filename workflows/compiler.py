"""Graph JSON → validated graph → topological plan → Celery messages for the steps that are ready.

Pure: no database, no broker. `validate` returns every error at once; each names the node (and
the port or parameter) and how to fix it.
"""

from __future__ import annotations

import difflib
import graphlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import signature
from celery.canvas import Signature
from pydantic import ValidationError

from workflows.blocks import REGISTRY, versions_of
from workflows.blocks.base import Block, Port
from workflows.graph import Edge, Graph, Node

RUN_STEP = "workflows.run_step"


@dataclass(frozen=True)
class GraphError:
    message: str
    code: str
    node: str | None = None
    port: str | None = None
    param: str | None = None
    edge: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["edge"] is None:
            del data["edge"]
        return data


class InvalidGraph(Exception):
    def __init__(self, errors: list[GraphError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def _types(types: Iterable[Any]) -> str:
    names = [str(t) for t in types]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _json_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(data: Any) -> tuple[Graph | None, list[GraphError]]:
    """Check the JSON's shape (nodes, edges and their fields)."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            return None, [GraphError(f"The graph is not valid JSON: {exc}.", "malformed")]
    try:
        return Graph.model_validate(data), []
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path = _json_path(err["loc"])
            errors.append(
                GraphError(
                    f"The graph's {path or 'top level'} is malformed: {err['msg']}. "
                    "See docs/graph-format.md for the expected shape.",
                    "malformed",
                    param=path or None,
                )
            )
        return None, errors


def _block_for(node: Node, errors: list[GraphError]) -> type[Block] | None:
    block = REGISTRY.get((node.kind, node.version))
    if block is not None:
        return block
    versions = versions_of(node.kind)
    if versions:
        errors.append(
            GraphError(
                f'Node "{node.id}": block "{node.kind}" has no version {node.version} '
                f"(versions: {', '.join(map(str, versions))}). Set its version to one of them.",
                "unknown_version",
                node=node.id,
            )
        )
        return None
    kinds = sorted({k for k, _ in REGISTRY})
    close = difflib.get_close_matches(node.kind, kinds, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else " Pick a block from the palette."
    errors.append(
        GraphError(
            f'Node "{node.id}": there is no block of kind "{node.kind}".{hint}',
            "unknown_kind",
            node=node.id,
        )
    )
    return None


def _check_params(node: Node, block: type[Block], errors: list[GraphError]) -> None:
    try:
        block.Params.model_validate_json(json.dumps(node.params))
    except ValidationError as exc:
        for err in exc.errors():
            path = _json_path(err["loc"]) or "(all)"
            errors.append(
                GraphError(
                    f'Node "{node.id}": parameter "{path}" is invalid: {err["msg"]}. '
                    "Fix it in the block's form.",
                    "invalid_param",
                    node=node.id,
                    param=path,
                )
            )


def _check_edge(
    index: int,
    edge: Edge,
    nodes: dict[str, Node],
    blocks: dict[str, type[Block]],
    errors: list[GraphError],
) -> bool:
    ok = True
    for end in ("source", "target"):
        node_id = getattr(edge, end)
        if node_id not in nodes:
            errors.append(
                GraphError(
                    f'Edge {edge.label()}: there is no node "{node_id}". '
                    "Connect existing nodes or remove the edge.",
                    "unknown_node",
                    node=node_id,
                    edge=index,
                )
            )
            ok = False
    if not ok:
        return False
    source, target = blocks.get(edge.source), blocks.get(edge.target)
    if source is None or target is None:
        return False  # the unknown block is reported on its node
    out_port = source.output_port(edge.source_port)
    if out_port is None:
        names = ", ".join(p.name for p in source.outputs) or "none"
        errors.append(
            GraphError(
                f'Node "{edge.source}": block "{source.kind}" has no output port '
                f'"{edge.source_port}" (output ports: {names}). Connect one of them.',
                "unknown_port",
                node=edge.source,
                port=edge.source_port,
                edge=index,
            )
        )
    in_port = target.input_port(edge.target_port)
    if in_port is None:
        names = ", ".join(p.name for p in target.inputs) or "none"
        errors.append(
            GraphError(
                f'Node "{edge.target}": block "{target.kind}" has no input port '
                f'"{edge.target_port}" (input ports: {names}). Connect one of them.',
                "unknown_port",
                node=edge.target,
                port=edge.target_port,
                edge=index,
            )
        )
    if out_port is not None and in_port is not None and out_port.type not in in_port.accepts:
        errors.append(  # the input counts as connected: the wrong type is the one thing to fix
            GraphError(
                f'Edge {edge.label()}: output "{out_port.name}" gives {out_port.type} but input '
                f'"{in_port.name}" of "{edge.target}" takes {_types(in_port.accepts)}. '
                "Connect an output of a matching type.",
                "type_mismatch",
                node=edge.target,
                port=in_port.name,
                edge=index,
            )
        )
    return in_port is not None


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter({n: edges[n] for n in sorted(edges)}).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])  # [a, b, ..., a]: each runs before the next
    return None


def validate(data: Any) -> list[GraphError]:
    """Every error in the graph, at once."""
    graph, errors = parse(data)
    if graph is None:
        return errors
    return _validate(graph)


def _validate(graph: Graph) -> list[GraphError]:
    errors: list[GraphError] = []
    nodes = _unique_nodes(graph, errors)
    blocks: dict[str, type[Block]] = {}
    for node in nodes.values():
        block = _block_for(node, errors)
        if block is not None:
            blocks[node.id] = block
            _check_params(node, block, errors)
    upstream = _check_edges(graph, nodes, blocks, errors)
    cycle = _find_cycle(upstream)
    if cycle:
        errors.append(
            GraphError(
                f"Cycle: {' → '.join(cycle)}. Remove one of these edges so the workflow flows "
                "one way.",
                "cycle",
                node=cycle[0],
            )
        )
    triggers = _check_triggers(nodes, blocks, errors)
    _check_connected(triggers, blocks, {e.source for e in graph.edges}, errors)
    if triggers and not cycle:
        _check_reachable(triggers, nodes, blocks, upstream, errors)
    return errors


def _unique_nodes(graph: Graph, errors: list[GraphError]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for node in graph.nodes:
        if node.id in nodes:
            errors.append(
                GraphError(
                    f'Node "{node.id}": two nodes have this id. Give each node its own id.',
                    "duplicate_node",
                    node=node.id,
                )
            )
        nodes[node.id] = node
    return nodes


def _check_edges(
    graph: Graph,
    nodes: dict[str, Node],
    blocks: dict[str, type[Block]],
    errors: list[GraphError],
) -> dict[str, set[str]]:
    """Each edge, then each input's edge count; returns each node's upstream nodes."""
    upstream: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    connected: dict[tuple[str, str], int] = {}
    for index, edge in enumerate(graph.edges):
        if _check_edge(index, edge, nodes, blocks, errors):
            key = (edge.target, edge.target_port)
            connected[key] = connected.get(key, 0) + 1
        if edge.source in nodes and edge.target in nodes:
            upstream[edge.target].add(edge.source)
    for node_id, block in blocks.items():
        for port in block.inputs:
            _check_input_count(node_id, port, connected.get((node_id, port.name), 0), errors)
    return upstream


def _check_input_count(node_id: str, port: Port, count: int, errors: list[GraphError]) -> None:
    if port.required and count == 0:
        errors.append(
            GraphError(
                f'Node "{node_id}": required input "{port.name}" is not connected. '
                f"Connect an output of type {_types(port.accepts)} to it.",
                "missing_input",
                node=node_id,
                port=port.name,
            )
        )
    if count > 1 and not port.many:
        errors.append(
            GraphError(
                f'Node "{node_id}": input "{port.name}" takes one edge but has {count}. '
                "Remove all but one.",
                "too_many_inputs",
                node=node_id,
                port=port.name,
            )
        )


def _check_triggers(
    nodes: dict[str, Node], blocks: dict[str, type[Block]], errors: list[GraphError]
) -> list[str]:
    triggers = [n for n, b in blocks.items() if b.is_trigger]
    if nodes and not triggers and not any(e.code == "unknown_kind" for e in errors):
        starters = ", ".join(f'"{b.label}"' for b in REGISTRY.values() if b.is_trigger)
        errors.append(
            GraphError(f"The workflow has no trigger. Add one of {starters}.", "no_trigger")
        )
    elif not nodes:
        errors.append(
            GraphError("The workflow is empty. Add a trigger block to start.", "no_trigger")
        )
    return triggers


def _check_connected(
    triggers: list[str],
    blocks: dict[str, type[Block]],
    feeding: set[str],
    errors: list[GraphError],
) -> None:
    """A trigger no edge leaves would start a run in which nothing runs."""
    for node_id in triggers:
        if node_id not in feeding:
            block = blocks[node_id]
            port = block.outputs[0].name if block.outputs else None
            errors.append(
                GraphError(
                    f'Node "{node_id}": the trigger "{block.label}" is connected to nothing, so '
                    "a run it starts would do nothing. Connect its output to the first block "
                    "to run, or remove it.",
                    "unconnected_trigger",
                    node=node_id,
                    port=port,
                )
            )


def _check_reachable(
    triggers: list[str],
    nodes: dict[str, Node],
    blocks: dict[str, type[Block]],
    upstream: dict[str, set[str]],
    errors: list[GraphError],
) -> None:
    downstream: dict[str, set[str]] = {n: set() for n in nodes}
    for target, sources in upstream.items():
        for source in sources:
            downstream[source].add(target)
    reached = set(triggers)
    frontier = list(triggers)
    while frontier:
        for nxt in downstream[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    for node_id in nodes:
        if node_id not in reached and node_id in blocks:
            errors.append(
                GraphError(
                    f'Node "{node_id}": it is not reachable from any trigger. Connect it '
                    "downstream of a trigger or remove it.",
                    "unreachable",
                    node=node_id,
                )
            )


# --- plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inlet:
    source: str
    source_port: str
    target_port: str


@dataclass
class Plan:
    """A valid graph in run order."""

    nodes: dict[str, Node]
    order: list[str]  # topological
    levels: list[list[str]]  # nodes whose inputs are all in earlier levels
    inlets: dict[str, list[Inlet]]  # per node, the edges that feed it
    downstream: dict[str, list[str]] = field(default_factory=dict)

    def block(self, node_id: str) -> type[Block]:
        node = self.nodes[node_id]
        return REGISTRY[(node.kind, node.version)]

    def upstream(self, node_id: str) -> list[str]:
        return sorted({i.source for i in self.inlets[node_id]})

    def descendants(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        frontier = [node_id]
        while frontier:
            for nxt in self.downstream[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return seen

    def started_by(self, trigger: str) -> set[str]:
        """What a run started by `trigger` runs; every other step of it is skipped."""
        return {trigger} | self.descendants(trigger)

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        frontier = [node_id]
        while frontier:
            for prev in self.upstream(frontier.pop()):
                if prev not in seen:
                    seen.add(prev)
                    frontier.append(prev)
        return seen


# Refused when saved, but a version saved before the rule still plans and runs (from its other
# triggers): its graph is otherwise sound.
PLANNABLE = frozenset({"unconnected_trigger"})


def plan(data: Any) -> Plan:
    graph, errors = parse(data)
    if graph is not None:
        errors = [e for e in _validate(graph) if e.code not in PLANNABLE]
    if errors:
        raise InvalidGraph(errors)
    assert graph is not None
    nodes = {n.id: n for n in graph.nodes}
    inlets: dict[str, list[Inlet]] = {n: [] for n in nodes}
    downstream: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in graph.edges:
        inlets[edge.target].append(Inlet(edge.source, edge.source_port, edge.target_port))
        if edge.target not in downstream[edge.source]:
            downstream[edge.source].append(edge.target)
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    sorter = graphlib.TopologicalSorter({n: {i.source for i in inlets[n]} for n in nodes})
    sorter.prepare()
    levels: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        levels.append(ready)
        sorter.done(*ready)
    order = [n for level in levels for n in level]
    return Plan(nodes=nodes, order=order, levels=levels, inlets=inlets, downstream=downstream)


# --- compile --------------------------------------------------------------------------------
def step_messages(run_id: int, node_ids: Iterable[str]) -> list[Signature]:
    """One independent `run_step` message per ready step, ids only.

    The rest of the plan lives in the database, not in the message: each step, when it ends,
    sends the steps it made ready (workflows.engine.advance), so a lost message or a restarted
    broker loses no more than what the reconciler sends again.
    """
    # ignore_result: a step's state is in the database; the sender neither waits for nor
    # subscribes to a result (which would also need the result backend to be up)
    return [
        signature(RUN_STEP, args=(run_id, node_id), immutable=True, options={"ignore_result": True})
        for node_id in node_ids
    ]
