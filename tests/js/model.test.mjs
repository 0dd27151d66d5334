// Tests of the canvas's model (static/js/canvas/model.mjs) under Node's own test runner:
// `node --test tests/js/*.test.mjs`. tests/workflows/test_canvas_js.py runs them inside pytest,
// with the real block catalog that GET /api/blocks/ serves (written to EDUMLOPS_CATALOG by it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  Catalog,
  Editor,
  History,
  bounds,
  canConnect,
  designState,
  edgeKey,
  makesCycle,
  missingParams,
  placeErrors,
  unconnectedInputs,
} from "../../static/js/canvas/model.mjs";
import { ANY, SMALL } from "./fixtures.mjs";

function editorWith(...kinds) {
  const editor = new Editor(new Catalog(SMALL));
  const ids = kinds.map((kind, i) => editor.addNode(kind, { x: i * 220, y: 0 }).id);
  return { editor, ids };
}

test("catalog search matches every word in label, help, kind or category", () => {
  const catalog = new Catalog(SMALL);
  assert.deepEqual(catalog.search("dataset").map((b) => b.kind), ["dataset", "train_model"].filter((k) => k === "dataset"));
  assert.deepEqual(catalog.search("tell staff").map((b) => b.kind), ["notify"]);
  assert.equal(catalog.search("").length, SMALL.length);
  assert.equal(catalog.search("nothing-like-this").length, 0);
});

test("an output connects to an input that takes its type", () => {
  const { editor, ids } = editorWith("manual_trigger", "dataset", "train_model");
  const [start, data, train] = ids;
  assert.deepEqual(editor.connect({ source: start, source_port: "start", target: data, target_port: "start" }), { ok: true });
  assert.deepEqual(editor.connect({ source: data, source_port: "dataset", target: train, target_port: "train" }), { ok: true });
  assert.equal(editor.graph.edges.length, 2);
});

test("a wrong type is refused with a sentence naming both types and the fix", () => {
  const { editor, ids } = editorWith("manual_trigger", "train_model");
  const verdict = editor.connect({ source: ids[0], source_port: "start", target: ids[1], target_port: "train" });
  assert.equal(verdict.ok, false);
  assert.match(verdict.reason, /gives a start, but "train" takes a dataset\. Connect an output that gives a dataset\./);
  assert.equal(editor.graph.edges.length, 0);
  assert.equal(editor.history.canUndo, true); // only the two additions
  assert.equal(editor.history.past.length, 2);
});

test("a single input takes one edge; a join input takes several; duplicates and loops are refused", () => {
  const { editor, ids } = editorWith("manual_trigger", "manual_trigger", "dataset", "notify", "notify");
  const [s1, s2, data, n1, n2] = ids;
  assert.ok(editor.connect({ source: s1, source_port: "start", target: data, target_port: "start" }).ok);
  const second = editor.connect({ source: s2, source_port: "start", target: data, target_port: "start" });
  assert.match(second.reason, /already has a connection/);
  assert.ok(editor.connect({ source: s1, source_port: "start", target: n1, target_port: "input" }).ok);
  assert.ok(editor.connect({ source: s2, source_port: "start", target: n1, target_port: "input" }).ok);
  assert.match(editor.connect({ source: s2, source_port: "start", target: n1, target_port: "input" }).reason, /already connected/);
  assert.ok(editor.connect({ source: n1, source_port: "done", target: n2, target_port: "input" }).ok);
  const loop = editor.connect({ source: n2, source_port: "done", target: n1, target_port: "input" });
  assert.match(loop.reason, /loop/);
  assert.match(editor.connect({ source: n1, source_port: "done", target: n1, target_port: "input" }).reason, /cannot feed itself/);
  assert.equal(makesCycle(editor.graph, { source: n2, target: n1 }), true);
  assert.equal(makesCycle(editor.graph, { source: n1, target: n2 }), false);
});

test("unknown ports are refused", () => {
  const { editor, ids } = editorWith("manual_trigger", "notify");
  assert.match(canConnect(editor.graph, editor.catalog, { source: ids[0], source_port: "nope", target: ids[1], target_port: "input" }).reason, /not an output/);
  assert.match(canConnect(editor.graph, editor.catalog, { source: ids[0], source_port: "start", target: ids[1], target_port: "nope" }).reason, /not an input/);
});

test("undo restores a deleted node with its parameters and edges; redo deletes it again", () => {
  const { editor, ids } = editorWith("manual_trigger", "dataset");
  const [start, data] = ids;
  editor.connect({ source: start, source_port: "start", target: data, target_port: "start" });
  editor.setParam(data, "dataset_version", 7);
  editor.remove({ nodes: [data] });
  assert.equal(editor.node(data), null);
  assert.equal(editor.graph.edges.length, 0);
  assert.ok(editor.undo());
  assert.equal(editor.node(data).params.dataset_version, 7);
  assert.equal(editor.graph.edges.length, 1);
  assert.ok(editor.undo()); // the parameter change
  assert.equal(editor.node(data).params.dataset_version, undefined);
  assert.ok(editor.redo());
  assert.equal(editor.node(data).params.dataset_version, 7);
  assert.ok(editor.redo());
  assert.equal(editor.node(data), null);
  assert.equal(editor.redo(), false);
});

test("a new change after undo drops the redo future", () => {
  const { editor, ids } = editorWith("notify");
  editor.setParam(ids[0], "title", "A");
  editor.undo();
  assert.equal(editor.history.canRedo, true);
  editor.setParam(ids[0], "title", "B");
  assert.equal(editor.history.canRedo, false);
});

test("a change that changes nothing is not recorded", () => {
  const { editor, ids } = editorWith("notify");
  const before = editor.history.past.length;
  editor.setLabel(ids[0], "");
  editor.moveNodes(ids, 0, 0);
  assert.equal(editor.history.past.length, before);
});

test("a drag moves nodes in place and commits once", () => {
  const { editor, ids } = editorWith("notify");
  const before = editor.snapshot();
  editor.graph.nodes[0].position = { x: 300, y: 40 };
  assert.equal(editor.commit(before), true);
  assert.equal(editor.commit(editor.snapshot()), false);
  editor.undo();
  assert.deepEqual(editor.node(ids[0]).position, { x: 0, y: 0 });
});

test("duplicate copies parameters and the edges among the copied nodes only", () => {
  const { editor, ids } = editorWith("manual_trigger", "dataset", "train_model");
  const [start, data, train] = ids;
  editor.connect({ source: start, source_port: "start", target: data, target_port: "start" });
  editor.connect({ source: data, source_port: "dataset", target: train, target_port: "train" });
  editor.setParam(data, "dataset_version", 3);
  const copies = editor.duplicate([data, train]);
  assert.equal(copies.length, 2);
  assert.notDeepEqual(copies, [data, train]);
  assert.equal(editor.node(copies[0]).params.dataset_version, 3);
  const copied = editor.graph.edges.filter((e) => copies.includes(e.source) || copies.includes(e.target));
  assert.deepEqual(copied.map(edgeKey), [`${copies[0]}.dataset>${copies[1]}.train`]);
  editor.undo();
  assert.equal(editor.graph.nodes.length, 3);
});

test("node ids are unique, valid for the server and never reuse a note's id", () => {
  const { editor } = editorWith("notify", "notify");
  const note = editor.addNote("hello", { x: 0, y: 0 });
  const ids = [...editor.graph.nodes.map((n) => n.id), note.id];
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]+$/);
  editor.setNoteText(note.id, "changed");
  assert.equal(editor.graph.notes[0].text, "changed");
});

test("design states: not configured, invalid, ready", () => {
  const { editor, ids } = editorWith("manual_trigger", "dataset");
  const [start, data] = ids;
  const placed = placeErrors([{ message: "bad", code: "x", node: start }]);
  assert.equal(designState(editor.graph, editor.catalog, editor.node(data), placed), "not_configured");
  assert.equal(designState(editor.graph, editor.catalog, editor.node(start), placed), "invalid");
  editor.setParam(data, "dataset_version", 1);
  assert.equal(designState(editor.graph, editor.catalog, editor.node(data), placeErrors([])), "ready");
  assert.deepEqual(missingParams(editor.block(editor.node(data)), {}), ["dataset_version"]);
  assert.deepEqual(unconnectedInputs(editor.graph, editor.block(editor.node(data)), data), ["start"]);
  assert.equal(designState(editor.graph, editor.catalog, { id: "x", kind: "gone", version: 1, params: {} }, placed), "invalid");
});

test("server errors are placed on nodes, ports, edges, or the graph as a whole", () => {
  const placed = placeErrors([
    { message: "a", code: "missing_input", node: "n1", port: "input" },
    { message: "b", code: "type_mismatch", node: "n2", port: "model", edge: 0 },
    { message: "c", code: "no_trigger" },
    { message: "d", code: "unknown_node", edge: 3 },
  ]);
  assert.equal(placed.nodes.n1.length, 1);
  assert.equal(placed.ports["n1.input"].length, 1);
  assert.equal(placed.edges[0][0].message, "b");
  assert.equal(placed.edges[3][0].message, "d");
  assert.deepEqual(placed.graph.map((e) => e.message), ["c"]);
});

test("history is bounded", () => {
  const history = new History(3);
  for (const s of ["a", "b", "c", "d"]) history.record(s);
  assert.deepEqual(history.past, ["b", "c", "d"]);
});

test("bounds cover nodes and notes", () => {
  assert.equal(bounds({ nodes: [], notes: [] }), null);
  assert.deepEqual(
    bounds({ nodes: [{ position: { x: 10, y: 20 } }], notes: [{ position: { x: 300, y: -5 } }] }, { width: 200, height: 90 }),
    { x: 10, y: -5, width: 490, height: 115 },
  );
});

test("the real block catalog: every block's ports have known types and outputs one type", { skip: !process.env.EDUMLOPS_CATALOG }, () => {
  const blocks = JSON.parse(readFileSync(process.env.EDUMLOPS_CATALOG, "utf8"));
  const catalog = new Catalog(blocks);
  assert.ok(blocks.length >= 20);
  for (const block of blocks) {
    for (const p of block.outputs) assert.equal(p.types.length, 1, `${block.kind}.${p.name}`);
    for (const p of [...block.inputs, ...block.outputs]) for (const t of p.types) assert.ok(ANY.includes(t), t);
  }
  // the training chain connects port by port, and a start cannot feed a model input
  const editor = new Editor(catalog);
  const start = editor.addNode("manual_trigger").id;
  const data = editor.addNode("dataset").id;
  const split = editor.addNode("split").id;
  const train = editor.addNode("train_model").id;
  const bias = editor.addNode("bias_gate").id;
  assert.ok(editor.connect({ source: start, source_port: "start", target: data, target_port: "start" }).ok);
  assert.ok(editor.connect({ source: data, source_port: "dataset", target: split, target_port: "dataset" }).ok);
  assert.ok(editor.connect({ source: split, source_port: "train", target: train, target_port: "train" }).ok);
  assert.ok(editor.connect({ source: split, source_port: "test", target: train, target_port: "test" }).ok);
  assert.ok(editor.connect({ source: train, source_port: "model", target: bias, target_port: "model" }).ok);
  assert.equal(editor.connect({ source: start, source_port: "start", target: bias, target_port: "model" }).ok, false);
  assert.equal(designState(editor.graph, catalog, editor.node(data), placeErrors([])), "not_configured");
});
