// Drawing the graph: nodes with their state badge and typed ports, notes, and the edges as SVG
// curves between port dots; and marking what is selected. Reads the canvas's state (editor,
// placed errors, run overlay, selection) and never changes the graph.

import { el, svg } from "./dom.mjs";
import { edgePath, midpoint } from "./geometry.mjs";
import { designState, edgeKey } from "./model.mjs";
import { count, edgeLabel, icon, portTitle, stateLabel, stateSymbol } from "./text.mjs";

/** The run's step for a node while the canvas shows a run, else null. */
export function stepOf(canvas, node) {
  return canvas.run?.overlay ? canvas.run.steps[node.id] : null;
}

/** A node's state: its step's while a run is shown, else its design state. */
export function nodeState(canvas, node) {
  const step = stepOf(canvas, node);
  if (step) return step.status;
  return designState(canvas.editor.graph, canvas.catalog, node, canvas.placed);
}

function renderPort(canvas, node, port, side) {
  const errors = side === "in" ? canvas.placed.ports[`${node.id}.${port.name}`] || [] : [];
  return el(
    "span",
    {
      class: `port ${side}${errors.length ? " error" : ""}${port.required ? "" : " optional"}`,
      "data-port": port.name,
      "data-side": side,
      "data-types": port.types.join(" "),
      title: portTitle(port, errors),
    },
    el("span", {
      class: `dot type-${port.types.length > 1 ? "any" : port.types[0]}`,
      "aria-hidden": "true",
    }),
    el("span", { class: "port-name", text: port.label }),
  );
}

function renderNode(canvas, node) {
  const block = canvas.editor.block(node);
  const state = nodeState(canvas, node);
  const title = node.label || (block ? block.label : node.kind);
  const element = el("div", {
    class: `node cat-${block?.category || "unknown"} state-${state}`,
    tabindex: "0",
    role: "group",
    "data-node-id": node.id,
    "data-kind": node.kind,
    "data-state": state,
    "aria-label": `${title} (${node.id}): ${stateLabel(state)}`,
  });
  element.style.left = `${node.position.x}px`;
  element.style.top = `${node.position.y}px`;
  const head = el(
    "div",
    { class: "node-head" },
    el("span", { class: "icon", "aria-hidden": "true", text: icon(block?.icon) }),
    el("span", { class: "node-title", text: title }),
  );
  const badge = el(
    "span",
    { class: `node-state state-${state}`, "data-testid": "node-state" },
    el("span", { "aria-hidden": "true", text: `${stateSymbol(state, "•")} ` }),
    document.createTextNode(stateLabel(state)),
  );
  element.append(head, badge);
  const step = stepOf(canvas, node);
  if (step?.status === "running" && step.progress?.fraction !== undefined) {
    const bar = el("progress", { max: "1", value: String(step.progress.fraction) });
    bar.setAttribute("aria-label", `${title} progress`);
    element.append(bar);
  }
  const ins = el("div", { class: "port-col in" });
  const outs = el("div", { class: "port-col out" });
  for (const port of block?.inputs || []) ins.append(renderPort(canvas, node, port, "in"));
  for (const port of block?.outputs || []) outs.append(renderPort(canvas, node, port, "out"));
  element.append(el("div", { class: "ports" }, ins, outs));
  const nodeErrors = canvas.placed.nodes[node.id] || [];
  if (nodeErrors.length && !canvas.run?.overlay) {
    element.append(
      el("div", { class: "node-errors", "data-testid": "node-errors" },
        el("span", { "aria-hidden": "true", text: "⚠ " }),
        document.createTextNode(count(nodeErrors.length, "problem"))),
    );
    element.title = nodeErrors.map((e) => e.message).join("\n");
  }
  return element;
}

function renderNote(canvas, note) {
  const element = el("div", { class: "note", "data-note-id": note.id, role: "note" });
  element.style.left = `${note.position.x}px`;
  element.style.top = `${note.position.y}px`;
  const text = el("textarea", { "aria-label": "Note text", rows: "4", readonly: canvas.readOnly });
  text.value = note.text || "";
  text.addEventListener("change", () => canvas.editor.setNoteText(note.id, text.value));
  text.addEventListener("focus", () => canvas.select({ notes: [note.id] }));
  element.append(el("div", { class: "note-head", text: "Note" }), text);
  return element;
}

/** The world position of a port's dot, or null when it is not drawn. */
export function portCentre(canvas, nodeId, portName, side) {
  const port = canvas.nodeLayer.querySelector(
    `[data-node-id="${CSS.escape(nodeId)}"] .port.${side}[data-port="${CSS.escape(portName)}"] .dot`,
  );
  if (!port) return null;
  const rect = port.getBoundingClientRect();
  return canvas.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 2);
}

export function renderEdges(canvas) {
  canvas.edgeLayer.replaceChildren();
  canvas.editor.graph.edges.forEach((edge, index) => {
    const a = portCentre(canvas, edge.source, edge.source_port, "out");
    const b = portCentre(canvas, edge.target, edge.target_port, "in");
    if (!a || !b) return;
    const key = edgeKey(edge);
    const errors = canvas.run?.overlay ? [] : canvas.placed.edges[index] || [];
    const group = svg("g", {
      class: `edge${errors.length ? " error" : ""}`,
      "data-edge": key,
      "data-edge-index": String(index),
      tabindex: "0",
      role: "button",
      "aria-label": edgeLabel(edge, errors),
    });
    const d = edgePath(a, b);
    group.append(svg("path", { class: "edge-hit", d }), svg("path", { class: "edge-line", d }));
    if (errors.length) {
      const mid = midpoint(a, b);
      const mark = svg("text", { x: mid.x - 6, y: mid.y + 5, class: "edge-mark" });
      mark.textContent = "⚠";
      const title = svg("title");
      title.textContent = errors.map((e) => e.message).join("\n");
      group.append(mark, title);
    }
    group.addEventListener("pointerdown", (event) => {
      event.stopPropagation();
      canvas.select({ edges: [key] }, event.shiftKey);
    });
    group.addEventListener("focus", () => canvas.select({ edges: [key] }));
    canvas.edgeLayer.append(group);
  });
}

/** Draw every note, node and edge afresh, then mark the selection. */
export function renderGraph(canvas) {
  canvas.nodeLayer.replaceChildren();
  for (const note of canvas.editor.graph.notes) canvas.nodeLayer.append(renderNote(canvas, note));
  for (const node of canvas.editor.graph.nodes) canvas.nodeLayer.append(renderNode(canvas, node));
  renderEdges(canvas);
  renderSelection(canvas);
}

/** Mark selected nodes, notes and edges, and turn Delete and Duplicate on or off. */
export function renderSelection(canvas) {
  const { selection } = canvas;
  for (const element of canvas.nodeLayer.querySelectorAll("[data-node-id]")) {
    element.classList.toggle("selected", selection.nodes.has(element.dataset.nodeId));
    element.setAttribute("aria-selected", String(selection.nodes.has(element.dataset.nodeId)));
  }
  for (const element of canvas.nodeLayer.querySelectorAll("[data-note-id]")) {
    element.classList.toggle("selected", selection.notes.has(element.dataset.noteId));
  }
  for (const element of canvas.edgeLayer.querySelectorAll("[data-edge]")) {
    element.classList.toggle("selected", selection.edges.has(element.dataset.edge));
  }
  const del = canvas.$("#delete");
  if (del) del.disabled = canvas.readOnly || !selection.size;
  const dup = canvas.$("#duplicate");
  if (dup) dup.disabled = canvas.readOnly || !selection.nodes.size;
}

export function focusNode(canvas, id, scroll = true) {
  const element = canvas.nodeLayer.querySelector(`[data-node-id="${CSS.escape(id)}"]`);
  if (element) element.focus({ preventScroll: !scroll });
}
