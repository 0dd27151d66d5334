// What is selected on the canvas: node ids, edge keys (model.edgeKey) and note ids. No DOM:
// tests/js/selection.test.mjs.

import { edgeKey } from "./model.mjs";

export class Selection {
  constructor() {
    this.clear();
  }

  clear() {
    this.nodes = new Set();
    this.edges = new Set();
    this.notes = new Set();
  }

  /** Select these (adding to what is selected when `add`, else instead of it). */
  set({ nodes = [], edges = [], notes = [] } = {}, add = false) {
    if (!add) this.clear();
    nodes.forEach((id) => this.nodes.add(id));
    edges.forEach((key) => this.edges.add(key));
    notes.forEach((id) => this.notes.add(id));
  }

  toggleNode(id) {
    if (this.nodes.has(id)) this.nodes.delete(id);
    else this.nodes.add(id);
  }

  get size() {
    return this.nodes.size + this.edges.size + this.notes.size;
  }

  /** The id of the one selected node, if exactly one node (and no edge) is selected. */
  singleNode() {
    if (this.nodes.size !== 1 || this.edges.size) return null;
    return [...this.nodes][0];
  }

  /** Drop what no longer exists in `graph` (after undo, delete...). */
  prune(graph) {
    const ids = new Set(graph.nodes.map((n) => n.id));
    const notes = new Set(graph.notes.map((n) => n.id));
    const edges = new Set(graph.edges.map(edgeKey));
    this.nodes = new Set([...this.nodes].filter((id) => ids.has(id)));
    this.notes = new Set([...this.notes].filter((id) => notes.has(id)));
    this.edges = new Set([...this.edges].filter((key) => edges.has(key)));
  }

  /** The selected edges of `graph`, as edge objects. */
  edgesIn(graph) {
    return graph.edges.filter((e) => this.edges.has(edgeKey(e)));
  }

  /** The selected nodes and notes of `graph`: what a drag moves. */
  movable(graph) {
    return [
      ...graph.nodes.filter((n) => this.nodes.has(n.id)),
      ...graph.notes.filter((n) => this.notes.has(n.id)),
    ];
  }
}
