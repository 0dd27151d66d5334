"""Validate + plan + compile for graphs of 10, 100 and 1,000 nodes (pure, no broker).

The graphs are layered like real workflows: a trigger, then rows of parallel branches that join.
No anchor is named for this claim; the table prints the time per graph and per node.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# the block registry imports the ML blocks, whose modules name Django models (no query is made)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edumlops.settings")
django.setup()

from workflows.compiler import plan, step_messages, validate  # noqa: E402


def layered_graph(n: int, width: int = 4) -> dict:
    nodes = [{"id": "start", "kind": "manual_trigger"}]
    edges = []
    previous = ["start"]
    i = 0
    while len(nodes) < n:
        row = []
        for _ in range(min(width, n - len(nodes))):
            node_id = f"n{i}"
            i += 1
            nodes.append({"id": node_id, "kind": "notify", "params": {"title": node_id}})
            port = "start" if previous == ["start"] else "done"
            edges += [
                {"source": p, "source_port": port, "target": node_id, "target_port": "input"}
                for p in previous
            ]
            row.append(node_id)
        previous = row
    return {"nodes": nodes, "edges": edges}


def measure(n: int) -> tuple[float, float, int]:
    graph = layered_graph(n)
    repeats = max(3, 300 // n)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        assert validate(graph) == []
        p = plan(graph)
        step_messages(1, p.order)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, len(graph["edges"]), repeats


def main() -> None:
    print("validate + plan + compile, layered graphs (4 parallel branches per row, full joins)")
    print()
    print("| nodes | edges | ms per graph | µs per node |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (10, 100, 1000):
        ms, edges, _ = measure(n)
        print(f"| {n:,} | {edges:,} | {ms:.2f} | {1e3 * ms / n:.1f} |")


if __name__ == "__main__":
    main()
