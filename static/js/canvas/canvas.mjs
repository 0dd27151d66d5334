// The workflow canvas: palette, nodes with typed ports, edges, notes, side panel, live server
// validation, save and run with live step states. The graph logic lives in model.mjs; this
// module draws it and turns pointer and keyboard input into Editor calls.

import { el } from "./dom.mjs";
import { buildForm } from "./form.mjs";
import {
  Catalog,
  Editor,
  STATE_LABELS,
  bounds,
  canConnect,
  designState,
  edgeKey,
  missingParams,
  placeErrors,
} from "./model.mjs";

const ICONS = {
  play: "▶", clock: "◷", calendar: "▦", bell: "♪", database: "◫", "eye-off": "◌",
  scissors: "✂", cpu: "⚙", "check-circle": "✓", scale: "⚖", package: "▣", tag: "⌗",
  "file-text": "☰", "user-check": "☑", filter: "▽", flag: "⚑", "trending-up": "↗",
  "rotate-ccw": "↺", archive: "▤", snowflake: "❄", crosshair: "✛", activity: "∿",
  target: "◎", hourglass: "◔", server: "⌸", square: "□",
};
const STATE_SYMBOLS = {
  not_configured: "○", invalid: "✕", ready: "●", queued: "…", running: "▶", succeeded: "✓",
  failed: "✕", blocked: "⊘", waiting_approval: "⏸", waiting: "◔", skipped: "–", cancelled: "⊘",
  rejected: "✕",
};
const FINISHED = new Set(["succeeded", "failed", "rejected", "cancelled"]);
const NODE_SIZE = { width: 200, height: 96 };

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function readJSON(id) {
  return JSON.parse(document.getElementById(id).textContent);
}

export class Canvas {
  constructor(root) {
    this.root = root;
    this.config = readJSON("canvas-config");
    this.catalog = new Catalog(readJSON("block-catalog"));
    this.editor = new Editor(this.catalog, readJSON("canvas-graph"));
    this.readOnly = this.config.readOnly;
    this.selection = { nodes: new Set(), edges: new Set(), notes: new Set() };
    this.view = { x: 0, y: 0, k: 1 };
    this.errors = [];
    this.placed = placeErrors([]);
    this.validatedRevision = -1;
    this.savedRevision = 0;
    this.run = null;
    this.lastPanelKey = null;
    this.$ = (selector) => root.querySelector(selector);
    this.viewport = this.$("#viewport");
    this.world = this.$("#world");
    this.edgeLayer = this.$("#edges");
    this.nodeLayer = this.$("#nodes");
    this.editor.onChange(() => this.changed());
    this.buildPalette();
    this.bindToolbar();
    this.bindViewport();
    this.bindKeyboard();
    this.render();
    this.fit();
    if (this.config.runId) this.watchRun(this.config.runId);
    if (!this.readOnly) this.validateSoon(0);
    window.addEventListener("beforeunload", (event) => {
      if (this.dirty) event.preventDefault();
    });
  }

  get dirty() {
    return !this.readOnly && this.editor.revision !== this.savedRevision;
  }

  // --- palette -------------------------------------------------------------------------------
  buildPalette() {
    const palette = this.$("#palette");
    if (!palette) return;
    const list = this.$("#palette-list");
    const search = this.$("#palette-search");
    const render = () => {
      list.replaceChildren();
      const found = new Set(this.catalog.search(search.value).map((b) => b.kind));
      for (const [category, label] of this.config.categories) {
        const blocks = this.catalog.blocks.filter(
          (b) => b.category === category && found.has(b.kind),
        );
        if (!blocks.length) continue;
        const section = el("section", { class: "palette-group" });
        section.append(el("h3", { text: label }));
        for (const block of blocks) {
          const item = el(
            "button",
            {
              type: "button",
              class: `palette-item cat-${block.category}`,
              draggable: "true",
              "data-kind": block.kind,
              title: block.help,
              "aria-label": `Add ${block.label}: ${block.help}`,
            },
            el("span", { class: "icon", "aria-hidden": "true", text: ICONS[block.icon] || "□" }),
            el("span", { class: "name", text: block.label }),
          );
          item.addEventListener("dragstart", (event) => {
            event.dataTransfer.setData("application/x-edumlops-block", block.kind);
            event.dataTransfer.setData("text/plain", block.kind);
            event.dataTransfer.effectAllowed = "copy";
          });
          item.addEventListener("click", () => {
            // keyboard and click: add at the centre of what is in view
            const rect = this.viewport.getBoundingClientRect();
            const at = this.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 3);
            const offset = (this.editor.graph.nodes.length % 5) * 24;
            this.addBlock(block.kind, { x: at.x - 100 + offset, y: at.y - 40 + offset });
          });
          section.append(item);
        }
        list.append(section);
      }
      if (!list.children.length) list.append(el("p", { class: "muted", text: "No block matches." }));
    };
    search.addEventListener("input", render);
    render();
  }

  addBlock(kind, position) {
    const node = this.editor.addNode(kind, position);
    this.select({ nodes: [node.id] });
    this.focusNode(node.id);
    this.announce(`Added ${this.catalog.latest(kind).label}.`);
  }

  // --- toolbar -------------------------------------------------------------------------------
  bindToolbar() {
    const on = (id, handler) => {
      const button = this.$(`#${id}`);
      if (button) button.addEventListener("click", handler);
    };
    on("undo", () => this.editor.undo());
    on("redo", () => this.editor.redo());
    on("zoom-in", () => this.zoomBy(1.2));
    on("zoom-out", () => this.zoomBy(1 / 1.2));
    on("fit", () => this.fit());
    on("duplicate", () => this.duplicateSelection());
    on("delete", () => this.deleteSelection());
    on("add-note", () => {
      const rect = this.viewport.getBoundingClientRect();
      const at = this.toWorld(rect.left + 40, rect.top + 40);
      const note = this.editor.addNote("", at);
      this.select({ notes: [note.id] });
      this.root.querySelector(`[data-note-id="${note.id}"] textarea`)?.focus();
    });
    const save = this.$("#save-form");
    if (save) {
      save.addEventListener("submit", (event) => {
        event.preventDefault();
        this.save();
      });
    }
    on("run", () => this.startRun());
  }

  // --- coordinates, zoom and pan -------------------------------------------------------------
  toWorld(clientX, clientY) {
    const rect = this.viewport.getBoundingClientRect();
    return {
      x: (clientX - rect.left - this.view.x) / this.view.k,
      y: (clientY - rect.top - this.view.y) / this.view.k,
    };
  }

  applyView() {
    const { x, y, k } = this.view;
    this.world.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
    const zoom = this.$("#zoom-level");
    if (zoom) zoom.textContent = `${Math.round(k * 100)}%`;
  }

  zoomBy(factor, clientX, clientY) {
    const rect = this.viewport.getBoundingClientRect();
    const cx = clientX ?? rect.left + rect.width / 2;
    const cy = clientY ?? rect.top + rect.height / 2;
    const before = this.toWorld(cx, cy);
    this.view.k = Math.min(2.5, Math.max(0.25, this.view.k * factor));
    this.view.x = cx - rect.left - before.x * this.view.k;
    this.view.y = cy - rect.top - before.y * this.view.k;
    this.applyView();
  }

  fit() {
    const box = bounds(this.editor.graph, NODE_SIZE);
    const rect = this.viewport.getBoundingClientRect();
    if (!box || !rect.width) {
      this.view = { x: 0, y: 0, k: 1 };
    } else {
      const k = Math.min(1.2, (rect.width - 60) / box.width, (rect.height - 60) / box.height);
      this.view.k = Math.max(0.25, k);
      this.view.x = (rect.width - box.width * this.view.k) / 2 - box.x * this.view.k;
      this.view.y = (rect.height - box.height * this.view.k) / 2 - box.y * this.view.k;
    }
    this.applyView();
  }

  // --- selection -----------------------------------------------------------------------------
  select({ nodes = [], edges = [], notes = [] } = {}, add = false) {
    if (!add) {
      this.selection = { nodes: new Set(), edges: new Set(), notes: new Set() };
    }
    nodes.forEach((id) => this.selection.nodes.add(id));
    edges.forEach((key) => this.selection.edges.add(key));
    notes.forEach((id) => this.selection.notes.add(id));
    this.renderSelection();
    this.renderPanel();
  }

  toggleNode(id) {
    if (this.selection.nodes.has(id)) this.selection.nodes.delete(id);
    else this.selection.nodes.add(id);
    this.renderSelection();
    this.renderPanel();
  }

  selectedNode() {
    if (this.selection.nodes.size !== 1 || this.selection.edges.size) return null;
    return this.editor.node([...this.selection.nodes][0]);
  }

  deleteSelection() {
    if (this.readOnly) return;
    const { nodes, edges, notes } = this.selection;
    if (!nodes.size && !edges.size && !notes.size) return;
    const edgeList = this.editor.graph.edges.filter((e) => edges.has(edgeKey(e)));
    this.editor.remove({ nodes: [...nodes], edges: edgeList, notes: [...notes] });
    const count = nodes.size + edges.size + notes.size;
    this.select();
    this.announce(`Deleted ${count} item${count === 1 ? "" : "s"}. Ctrl+Z brings ${count === 1 ? "it" : "them"} back.`);
  }

  duplicateSelection() {
    if (this.readOnly || !this.selection.nodes.size) return;
    const ids = this.editor.duplicate([...this.selection.nodes]);
    this.select({ nodes: ids });
    this.announce(`Duplicated ${ids.length} block${ids.length === 1 ? "" : "s"}.`);
  }

  // --- rendering -----------------------------------------------------------------------------
  changed() {
    if (this.run && this.run.overlay && !this.readOnly) {
      this.run.overlay = false; // an edit leaves the run's picture: the canvas shows the design
    }
    // drop selected things that no longer exist (after undo, delete...)
    const ids = new Set(this.editor.graph.nodes.map((n) => n.id));
    const notes = new Set(this.editor.graph.notes.map((n) => n.id));
    const edges = new Set(this.editor.graph.edges.map(edgeKey));
    this.selection.nodes = new Set([...this.selection.nodes].filter((id) => ids.has(id)));
    this.selection.notes = new Set([...this.selection.notes].filter((id) => notes.has(id)));
    this.selection.edges = new Set([...this.selection.edges].filter((k) => edges.has(k)));
    this.render();
    if (!this.fromPanel) this.renderPanel();
    this.validateSoon();
  }

  render() {
    const focused = document.activeElement?.closest?.("[data-node-id]")?.dataset.nodeId;
    this.nodeLayer.replaceChildren();
    for (const note of this.editor.graph.notes) this.nodeLayer.append(this.renderNote(note));
    for (const node of this.editor.graph.nodes) this.nodeLayer.append(this.renderNode(node));
    this.renderEdges();
    this.renderSelection();
    this.renderStatus();
    this.renderProblems();
    if (focused) this.focusNode(focused, false);
  }

  nodeState(node) {
    const step = this.run?.overlay ? this.run.steps[node.id] : null;
    if (step) return step.status;
    return designState(this.editor.graph, this.catalog, node, this.placed);
  }

  renderNode(node) {
    const block = this.editor.block(node);
    const state = this.nodeState(node);
    const title = node.label || (block ? block.label : node.kind);
    const element = el("div", {
      class: `node cat-${block?.category || "unknown"} state-${state}`,
      tabindex: "0",
      role: "group",
      "data-node-id": node.id,
      "data-kind": node.kind,
      "data-state": state,
      "aria-label": `${title} (${node.id}): ${STATE_LABELS[state] || state}`,
    });
    element.style.left = `${node.position.x}px`;
    element.style.top = `${node.position.y}px`;
    const head = el(
      "div",
      { class: "node-head" },
      el("span", { class: "icon", "aria-hidden": "true", text: ICONS[block?.icon] || "□" }),
      el("span", { class: "node-title", text: title }),
    );
    const badge = el(
      "span",
      { class: `node-state state-${state}`, "data-testid": "node-state" },
      el("span", { "aria-hidden": "true", text: `${STATE_SYMBOLS[state] || "•"} ` }),
      document.createTextNode(STATE_LABELS[state] || state),
    );
    element.append(head, badge);
    const step = this.run?.overlay ? this.run.steps[node.id] : null;
    if (step?.status === "running" && step.progress?.fraction !== undefined) {
      const bar = el("progress", { max: "1", value: String(step.progress.fraction) });
      bar.setAttribute("aria-label", `${title} progress`);
      element.append(bar);
    }
    const ports = el("div", { class: "ports" });
    const ins = el("div", { class: "port-col in" });
    const outs = el("div", { class: "port-col out" });
    for (const port of block?.inputs || []) ins.append(this.renderPort(node, port, "in"));
    for (const port of block?.outputs || []) outs.append(this.renderPort(node, port, "out"));
    ports.append(ins, outs);
    element.append(ports);
    const nodeErrors = this.placed.nodes[node.id] || [];
    if (nodeErrors.length && !this.run?.overlay) {
      element.append(
        el("div", { class: "node-errors", "data-testid": "node-errors" },
          el("span", { "aria-hidden": "true", text: "⚠ " }),
          document.createTextNode(`${nodeErrors.length} problem${nodeErrors.length === 1 ? "" : "s"}`)),
      );
      element.title = nodeErrors.map((e) => e.message).join("\n");
    }
    return element;
  }

  renderPort(node, port, side) {
    const key = `${node.id}.${port.name}`;
    const errors = side === "in" ? this.placed.ports[key] || [] : [];
    const types = port.types.join(" or ");
    const element = el(
      "span",
      {
        class: `port ${side}${errors.length ? " error" : ""}${port.required ? "" : " optional"}`,
        "data-port": port.name,
        "data-side": side,
        "data-types": port.types.join(" "),
        title: `${port.label} (${types})${port.required ? "" : ", optional"}` +
          (errors.length ? `\n${errors.map((e) => e.message).join("\n")}` : ""),
      },
      el("span", { class: `dot type-${port.types.length > 1 ? "any" : port.types[0]}`, "aria-hidden": "true" }),
      el("span", { class: "port-name", text: port.label }),
    );
    return element;
  }

  renderNote(note) {
    const element = el("div", {
      class: "note",
      "data-note-id": note.id,
      role: "note",
    });
    element.style.left = `${note.position.x}px`;
    element.style.top = `${note.position.y}px`;
    const head = el("div", { class: "note-head", text: "Note" });
    const text = el("textarea", {
      "aria-label": "Note text",
      rows: "4",
      readonly: this.readOnly,
    });
    text.value = note.text || "";
    text.addEventListener("change", () => this.editor.setNoteText(note.id, text.value));
    text.addEventListener("focus", () => this.select({ notes: [note.id] }));
    element.append(head, text);
    return element;
  }

  portCentre(nodeId, portName, side) {
    const port = this.nodeLayer.querySelector(
      `[data-node-id="${CSS.escape(nodeId)}"] .port.${side}[data-port="${CSS.escape(portName)}"] .dot`,
    );
    if (!port) return null;
    const rect = port.getBoundingClientRect();
    return this.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 2);
  }

  edgePath(a, b) {
    const dx = Math.max(40, Math.abs(b.x - a.x) / 2);
    return `M ${a.x} ${a.y} C ${a.x + dx} ${a.y}, ${b.x - dx} ${b.y}, ${b.x} ${b.y}`;
  }

  renderEdges() {
    this.edgeLayer.replaceChildren();
    this.editor.graph.edges.forEach((edge, index) => {
      const a = this.portCentre(edge.source, edge.source_port, "out");
      const b = this.portCentre(edge.target, edge.target_port, "in");
      if (!a || !b) return;
      const key = edgeKey(edge);
      const errors = this.run?.overlay ? [] : this.placed.edges[index] || [];
      const group = svg("g", {
        class: `edge${errors.length ? " error" : ""}`,
        "data-edge": key,
        "data-edge-index": String(index),
        tabindex: "0",
        role: "button",
        "aria-label": `Edge ${edge.source}.${edge.source_port} to ${edge.target}.${edge.target_port}` +
          (errors.length ? `: ${errors.map((e) => e.message).join(" ")}` : ""),
      });
      const d = this.edgePath(a, b);
      group.append(svg("path", { class: "edge-hit", d }), svg("path", { class: "edge-line", d }));
      if (errors.length) {
        const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
        const mark = svg("text", { x: mid.x - 6, y: mid.y + 5, class: "edge-mark" });
        mark.textContent = "⚠";
        group.append(mark);
        const title = svg("title");
        title.textContent = errors.map((e) => e.message).join("\n");
        group.append(title);
      }
      group.addEventListener("pointerdown", (event) => {
        event.stopPropagation();
        this.select({ edges: [key] }, event.shiftKey);
      });
      group.addEventListener("focus", () => this.select({ edges: [key] }));
      this.edgeLayer.append(group);
    });
  }

  renderSelection() {
    for (const element of this.nodeLayer.querySelectorAll("[data-node-id]")) {
      element.classList.toggle("selected", this.selection.nodes.has(element.dataset.nodeId));
      element.setAttribute("aria-selected", String(this.selection.nodes.has(element.dataset.nodeId)));
    }
    for (const element of this.nodeLayer.querySelectorAll("[data-note-id]")) {
      element.classList.toggle("selected", this.selection.notes.has(element.dataset.noteId));
    }
    for (const element of this.edgeLayer.querySelectorAll("[data-edge]")) {
      element.classList.toggle("selected", this.selection.edges.has(element.dataset.edge));
    }
    const some = this.selection.nodes.size + this.selection.edges.size + this.selection.notes.size;
    const del = this.$("#delete");
    if (del) del.disabled = this.readOnly || !some;
    const dup = this.$("#duplicate");
    if (dup) dup.disabled = this.readOnly || !this.selection.nodes.size;
  }

  focusNode(id, scroll = true) {
    const element = this.nodeLayer.querySelector(`[data-node-id="${CSS.escape(id)}"]`);
    if (element) element.focus({ preventScroll: !scroll });
  }

  // --- the side panel ------------------------------------------------------------------------
  renderPanel() {
    const panel = this.$("#panel-body");
    const node = this.selectedNode();
    const key = node ? `${node.id}@${this.editor.revision}` : "none";
    if (key === this.lastPanelKey && !this.run?.overlay) return;
    this.lastPanelKey = key;
    if (!node) {
      const count = this.selection.nodes.size + this.selection.edges.size;
      panel.replaceChildren(
        el("p", {
          class: "muted",
          text: count
            ? `${count} item${count === 1 ? "" : "s"} selected. Delete removes them; Ctrl+D duplicates blocks.`
            : "Select a block to set it up. Drag a block from the palette, then drag from an " +
              "output (right) to an input (left) to connect them.",
        }),
      );
      return;
    }
    const block = this.editor.block(node);
    const parts = [];
    parts.push(el("h2", { id: "panel-title", text: node.label || block?.label || node.kind }));
    if (block) parts.push(el("p", { class: "help", text: block.help }));
    const state = this.nodeState(node);
    parts.push(
      el("p", { "data-testid": "panel-state" },
        el("span", { class: `node-state state-${state}`, text: `${STATE_SYMBOLS[state] || ""} ${STATE_LABELS[state] || state}` })),
    );
    const labelId = `label-${node.id}`;
    const labelInput = el("input", {
      id: labelId,
      value: node.label || "",
      placeholder: block?.label || "",
      disabled: this.readOnly,
      maxlength: "200",
    });
    labelInput.addEventListener("change", () => this.fromPanelDo(() => this.editor.setLabel(node.id, labelInput.value)));
    parts.push(el("div", { class: "field" }, el("label", { for: labelId, text: "Name on the canvas" }), labelInput));
    const errors = this.placed.nodes[node.id] || [];
    const missing = block ? missingParams(block, node.params) : [];
    if (missing.length) {
      parts.push(el("p", { class: "warn", text: `Not configured: set ${missing.join(", ")}.` }));
    }
    if (errors.length) {
      const list = el("ul", { class: "errors", "data-testid": "panel-errors" });
      for (const e of errors) list.append(el("li", { text: e.message }));
      parts.push(list);
    }
    if (block) {
      parts.push(
        buildForm({
          nodeId: node.id,
          schema: block.params_schema,
          params: node.params,
          readOnly: this.readOnly,
          onChange: (name, value) => this.fromPanelDo(() => this.editor.setParam(node.id, name, value)),
          context: {
            datasetVersions: this.config.datasetVersions,
            columnsFor: () => this.columnsFor(node.id),
          },
        }),
      );
    }
    if (block && !this.readOnly) parts.push(this.connectionsSection(node, block));
    const stepBox = el("div", { id: "step-detail", "aria-live": "polite" });
    parts.push(stepBox);
    panel.replaceChildren(...parts);
    this.loadStepDetail(node.id);
  }

  /** Connect and disconnect from the side panel: the keyboard's way to draw edges. */
  connectionsSection(node, block) {
    const title = (n) => n.label || this.editor.block(n)?.label || n.kind;
    const box = el("section", { class: "connections", "data-testid": "connections" });
    box.append(el("h3", { text: "Connections" }));
    const list = el("ul", { class: "edge-list" });
    this.editor.graph.edges.forEach((e) => {
      if (e.source !== node.id && e.target !== node.id) return;
      const other = this.editor.node(e.source === node.id ? e.target : e.source);
      const text = e.source === node.id
        ? `${e.source_port} → ${title(other)} (${e.target_port})`
        : `${title(other)} (${e.source_port}) → ${e.target_port}`;
      const remove = el("button", { type: "button", class: "link", text: "Disconnect", "aria-label": `Disconnect ${text}` });
      remove.addEventListener("click", () => {
        this.editor.remove({ edges: [e] });
        this.announce(`Disconnected ${text}.`);
      });
      list.append(el("li", {}, document.createTextNode(`${text} `), remove));
    });
    if (list.children.length) box.append(list);
    for (const port of block.outputs) {
      const id = `connect-${node.id}-${port.name}`;
      const select = el("select", { id });
      const options = [];
      for (const other of this.editor.graph.nodes) {
        for (const input of this.editor.block(other)?.inputs || []) {
          const edge = { source: node.id, source_port: port.name, target: other.id, target_port: input.name };
          if (canConnect(this.editor.graph, this.catalog, edge).ok) {
            options.push(el("option", { value: `${other.id}|${input.name}`, text: `${title(other)} › ${input.label}` }));
          }
        }
      }
      if (!options.length) continue;
      select.append(el("option", { value: "", text: "— choose an input —" }), ...options);
      const button = el("button", { type: "button", text: "Connect" });
      button.addEventListener("click", () => {
        if (!select.value) return;
        const [target, targetPort] = select.value.split("|");
        const verdict = this.editor.connect({ source: node.id, source_port: port.name, target, target_port: targetPort });
        this.announce(verdict.ok ? `Connected ${port.label} to ${title(this.editor.node(target))}.` : verdict.reason);
      });
      box.append(
        el("div", { class: "field connect" },
          el("label", { for: id, text: `Connect “${port.label}” (${port.types[0]}) to` }),
          el("span", { class: "connect-row" }, select, button)),
      );
    }
    if (box.children.length === 1) box.append(el("p", { class: "muted small", text: "No compatible input to connect to yet." }));
    return box;
  }

  fromPanelDo(action) {
    this.fromPanel = true;
    try {
      action();
    } finally {
      this.fromPanel = false;
    }
    this.lastPanelKey = `${this.selectedNode()?.id}@${this.editor.revision}`;
    this.renderPanelErrors();
  }

  /** The selected block's state badge in the side panel, in words and a symbol. */
  renderPanelState(node) {
    const badge = this.$("#panel-body [data-testid=panel-state] .node-state");
    if (!badge) return;
    const state = this.nodeState(node);
    badge.className = `node-state state-${state}`;
    badge.textContent = `${STATE_SYMBOLS[state] || ""} ${STATE_LABELS[state] || state}`;
  }

  renderPanelErrors() {
    // after a parameter change: refresh only the error list and the state, not the inputs
    const node = this.selectedNode();
    const panel = this.$("#panel-body");
    if (!node || !panel) return;
    this.renderPanelState(node);
    const old = panel.querySelector("[data-testid=panel-errors]");
    const errors = this.placed.nodes[node.id] || [];
    const list = el("ul", { class: "errors", "data-testid": "panel-errors" });
    for (const e of errors) list.append(el("li", { text: e.message }));
    if (old) old.replaceWith(list);
    else if (errors.length) panel.querySelector("form.params")?.before(list);
    for (const field of panel.querySelectorAll(".field[data-param]")) {
      const message = errors.find((e) => e.param === field.dataset.param);
      const slot = field.querySelector(".field-error");
      if (slot) slot.textContent = message ? message.message : "";
      field.classList.toggle("invalid", Boolean(message));
    }
  }

  /** The columns of the dataset version that feeds this node (walking edges back). */
  columnsFor(nodeId) {
    const seen = new Set();
    const queue = [nodeId];
    while (queue.length) {
      const id = queue.shift();
      if (seen.has(id)) continue;
      seen.add(id);
      const node = this.editor.node(id);
      if (node?.kind === "dataset" && node.params.dataset_version) {
        const version = this.config.datasetVersions.find((v) => v.id === node.params.dataset_version);
        if (version) return version.columns;
      }
      for (const e of this.editor.graph.edges) if (e.target === id) queue.push(e.source);
    }
    return [];
  }

  loadStepDetail(nodeId) {
    const box = this.$("#step-detail");
    if (!box || !this.run?.overlay || !this.run.steps[nodeId]) return;
    const url = this.config.stepUrl.replace("RUN", this.run.id).replace("NODE", encodeURIComponent(nodeId));
    window.htmx.ajax("GET", url, { target: box, swap: "innerHTML" });
  }

  // --- status, problems, announcements -------------------------------------------------------
  renderStatus() {
    const undo = this.$("#undo");
    const redo = this.$("#redo");
    if (undo) undo.disabled = this.readOnly || !this.editor.history.canUndo;
    if (redo) redo.disabled = this.readOnly || !this.editor.history.canRedo;
    const save = this.$("#save");
    if (save) {
      const pending = this.validatedRevision !== this.editor.revision;
      save.textContent = this.errors.length && !pending
        ? `Save as draft (${this.errors.length} problem${this.errors.length === 1 ? "" : "s"})`
        : "Save";
    }
    const run = this.$("#run");
    if (run) {
      const why = this.dirty
        ? "Save your changes first: a run uses a saved version."
        : !this.config.version
          ? "Save a first version to run it."
          : this.config.versionDraft
            ? "This version is a draft with problems: fix them and save to run."
            : "";
      run.disabled = Boolean(why);
      run.title = why || `Run version ${this.config.version}`;
      const hint = this.$("#run-hint");
      if (hint) hint.textContent = why;
    }
  }

  renderProblems() {
    const box = this.$("#problems");
    if (!box) return;
    const list = this.$("#problem-list");
    const count = this.$("#problem-count");
    list.replaceChildren();
    if (this.readOnly) return;
    const pending = this.validatedRevision !== this.editor.revision;
    count.textContent = pending
      ? "checking…"
      : this.errors.length
        ? `${this.errors.length} problem${this.errors.length === 1 ? "" : "s"}`
        : "no problems: ready to save and run";
    box.dataset.state = pending ? "pending" : this.errors.length ? "errors" : "ok";
    for (const error of this.errors) {
      const button = el("button", { type: "button", class: "link", text: error.message });
      button.addEventListener("click", () => {
        if (error.node && this.editor.node(error.node)) {
          this.select({ nodes: [error.node] });
          this.focusNode(error.node);
        } else if (error.edge !== undefined && this.editor.graph.edges[error.edge]) {
          this.select({ edges: [edgeKey(this.editor.graph.edges[error.edge])] });
        }
      });
      list.append(el("li", {}, button));
    }
  }

  announce(message) {
    const live = this.$("#announce");
    if (live) live.textContent = message;
  }

  showRefusal(reason, clientX, clientY) {
    const tip = this.$("#refusal");
    tip.textContent = `Cannot connect: ${reason}`;
    const rect = this.viewport.getBoundingClientRect();
    tip.style.left = `${Math.max(0, clientX - rect.left + 12)}px`;
    tip.style.top = `${Math.max(0, clientY - rect.top + 12)}px`;
    tip.hidden = false;
    clearTimeout(this.refusalTimer);
    this.refusalTimer = setTimeout(() => {
      tip.hidden = true;
    }, 6000);
    this.announce(tip.textContent);
  }

  // --- validation ----------------------------------------------------------------------------
  validateSoon(delay = 250) {
    if (this.readOnly) return;
    clearTimeout(this.validateTimer);
    this.renderProblems();
    this.validateTimer = setTimeout(() => this.validate(), delay);
  }

  async validate() {
    const revision = this.editor.revision;
    let errors = [];
    try {
      const response = await fetch(this.config.validateUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": this.config.csrf },
        body: JSON.stringify({ graph: this.editor.toJSON() }),
        credentials: "same-origin",
      });
      const body = await response.json();
      errors = body.errors || (response.ok ? [] : [{ message: JSON.stringify(body), code: "http" }]);
    } catch (error) {
      errors = [{ message: `Could not reach the server to check the workflow: ${error}.`, code: "network" }];
    }
    if (revision !== this.editor.revision) return; // a newer change is being checked
    this.errors = [...errors, ...(this.config.standingErrors || [])];
    this.placed = placeErrors(errors);
    this.validatedRevision = revision;
    if (this.dragging) {
      this.redrawAfterDrag = true;
      return;
    }
    this.render();
    this.renderPanelErrors();
  }

  // --- save and run --------------------------------------------------------------------------
  async save() {
    if (this.readOnly) return;
    clearTimeout(this.validateTimer);
    await this.validate();
    const message = this.$("#save-message").value.trim();
    const status = this.$("#save-status");
    const draft = this.errors.length > 0;
    const revision = this.editor.revision;
    const response = await fetch(this.config.versionsUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": this.config.csrf },
      body: JSON.stringify({ graph: this.editor.toJSON(), message, draft }),
      credentials: "same-origin",
    });
    const body = await response.json();
    if (!response.ok) {
      const text = body.errors ? body.errors.map((e) => e.message).join(" ") : JSON.stringify(body);
      status.textContent = `Not saved: ${text}`;
      status.dataset.state = "error";
      return;
    }
    this.savedRevision = revision;
    this.config.version = body.number;
    this.config.versionDraft = body.draft;
    status.dataset.state = body.draft ? "draft" : "saved";
    status.textContent = body.draft
      ? `Saved version ${body.number} as a draft: it cannot run until its ${body.errors.length} problem${body.errors.length === 1 ? " is" : "s are"} fixed.`
      : `Saved version ${body.number}.`;
    this.$("#save-message").value = "";
    const banner = document.querySelector("[data-testid=version-banner]");
    if (banner) {
      banner.textContent = `Version ${body.number}${body.draft ? " (draft: cannot run until its problems are fixed)" : ""}`;
    }
    document.body.dispatchEvent(new CustomEvent("versions-changed", { bubbles: true }));
    this.renderStatus();
  }

  async startRun() {
    if (this.dirty || !this.config.version) return;
    const status = this.$("#save-status");
    const response = await fetch(this.config.runsUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": this.config.csrf },
      body: JSON.stringify({ version: this.config.version }),
      credentials: "same-origin",
    });
    const body = await response.json();
    if (!response.ok) {
      status.textContent = `Not started: ${body.detail || JSON.stringify(body)}`;
      status.dataset.state = "error";
      return;
    }
    status.dataset.state = "saved";
    status.textContent = `Run ${body.id} started.`;
    this.showRun(body);
    this.watchRun(body.id);
  }

  showRun(run) {
    this.run = {
      id: run.id,
      status: run.status,
      overlay: true,
      steps: Object.fromEntries(run.steps.map((s) => [s.node_id, s])),
    };
    const bar = this.$("#run-bar");
    if (bar) {
      bar.hidden = false;
      this.$("#run-status").textContent = `${STATE_LABELS[run.status] || run.status}` +
        (run.reason ? ` — ${run.reason}` : "");
      this.$("#run-status").dataset.status = run.status;
      const link = this.$("#run-link");
      link.href = this.config.runPageUrl.replace("RUN", run.id);
      link.textContent = `Run ${run.id}`;
    }
    const node = this.selectedNode();
    this.render();
    if (node && this.run.steps[node.id]) {
      this.renderPanelState(node);
      this.loadStepDetail(node.id);
    }
  }

  async watchRun(id) {
    clearTimeout(this.pollTimer);
    const poll = async () => {
      let run;
      try {
        const response = await fetch(this.config.runUrl.replace("RUN", id), { credentials: "same-origin" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        run = await response.json();
      } catch (error) {
        this.pollTimer = setTimeout(poll, 3000);
        return;
      }
      if (this.run && this.run.id === id && !this.run.overlay) return; // edited since: stop
      this.showRun(run);
      if (!FINISHED.has(run.status)) {
        this.pollTimer = setTimeout(poll, run.status === "waiting_approval" ? 3000 : 1000);
      }
    };
    await poll();
  }

  // --- pointer input -------------------------------------------------------------------------
  bindViewport() {
    const vp = this.viewport;
    vp.addEventListener("dragover", (event) => {
      if (this.readOnly) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    vp.addEventListener("drop", (event) => {
      if (this.readOnly) return;
      event.preventDefault();
      const kind = event.dataTransfer.getData("application/x-edumlops-block") ||
        event.dataTransfer.getData("text/plain");
      if (!kind || !this.catalog.latest(kind)) return;
      const at = this.toWorld(event.clientX, event.clientY);
      this.addBlock(kind, { x: at.x - 20, y: at.y - 20 });
    });
    vp.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1, event.clientX, event.clientY);
    }, { passive: false });
    vp.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.nodeLayer.addEventListener("focusin", (event) => {
      const element = event.target.closest("[data-node-id]");
      if (element && event.target === element && !this.selection.nodes.has(element.dataset.nodeId)) {
        this.select({ nodes: [element.dataset.nodeId] });
      }
    });
  }

  pointerDown(event) {
    if (event.button !== 0) return;
    const port = event.target.closest(".port");
    const nodeEl = event.target.closest("[data-node-id]");
    const noteEl = event.target.closest("[data-note-id]");
    if (port && port.dataset.side === "out" && !this.readOnly) {
      event.preventDefault();
      this.startConnection(event, nodeEl.dataset.nodeId, port.dataset.port);
    } else if (nodeEl) {
      if (event.shiftKey || event.ctrlKey || event.metaKey) {
        this.toggleNode(nodeEl.dataset.nodeId);
        return;
      }
      if (!this.selection.nodes.has(nodeEl.dataset.nodeId)) this.select({ nodes: [nodeEl.dataset.nodeId] });
      if (!this.readOnly) this.startMove(event);
    } else if (noteEl) {
      if (event.target.tagName === "TEXTAREA") return;
      this.select({ notes: [noteEl.dataset.noteId] }, event.shiftKey);
      if (!this.readOnly) this.startMove(event);
    } else if (event.shiftKey) {
      this.startRubberBand(event);
    } else {
      this.startPan(event);
    }
  }

  track(event, onMove, onUp) {
    // no redraw while a drag is on (a validation answer waits for the drop)
    this.dragging = true;
    const move = (e) => onMove(e);
    const up = (e) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      this.dragging = false;
      onUp(e);
      if (this.redrawAfterDrag) {
        this.redrawAfterDrag = false;
        this.render();
        this.renderPanelErrors();
      }
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  startMove(event) {
    event.preventDefault();
    const before = this.editor.snapshot();
    const start = this.toWorld(event.clientX, event.clientY);
    const items = [
      ...this.editor.graph.nodes.filter((n) => this.selection.nodes.has(n.id)),
      ...this.editor.graph.notes.filter((n) => this.selection.notes.has(n.id)),
    ];
    const origin = new Map(items.map((n) => [n.id, { ...n.position }]));
    this.track(
      event,
      (e) => {
        const now = this.toWorld(e.clientX, e.clientY);
        for (const item of items) {
          const o = origin.get(item.id);
          item.position = { x: Math.round(o.x + now.x - start.x), y: Math.round(o.y + now.y - start.y) };
          const element = this.nodeLayer.querySelector(
            `[data-node-id="${CSS.escape(item.id)}"], [data-note-id="${CSS.escape(item.id)}"]`,
          );
          if (element) {
            element.style.left = `${item.position.x}px`;
            element.style.top = `${item.position.y}px`;
          }
        }
        this.renderEdges();
        this.renderSelection();
      },
      () => {
        const focused = this.selectedNode()?.id;
        this.editor.commit(before);
        if (focused) this.focusNode(focused, false);
      },
    );
  }

  startPan(event) {
    const start = { x: event.clientX, y: event.clientY, vx: this.view.x, vy: this.view.y };
    let moved = false;
    this.viewport.classList.add("panning");
    this.track(
      event,
      (e) => {
        moved = moved || Math.abs(e.clientX - start.x) + Math.abs(e.clientY - start.y) > 3;
        this.view.x = start.vx + e.clientX - start.x;
        this.view.y = start.vy + e.clientY - start.y;
        this.applyView();
      },
      () => {
        this.viewport.classList.remove("panning");
        if (!moved) this.select();
      },
    );
  }

  startRubberBand(event) {
    const band = this.$("#band");
    const rect = this.viewport.getBoundingClientRect();
    const start = { x: event.clientX, y: event.clientY };
    band.hidden = false;
    const box = (e) => ({
      left: Math.min(start.x, e.clientX),
      top: Math.min(start.y, e.clientY),
      right: Math.max(start.x, e.clientX),
      bottom: Math.max(start.y, e.clientY),
    });
    this.track(
      event,
      (e) => {
        const b = box(e);
        Object.assign(band.style, {
          left: `${b.left - rect.left}px`,
          top: `${b.top - rect.top}px`,
          width: `${b.right - b.left}px`,
          height: `${b.bottom - b.top}px`,
        });
      },
      (e) => {
        band.hidden = true;
        const b = box(e);
        const inside = [...this.nodeLayer.querySelectorAll("[data-node-id]")].filter((element) => {
          const r = element.getBoundingClientRect();
          return r.left >= b.left && r.right <= b.right && r.top >= b.top && r.bottom <= b.bottom;
        });
        this.select({ nodes: inside.map((element) => element.dataset.nodeId) }, true);
      },
    );
  }

  startConnection(event, sourceId, sourcePort) {
    const from = this.portCentre(sourceId, sourcePort, "out");
    const temp = svg("path", { class: "edge-temp", d: this.edgePath(from, from) });
    this.edgeLayer.append(temp);
    // mark every input: compatible ones light up, the others carry the reason as a tooltip
    const verdicts = new Map();
    for (const port of this.nodeLayer.querySelectorAll(".port.in")) {
      const target = port.closest("[data-node-id]").dataset.nodeId;
      const verdict = canConnect(this.editor.graph, this.catalog, {
        source: sourceId,
        source_port: sourcePort,
        target,
        target_port: port.dataset.port,
      });
      verdicts.set(port, verdict);
      port.classList.add(verdict.ok ? "compatible" : "incompatible");
      port.dataset.titleBefore = port.title;
      port.title = verdict.ok ? "Drop here to connect" : verdict.reason;
    }
    this.viewport.classList.add("connecting");
    const targetPort = (e) => document.elementFromPoint(e.clientX, e.clientY)?.closest?.(".port.in");
    this.track(
      event,
      (e) => {
        temp.setAttribute("d", this.edgePath(from, this.toWorld(e.clientX, e.clientY)));
        for (const port of verdicts.keys()) port.classList.remove("hover");
        targetPort(e)?.classList.add("hover");
      },
      (e) => {
        temp.remove();
        this.viewport.classList.remove("connecting");
        const port = targetPort(e);
        for (const [p] of verdicts) {
          p.classList.remove("compatible", "incompatible", "hover");
          p.title = p.dataset.titleBefore || "";
        }
        if (!port) return;
        const edge = {
          source: sourceId,
          source_port: sourcePort,
          target: port.closest("[data-node-id]").dataset.nodeId,
          target_port: port.dataset.port,
        };
        const verdict = this.editor.connect(edge);
        if (verdict.ok) this.announce(`Connected ${edge.source}.${edge.source_port} to ${edge.target}.${edge.target_port}.`);
        else this.showRefusal(verdict.reason, e.clientX, e.clientY);
      },
    );
  }

  // --- keyboard ------------------------------------------------------------------------------
  bindKeyboard() {
    document.addEventListener("keydown", (event) => {
      const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
      const mod = event.ctrlKey || event.metaKey;
      if (mod && event.key.toLowerCase() === "z" && !typing) {
        event.preventDefault();
        if (event.shiftKey) this.editor.redo();
        else this.editor.undo();
        return;
      }
      if (mod && event.key.toLowerCase() === "y" && !typing) {
        event.preventDefault();
        this.editor.redo();
        return;
      }
      if (typing) return;
      if (!this.root.contains(event.target) && event.target !== document.body) return;
      if (event.key === "Delete" || event.key === "Backspace") {
        event.preventDefault();
        this.deleteSelection();
      } else if (mod && event.key.toLowerCase() === "d") {
        event.preventDefault();
        this.duplicateSelection();
      } else if (event.key.startsWith("Arrow") && this.selection.nodes.size && !this.readOnly) {
        event.preventDefault();
        const step = event.shiftKey ? 40 : 10;
        const dx = event.key === "ArrowLeft" ? -step : event.key === "ArrowRight" ? step : 0;
        const dy = event.key === "ArrowUp" ? -step : event.key === "ArrowDown" ? step : 0;
        this.editor.moveNodes([...this.selection.nodes], dx, dy);
      } else if (event.key === "+" || event.key === "=") {
        this.zoomBy(1.2);
      } else if (event.key === "-") {
        this.zoomBy(1 / 1.2);
      } else if (event.key === "Escape") {
        this.select();
      }
    });
  }
}

const root = document.getElementById("canvas-app");
if (root) window.edumlopsCanvas = new Canvas(root);
