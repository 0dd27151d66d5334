"""Ready-made workflow graphs: the "Train a model" page saves one and runs it; the canvas can
open it like any other workflow."""

from __future__ import annotations

from typing import Any

TRAINING_CHAIN = [
    # node id, kind, (source id, source port, target port)...
    ("start", "manual_trigger", []),
    ("data", "dataset", [("start", "start", "start")]),
    ("minimise", "minimise_data", [("data", "dataset", "dataset")]),
    ("split", "split", [("minimise", "dataset", "dataset")]),
    ("train", "train_model", [("split", "train", "train"), ("split", "test", "test")]),
    ("validate", "validate_model", [("train", "model", "model")]),
    ("bias", "bias_gate", [("validate", "model", "model")]),
    ("export", "export_onnx", [("bias", "model", "model")]),
    ("register", "set_alias", [("export", "model", "model")]),
    ("card", "model_card", [("register", "model", "model")]),
]


def training_graph(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dataset → minimise → split → train → validate → bias gate → export ONNX → challenger
    alias → model card, with `params` per node id (e.g. {"data": {"dataset_version": 3}})."""
    nodes, edges = [], []
    for i, (node_id, kind, inlets) in enumerate(TRAINING_CHAIN):
        nodes.append(
            {
                "id": node_id,
                "kind": kind,
                "version": 1,
                "params": params.get(node_id, {}),
                "position": {"x": 40 + 220 * i, "y": 120 + (40 if i % 2 else 0)},
            }
        )
        edges += [
            {"source": src, "source_port": port, "target": node_id, "target_port": target}
            for src, port, target in inlets
        ]
    return {"nodes": nodes, "edges": edges, "notes": []}
