// Tests of the questions the canvas asks of the catalog and the graph
// (static/js/canvas/queries.mjs): palette groups, names, connections, columns, problem targets.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Catalog, Editor, edgeKey } from "../../static/js/canvas/model.mjs";
import {
  columnsFor,
  connectTargets,
  connectionsOf,
  defaultTrigger,
  errorTarget,
  nodeTitle,
  paletteGroups,
  runChoices,
} from "../../static/js/canvas/queries.mjs";
import { SMALL } from "./fixtures.mjs";

const CATEGORIES = [["trigger", "Start"], ["data", "Data"], ["model", "Models"], ["gate", "Gates"], ["notify", "Tell people"]];

function chain() {
  const editor = new Editor(new Catalog(SMALL));
  const start = editor.addNode("manual_trigger").id;
  const data = editor.addNode("dataset").id;
  const train = editor.addNode("train_model").id;
  const notify = editor.addNode("notify").id;
  editor.connect({ source: start, source_port: "start", target: data, target_port: "start" });
  editor.connect({ source: data, source_port: "dataset", target: train, target_port: "train" });
  return { editor, catalog: editor.catalog, ids: { start, data, train, notify } };
}

test("the palette lists matching blocks by category, in the categories' order, without empty ones", () => {
  const catalog = new Catalog(SMALL);
  const all = paletteGroups(catalog, CATEGORIES, "");
  assert.deepEqual(all.map((g) => g.label), ["Start", "Data", "Models", "Tell people"]);
  assert.deepEqual(all[1].blocks.map((b) => b.kind), ["dataset"]);
  assert.deepEqual(paletteGroups(catalog, CATEGORIES, "tell staff").map((g) => [g.category, g.blocks.map((b) => b.kind)]), [["notify", ["notify"]]]);
  assert.deepEqual(paletteGroups(catalog, CATEGORIES, "nothing-like-this"), []);
});

test("a node is named by its label, else its block's label, else its kind", () => {
  const catalog = new Catalog(SMALL);
  assert.equal(nodeTitle(catalog, { kind: "notify", version: 1, label: "Tell the head" }), "Tell the head");
  assert.equal(nodeTitle(catalog, { kind: "notify", version: 1, label: "" }), "Notify people");
  assert.equal(nodeTitle(catalog, { kind: "gone", version: 1, label: "" }), "gone");
});

test("a node's connections read from its side: outputs first-hand, inputs from the other node", () => {
  const { editor, catalog, ids } = chain();
  editor.setLabel(ids.train, "Fit it");
  assert.deepEqual(connectionsOf(editor.graph, catalog, ids.data).map((c) => c.text), [
    "Start by hand (start) → start",
    "dataset → Fit it (train)",
  ]);
  const [incoming] = connectionsOf(editor.graph, catalog, ids.data);
  assert.equal(incoming.edge, editor.graph.edges[0]);
  assert.deepEqual(connectionsOf(editor.graph, catalog, ids.notify), []);
});

test("an output may connect only to the inputs that take its type and are free", () => {
  const { editor, catalog, ids } = chain();
  // the dataset's output: train is taken (one edge only), test is free, notify takes anything
  assert.deepEqual(connectTargets(editor.graph, catalog, ids.data, "dataset"), [
    { target: ids.train, port: "test", text: "Train a model › test" },
    { target: ids.notify, port: "input", text: "Notify people › input" },
  ]);
  // the start may feed the notify block, not a model input nor itself
  assert.deepEqual(connectTargets(editor.graph, catalog, ids.start, "start").map((t) => `${t.target}.${t.port}`), [`${ids.notify}.input`]);
  // no loops: notify's done signal may not go back into the dataset that feeds it
  editor.connect({ source: ids.train, source_port: "model", target: ids.notify, target_port: "input" });
  assert.deepEqual(connectTargets(editor.graph, catalog, ids.notify, "done"), []);
});

test("a node's columns come from the dataset version upstream of it", () => {
  const { editor, ids } = chain();
  const versions = [
    { id: 4, label: "grades v1", columns: ["attendance", "grade"] },
    { id: 5, label: "grades v2", columns: ["attendance", "grade", "absences"] },
  ];
  assert.deepEqual(columnsFor(editor.graph, versions, ids.train), [], "no version chosen yet");
  editor.setParam(ids.data, "dataset_version", 5);
  assert.deepEqual(columnsFor(editor.graph, versions, ids.train), ["attendance", "grade", "absences"]);
  assert.deepEqual(columnsFor(editor.graph, versions, ids.data), ["attendance", "grade", "absences"]);
  assert.deepEqual(columnsFor(editor.graph, versions, ids.notify), [], "not fed by a dataset");
  editor.setParam(ids.data, "dataset_version", 99);
  assert.deepEqual(columnsFor(editor.graph, versions, ids.train), [], "a version the page does not know");
});

test("a problem points at its node, else at its edge, else at nothing", () => {
  const { editor, ids } = chain();
  const graph = editor.graph;
  assert.deepEqual(errorTarget(graph, { message: "x", node: ids.data }), { nodes: [ids.data] });
  assert.deepEqual(errorTarget(graph, { message: "x", edge: 1 }), { edges: [edgeKey(graph.edges[1])] });
  assert.deepEqual(errorTarget(graph, { message: "x", node: "deleted_1", edge: 0 }), { edges: [edgeKey(graph.edges[0])] });
  assert.equal(errorTarget(graph, { message: "x", node: "deleted_1" }), null);
  assert.equal(errorTarget(graph, { message: "x", edge: 7 }), null);
  assert.equal(errorTarget(graph, { message: "The workflow has no trigger." }), null);
});

const TRIGGERS = [
  ...SMALL.map((b) => (b.kind === "manual_trigger" ? { ...b, trigger: true, by_hand: true } : b)),
  { ...SMALL[0], kind: "schedule_trigger", label: "Start on a schedule", trigger: true, by_hand: false },
  { ...SMALL[0], kind: "on_alert_trigger", label: "Start on an alert", trigger: true, by_hand: false },
  { kind: "alerted_deployment", version: 1, category: "deploy", label: "Deployment of the alerted school", help: "", icon: "crosshair", needs_school: true, inputs: [{ name: "start", types: ["trigger"], label: "start", required: true, many: false }], outputs: [{ name: "deployment", types: ["deployment"], label: "deployment", required: true, many: false }], params_schema: { properties: {} } },
];

test("runChoices lists each trigger, and asks a school of an alert trigger whose blocks need one", () => {
  const catalog = new Catalog(TRIGGERS);
  const graph = {
    nodes: [
      { id: "go", kind: "manual_trigger", version: 1, params: {}, label: "" },
      { id: "weekly", kind: "schedule_trigger", version: 1, params: {}, label: "Every Monday" },
      { id: "alarm", kind: "on_alert_trigger", version: 1, params: {}, label: "" },
      { id: "tell", kind: "notify", version: 1, params: {}, label: "" },
      { id: "which", kind: "alerted_deployment", version: 1, params: {}, label: "" },
    ],
    edges: [
      { source: "go", source_port: "start", target: "tell", target_port: "input" },
      { source: "weekly", source_port: "start", target: "tell", target_port: "input" },
      { source: "alarm", source_port: "start", target: "which", target_port: "start" },
    ],
    notes: [],
  };
  const choices = runChoices(graph, catalog);
  assert.deepEqual(choices, [
    { id: "go", label: "Start by hand", byHand: true, needsSchool: false },
    { id: "weekly", label: "Every Monday", byHand: false, needsSchool: false },
    { id: "alarm", label: "Start on an alert", byHand: false, needsSchool: true },
  ]);
  assert.equal(defaultTrigger(choices), "go");
  assert.equal(defaultTrigger(choices.slice(1)), "");
  assert.equal(defaultTrigger(choices.slice(1, 2)), "weekly");
  assert.deepEqual(runChoices({ nodes: [], edges: [], notes: [] }, catalog), []);
});
