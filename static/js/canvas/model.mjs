// The canvas's model: the graph being edited, the block catalog, port compatibility, node
// states and undo/redo. No DOM here, so it runs (and is tested) under Node as well as in the
// browser: tests/js/model.test.mjs.

/** The block catalog from GET /api/blocks/, indexed by kind and version. */
export class Catalog {
  constructor(blocks) {
    this.blocks = blocks;
    this.byKey = new Map(blocks.map((b) => [`${b.kind}@${b.version}`, b]));
  }

  get(kind, version = 1) {
    return this.byKey.get(`${kind}@${version}`) || null;
  }

  /** The newest version of a kind. */
  latest(kind) {
    return this.blocks
      .filter((b) => b.kind === kind)
      .reduce((best, b) => (!best || b.version > best.version ? b : best), null);
  }

  /** Blocks whose label, help, kind or category contain every word of `query`. */
  search(query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    return this.blocks.filter((b) => {
      const text = `${b.label} ${b.help} ${b.kind} ${b.category}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
  }
}

export const PORT_TYPE_LABELS = {
  trigger: "a start",
  signal: "a done signal",
  dataset: "a dataset",
  model: "a model",
  report: "a report",
  deployment: "a deployment",
};

function typesText(types) {
  const names = types.map((t) => PORT_TYPE_LABELS[t] || t);
  return names.length === 1 ? names[0] : `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`;
}

function inPort(block, name) {
  return block ? block.inputs.find((p) => p.name === name) || null : null;
}

function outPort(block, name) {
  return block ? block.outputs.find((p) => p.name === name) || null : null;
}

/** Would adding `edge` make a path from its target back to its source? */
export function makesCycle(graph, edge) {
  const next = new Map();
  for (const e of graph.edges) {
    if (!next.has(e.source)) next.set(e.source, []);
    next.get(e.source).push(e.target);
  }
  const seen = new Set();
  const stack = [edge.target];
  while (stack.length) {
    const id = stack.pop();
    if (id === edge.source) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(next.get(id) || []));
  }
  return false;
}

/**
 * May an edge go from `source.source_port` to `target.target_port`? Returns {ok: true} or
 * {ok: false, reason} with a sentence that says what is wrong and what to do instead.
 */
export function canConnect(graph, catalog, edge) {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  const source = nodes.get(edge.source);
  const target = nodes.get(edge.target);
  if (!source || !target) return { ok: false, reason: "Both ends must be blocks on the canvas." };
  const sBlock = catalog.get(source.kind, source.version);
  const tBlock = catalog.get(target.kind, target.version);
  const out = outPort(sBlock, edge.source_port);
  const inp = inPort(tBlock, edge.target_port);
  if (!out) return { ok: false, reason: `"${edge.source_port}" is not an output of this block.` };
  if (!inp) return { ok: false, reason: `"${edge.target_port}" is not an input of this block.` };
  if (source.id === target.id) {
    return { ok: false, reason: "A block cannot feed itself: connect it to another block." };
  }
  const type = out.types[0];
  if (!inp.types.includes(type)) {
    return {
      ok: false,
      reason:
        `"${out.label}" gives ${typesText([type])}, but "${inp.label}" takes ` +
        `${typesText(inp.types)}. Connect an output that gives ${typesText(inp.types)}.`,
    };
  }
  const same = graph.edges.some(
    (e) =>
      e.source === edge.source &&
      e.source_port === edge.source_port &&
      e.target === edge.target &&
      e.target_port === edge.target_port,
  );
  if (same) return { ok: false, reason: "These two ports are already connected." };
  if (!inp.many && graph.edges.some((e) => e.target === edge.target && e.target_port === inp.name)) {
    return {
      ok: false,
      reason:
        `"${inp.label}" already has a connection and takes only one: delete that edge first.`,
    };
  }
  if (makesCycle(graph, edge)) {
    return {
      ok: false,
      reason: "This edge would make a loop, and a workflow must flow one way: connect forward.",
    };
  }
  return { ok: true };
}

/** The names of required parameters that have no value yet. */
export function missingParams(block, params) {
  const schema = (block && block.params_schema) || {};
  return (schema.required || []).filter(
    (name) => params[name] === undefined || params[name] === null || params[name] === "",
  );
}

/** The required inputs with no edge into them. */
export function unconnectedInputs(graph, block, nodeId) {
  if (!block) return [];
  return block.inputs
    .filter((p) => p.required)
    .filter((p) => !graph.edges.some((e) => e.target === nodeId && e.target_port === p.name))
    .map((p) => p.name);
}

/**
 * Sort the server's validation errors (POST /api/workflows/validate/) onto what they are about:
 * nodes, ports ("node.port"), edges (by index) and the graph as a whole.
 */
export function placeErrors(errors) {
  const placed = { nodes: {}, ports: {}, edges: {}, graph: [] };
  const add = (map, key, error) => {
    (map[key] ||= []).push(error);
  };
  for (const error of errors) {
    if (error.edge !== undefined && error.edge !== null) add(placed.edges, error.edge, error);
    if (error.node && error.port) add(placed.ports, `${error.node}.${error.port}`, error);
    if (error.node) add(placed.nodes, error.node, error);
    else if (error.edge === undefined || error.edge === null) placed.graph.push(error);
  }
  return placed;
}

/** A node's design-time state, as KNIME shows it: not configured, invalid or ready. */
export function designState(graph, catalog, node, placed) {
  const block = catalog.get(node.kind, node.version);
  if (!block) return "invalid";
  if (missingParams(block, node.params).length) return "not_configured";
  if ((placed.nodes[node.id] || []).length) return "invalid";
  return "ready";
}

export const STATE_LABELS = {
  not_configured: "not configured",
  invalid: "invalid",
  ready: "ready",
  queued: "queued",
  running: "running",
  succeeded: "passed",
  failed: "failed",
  blocked: "blocked",
  waiting_approval: "waiting for approval",
  waiting: "waiting",
  skipped: "skipped",
  cancelled: "cancelled",
  rejected: "rejected",
};

/** Snapshot undo/redo: each entry is the whole graph as JSON, so any change can be undone. */
export class History {
  constructor(limit = 200) {
    this.limit = limit;
    this.past = [];
    this.future = [];
  }

  record(snapshot) {
    this.past.push(snapshot);
    if (this.past.length > this.limit) this.past.shift();
    this.future = [];
  }

  undo(current) {
    if (!this.past.length) return null;
    this.future.push(current);
    return this.past.pop();
  }

  redo(current) {
    if (!this.future.length) return null;
    this.past.push(current);
    return this.future.pop();
  }

  get canUndo() {
    return this.past.length > 0;
  }

  get canRedo() {
    return this.future.length > 0;
  }
}

function clone(value) {
  return JSON.parse(JSON.stringify(value));
}

/** The graph being edited, with every change recorded for undo and announced to listeners. */
export class Editor {
  constructor(catalog, graph = {}) {
    this.catalog = catalog;
    this.graph = { nodes: [], edges: [], notes: [], ...clone(graph) };
    this.history = new History();
    this.listeners = [];
    this.revision = 0;
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  snapshot() {
    return JSON.stringify(this.graph);
  }

  /** Run `mutate` as one undoable change; `before` is the snapshot to go back to. */
  change(mutate, before = this.snapshot()) {
    const result = mutate(this.graph);
    if (this.snapshot() !== before) {
      this.history.record(before);
      this.changed();
    }
    return result;
  }

  /** Record an in-place change (e.g. a drag that moved nodes live) made since `before`. */
  commit(before) {
    if (this.snapshot() === before) return false;
    this.history.record(before);
    this.changed();
    return true;
  }

  changed() {
    this.revision += 1;
    for (const listener of this.listeners) listener(this);
  }

  node(id) {
    return this.graph.nodes.find((n) => n.id === id) || null;
  }

  block(node) {
    return this.catalog.get(node.kind, node.version);
  }

  newId(base) {
    const taken = new Set([...this.graph.nodes, ...this.graph.notes].map((n) => n.id));
    const stem = base.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 50) || "node";
    for (let i = 1; ; i += 1) {
      const id = `${stem}_${i}`;
      if (!taken.has(id)) return id;
    }
  }

  addNode(kind, position = { x: 40, y: 40 }) {
    const block = this.catalog.latest(kind);
    if (!block) throw new Error(`There is no block of kind "${kind}".`);
    const node = {
      id: this.newId(kind),
      kind,
      version: block.version,
      params: {},
      position: { x: Math.round(position.x), y: Math.round(position.y) },
      label: "",
    };
    this.change((g) => g.nodes.push(node));
    return node;
  }

  moveNodes(ids, dx, dy, before) {
    this.change((g) => {
      for (const node of g.nodes) {
        if (ids.includes(node.id)) {
          node.position = {
            x: Math.round(node.position.x + dx),
            y: Math.round(node.position.y + dy),
          };
        }
      }
      for (const note of g.notes) {
        if (ids.includes(note.id)) {
          note.position = {
            x: Math.round(note.position.x + dx),
            y: Math.round(note.position.y + dy),
          };
        }
      }
    }, before);
  }

  /** Remove nodes (with their edges), notes and edges in one undoable step. */
  remove({ nodes = [], edges = [], notes = [] }) {
    const edgeKeys = new Set(edges.map(edgeKey));
    this.change((g) => {
      g.nodes = g.nodes.filter((n) => !nodes.includes(n.id));
      g.notes = g.notes.filter((n) => !notes.includes(n.id));
      g.edges = g.edges.filter(
        (e) => !nodes.includes(e.source) && !nodes.includes(e.target) && !edgeKeys.has(edgeKey(e)),
      );
    });
  }

  /** Copy nodes with their parameters and the edges among them; returns the new ids. */
  duplicate(ids, offset = 40) {
    const mapping = new Map();
    this.change((g) => {
      for (const node of g.nodes.filter((n) => ids.includes(n.id))) {
        const copy = clone(node);
        copy.id = this.newId(node.kind);
        copy.position = { x: node.position.x + offset, y: node.position.y + offset };
        mapping.set(node.id, copy.id);
        g.nodes.push(copy);
      }
      for (const e of g.edges.filter((e) => mapping.has(e.source) && mapping.has(e.target))) {
        g.edges.push({ ...e, source: mapping.get(e.source), target: mapping.get(e.target) });
      }
    });
    return [...mapping.values()];
  }

  connect(edge) {
    const verdict = canConnect(this.graph, this.catalog, edge);
    if (verdict.ok) this.change((g) => g.edges.push({ ...edge }));
    return verdict;
  }

  /** Set (or, with undefined, clear back to the default) one parameter of a node. */
  setParam(id, name, value) {
    this.change((g) => {
      const node = g.nodes.find((n) => n.id === id);
      if (!node) return;
      if (value === undefined) delete node.params[name];
      else node.params[name] = value;
    });
  }

  setLabel(id, label) {
    this.change((g) => {
      const node = g.nodes.find((n) => n.id === id);
      if (node) node.label = label;
    });
  }

  addNote(text, position) {
    const note = { id: this.newId("note"), text, position: { ...position } };
    this.change((g) => g.notes.push(note));
    return note;
  }

  setNoteText(id, text) {
    this.change((g) => {
      const note = g.notes.find((n) => n.id === id);
      if (note) note.text = text;
    });
  }

  undo() {
    const previous = this.history.undo(this.snapshot());
    if (previous === null) return false;
    this.graph = JSON.parse(previous);
    this.changed();
    return true;
  }

  redo() {
    const next = this.history.redo(this.snapshot());
    if (next === null) return false;
    this.graph = JSON.parse(next);
    this.changed();
    return true;
  }

  toJSON() {
    return clone(this.graph);
  }
}

export function edgeKey(e) {
  return `${e.source}.${e.source_port}>${e.target}.${e.target_port}`;
}

/** The bounding box of nodes and notes, for "fit to screen". */
export function bounds(graph, size = { width: 200, height: 90 }) {
  const items = [...graph.nodes, ...graph.notes];
  if (!items.length) return null;
  const xs = items.map((n) => n.position.x);
  const ys = items.map((n) => n.position.y);
  return {
    x: Math.min(...xs),
    y: Math.min(...ys),
    width: Math.max(...xs) + size.width - Math.min(...xs),
    height: Math.max(...ys) + size.height - Math.min(...ys),
  };
}
