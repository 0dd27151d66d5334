// The workflow canvas: palette, nodes with typed ports, edges, notes, side panel, live server
// validation, save and run with live step states. This module holds the canvas's state and
// wires the modules that do the work:
//   model.mjs      the graph, the catalog, port rules, undo/redo (no DOM)
//   selection.mjs  what is selected; geometry.mjs the view, zoom and fit (no DOM)
//   api.mjs        the server's endpoints, over a given fetch; sync.mjs validate, save and run
//   palette.mjs    the block palette; render.mjs nodes, notes and edges; panel.mjs the side
//                  panel (form.mjs its parameter form); status.mjs buttons, problems, run bar
//   interact.mjs   toolbar, pointer and keyboard input (keys.mjs: which key does what)
//   queries.mjs and text.mjs  questions asked of the graph, and the words shown (no DOM)

import { makeApi } from "./api.mjs";
import { fitView, NODE_SIZE, toWorld, viewTransform, zoomAt, zoomLabel } from "./geometry.mjs";
import { bindKeyboard, bindToolbar, bindViewport } from "./interact.mjs";
import { Catalog, Editor, bounds, placeErrors } from "./model.mjs";
import { buildPalette } from "./palette.mjs";
import { renderPanel } from "./panel.mjs";
import { focusNode, renderGraph, renderSelection } from "./render.mjs";
import { Selection } from "./selection.mjs";
import { announce, renderProblems, renderStatus } from "./status.mjs";
import { validateSoon, watchRun } from "./sync.mjs";
import { deletedText, duplicatedText } from "./text.mjs";

function readJSON(id) {
  return JSON.parse(document.getElementById(id).textContent);
}

export class Canvas {
  constructor(root) {
    this.root = root;
    this.$ = (selector) => root.querySelector(selector);
    this.config = readJSON("canvas-config");
    this.catalog = new Catalog(readJSON("block-catalog"));
    this.editor = new Editor(this.catalog, readJSON("canvas-graph"));
    this.api = makeApi({
      fetch: (...args) => window.fetch(...args),
      csrfToken: this.config.csrf,
      urls: this.config,
    });
    this.readOnly = this.config.readOnly;
    this.selection = new Selection();
    this.view = { x: 0, y: 0, k: 1 };
    this.errors = []; // the last validation's errors, with the page's standing ones
    this.placed = placeErrors([]); // the same, sorted onto nodes, ports and edges
    this.validatedRevision = -1;
    this.savedRevision = 0;
    this.run = null; // the run shown: {id, status, overlay, steps by node id}
    this.panelKey = null; // what the side panel shows: "node@revision" or "none"
    this.fromPanel = false; // a change made in the side panel, which keeps its inputs
    this.dragging = false;
    this.redrawAfterDrag = false;
    this.viewport = this.$("#viewport");
    this.world = this.$("#world");
    this.edgeLayer = this.$("#edges");
    this.nodeLayer = this.$("#nodes");
    this.editor.onChange(() => this.changed());
    buildPalette(this);
    bindToolbar(this);
    bindViewport(this);
    bindKeyboard(this);
    this.render();
    this.fit();
    // a run asked for (?run=), else the newest run: a reload shows where it is or ended
    const shown = this.config.runId || this.config.lastRun?.id;
    if (shown) watchRun(this, shown);
    if (!this.readOnly) validateSoon(this, 0);
    window.addEventListener("beforeunload", (event) => {
      if (this.dirty) event.preventDefault();
    });
  }

  get dirty() {
    return !this.readOnly && this.editor.revision !== this.savedRevision;
  }

  /** After every change of the graph (an edit, undo or redo). */
  changed() {
    if (this.run && this.run.overlay && !this.readOnly) {
      this.run.overlay = false; // an edit leaves the run's picture: the canvas shows the design
    }
    this.selection.prune(this.editor.graph);
    this.render();
    if (!this.fromPanel) renderPanel(this);
    validateSoon(this);
  }

  render() {
    const focused = document.activeElement?.closest?.("[data-node-id]")?.dataset.nodeId;
    renderGraph(this);
    renderStatus(this);
    renderProblems(this);
    if (focused) focusNode(this, focused, false);
  }

  // --- selection and the commands on it -------------------------------------------------------
  select(items = {}, add = false) {
    this.selection.set(items, add);
    renderSelection(this);
    renderPanel(this);
  }

  toggleNode(id) {
    this.selection.toggleNode(id);
    renderSelection(this);
    renderPanel(this);
  }

  selectedNode() {
    const id = this.selection.singleNode();
    return id === null ? null : this.editor.node(id);
  }

  addBlock(kind, position) {
    const node = this.editor.addNode(kind, position);
    this.select({ nodes: [node.id] });
    focusNode(this, node.id);
    this.announce(`Added ${this.catalog.latest(kind).label}.`);
  }

  deleteSelection() {
    const { selection, editor } = this;
    if (this.readOnly || !selection.size) return;
    const count = selection.size;
    const edges = selection.edgesIn(editor.graph);
    editor.remove({ nodes: [...selection.nodes], edges, notes: [...selection.notes] });
    this.select();
    this.announce(deletedText(count));
  }

  duplicateSelection() {
    if (this.readOnly || !this.selection.nodes.size) return;
    const ids = this.editor.duplicate([...this.selection.nodes]);
    this.select({ nodes: ids });
    this.announce(duplicatedText(ids.length));
  }

  announce(message) {
    announce(this, message);
  }

  // --- the view: screen to world, zoom, pan and fit --------------------------------------------
  toWorld(clientX, clientY) {
    return toWorld(this.view, this.viewport.getBoundingClientRect(), clientX, clientY);
  }

  applyView() {
    this.world.style.transform = viewTransform(this.view);
    const zoom = this.$("#zoom-level");
    if (zoom) zoom.textContent = zoomLabel(this.view.k);
  }

  zoomBy(factor, clientX, clientY) {
    this.view = zoomAt(this.view, this.viewport.getBoundingClientRect(), factor, clientX, clientY);
    this.applyView();
  }

  fit() {
    const box = bounds(this.editor.graph, NODE_SIZE);
    this.view = fitView(box, this.viewport.getBoundingClientRect());
    this.applyView();
  }
}

const root = document.getElementById("canvas-app");
if (root) window.edumlopsCanvas = new Canvas(root);
