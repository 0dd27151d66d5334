// Tests of the canvas's selection (static/js/canvas/selection.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";

import { edgeKey } from "../../static/js/canvas/model.mjs";
import { Selection } from "../../static/js/canvas/selection.mjs";

const EDGE = { source: "a", source_port: "out", target: "b", target_port: "in" };
const GRAPH = {
  nodes: [{ id: "a", position: { x: 0, y: 0 } }, { id: "b", position: { x: 10, y: 0 } }],
  edges: [EDGE],
  notes: [{ id: "note_1", position: { x: 5, y: 5 } }],
};

test("a selection replaces the last one unless it adds to it", () => {
  const selection = new Selection();
  assert.equal(selection.size, 0);
  selection.set({ nodes: ["a"] });
  selection.set({ notes: ["note_1"] });
  assert.deepEqual([...selection.nodes], []);
  assert.deepEqual([...selection.notes], ["note_1"]);
  selection.set({ nodes: ["a", "b"], edges: [edgeKey(EDGE)] }, true);
  assert.equal(selection.size, 4);
  selection.set();
  assert.equal(selection.size, 0);
});

test("toggling a node adds or removes it", () => {
  const selection = new Selection();
  selection.toggleNode("a");
  selection.toggleNode("b");
  selection.toggleNode("a");
  assert.deepEqual([...selection.nodes], ["b"]);
});

test("the single selected node is there only when one node and no edge is selected", () => {
  const selection = new Selection();
  assert.equal(selection.singleNode(), null);
  selection.set({ nodes: ["a"] });
  assert.equal(selection.singleNode(), "a");
  selection.set({ notes: ["note_1"] }, true);
  assert.equal(selection.singleNode(), "a", "a note does not count");
  selection.set({ edges: [edgeKey(EDGE)] }, true);
  assert.equal(selection.singleNode(), null);
  selection.set({ nodes: ["a", "b"] });
  assert.equal(selection.singleNode(), null);
});

test("pruning drops what the graph no longer has, and leaves the old sets as they were", () => {
  const selection = new Selection();
  selection.set({ nodes: ["a", "gone"], edges: [edgeKey(EDGE), "x.y>z.w"], notes: ["note_1", "note_9"] });
  const before = selection.nodes;
  selection.prune(GRAPH);
  assert.deepEqual([...selection.nodes], ["a"]);
  assert.deepEqual([...selection.edges], [edgeKey(EDGE)]);
  assert.deepEqual([...selection.notes], ["note_1"]);
  assert.equal(before.size, 2);
});

test("the selected edges as objects, and the nodes and notes a drag moves", () => {
  const selection = new Selection();
  selection.set({ nodes: ["b"], edges: [edgeKey(EDGE)], notes: ["note_1"] });
  assert.deepEqual(selection.edgesIn(GRAPH), [EDGE]);
  assert.deepEqual(selection.movable(GRAPH).map((n) => n.id), ["b", "note_1"]);
  assert.equal(selection.movable(GRAPH)[0], GRAPH.nodes[1], "the graph's own objects, moved in place");
});
