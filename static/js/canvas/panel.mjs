// The side panel: the selected block's name, help, state, problems, parameter form (form.mjs)
// and connections, and its step's detail while a run is shown; or a hint when no single block
// is selected.

import { el } from "./dom.mjs";
import { buildForm } from "./form.mjs";
import { missingParams } from "./model.mjs";
import { columnsFor, connectTargets, connectionsOf, nodeTitle } from "./queries.mjs";
import { nodeState } from "./render.mjs";
import { panelHint, stateLabel, stateSymbol } from "./text.mjs";

function stateText(state) {
  return `${stateSymbol(state)} ${stateLabel(state)}`;
}

function errorList(errors) {
  const list = el("ul", { class: "errors", "data-testid": "panel-errors" });
  for (const e of errors) list.append(el("li", { text: e.message }));
  return list;
}

/** Redraw the panel, unless it already shows this node at this revision (and no run). */
export function renderPanel(canvas) {
  const panel = canvas.$("#panel-body");
  const node = canvas.selectedNode();
  const key = node ? `${node.id}@${canvas.editor.revision}` : "none";
  if (key === canvas.panelKey && !canvas.run?.overlay) return;
  canvas.panelKey = key;
  if (!node) {
    const selected = canvas.selection.nodes.size + canvas.selection.edges.size;
    panel.replaceChildren(el("p", { class: "muted", text: panelHint(selected) }));
    return;
  }
  const { editor, readOnly } = canvas;
  const block = editor.block(node);
  const parts = [el("h2", { id: "panel-title", text: node.label || block?.label || node.kind })];
  if (block) parts.push(el("p", { class: "help", text: block.help }));
  const state = nodeState(canvas, node);
  parts.push(
    el("p", { "data-testid": "panel-state" },
      el("span", { class: `node-state state-${state}`, text: stateText(state) })),
  );
  const labelId = `label-${node.id}`;
  const labelInput = el("input", {
    id: labelId,
    value: node.label || "",
    placeholder: block?.label || "",
    disabled: readOnly,
    maxlength: "200",
  });
  labelInput.addEventListener("change", () =>
    fromPanelDo(canvas, () => editor.setLabel(node.id, labelInput.value)));
  parts.push(
    el("div", { class: "field" },
      el("label", { for: labelId, text: "Name on the canvas" }), labelInput),
  );
  const errors = canvas.placed.nodes[node.id] || [];
  const missing = block ? missingParams(block, node.params) : [];
  if (missing.length) {
    parts.push(el("p", { class: "warn", text: `Not configured: set ${missing.join(", ")}.` }));
  }
  if (errors.length) parts.push(errorList(errors));
  if (block) {
    parts.push(
      buildForm({
        nodeId: node.id,
        schema: block.params_schema,
        params: node.params,
        readOnly,
        onChange: (name, value) => fromPanelDo(canvas, () => editor.setParam(node.id, name, value)),
        context: {
          datasetVersions: canvas.config.datasetVersions,
          columnsFor: () => columnsFor(editor.graph, canvas.config.datasetVersions, node.id),
        },
      }),
    );
  }
  if (block && !readOnly) parts.push(connectionsSection(canvas, node, block));
  parts.push(el("div", { id: "step-detail", "aria-live": "polite" }));
  panel.replaceChildren(...parts);
  loadStepDetail(canvas, node.id);
}

/** Connect and disconnect from the side panel: the keyboard's way to draw edges. */
function connectionsSection(canvas, node, block) {
  const { editor, catalog } = canvas;
  const box = el("section", { class: "connections", "data-testid": "connections" });
  box.append(el("h3", { text: "Connections" }));
  const list = el("ul", { class: "edge-list" });
  for (const { edge, text } of connectionsOf(editor.graph, catalog, node.id)) {
    const remove = el("button", {
      type: "button",
      class: "link",
      text: "Disconnect",
      "aria-label": `Disconnect ${text}`,
    });
    remove.addEventListener("click", () => {
      editor.remove({ edges: [edge] });
      canvas.announce(`Disconnected ${text}.`);
    });
    list.append(el("li", {}, document.createTextNode(`${text} `), remove));
  }
  if (list.children.length) box.append(list);
  for (const port of block.outputs) {
    const targets = connectTargets(editor.graph, catalog, node.id, port.name);
    if (!targets.length) continue;
    const id = `connect-${node.id}-${port.name}`;
    const select = el("select", { id });
    select.append(
      el("option", { value: "", text: "— choose an input —" }),
      ...targets.map((t) => el("option", { value: `${t.target}|${t.port}`, text: t.text })),
    );
    const button = el("button", { type: "button", text: "Connect" });
    button.addEventListener("click", () => {
      if (!select.value) return;
      const [target, targetPort] = select.value.split("|");
      const edge = { source: node.id, source_port: port.name, target, target_port: targetPort };
      const verdict = editor.connect(edge);
      const to = nodeTitle(catalog, editor.node(target));
      canvas.announce(verdict.ok ? `Connected ${port.label} to ${to}.` : verdict.reason);
    });
    box.append(
      el("div", { class: "field connect" },
        el("label", { for: id, text: `Connect “${port.label}” (${port.types[0]}) to` }),
        el("span", { class: "connect-row" }, select, button)),
    );
  }
  if (box.children.length === 1) {
    box.append(el("p", { class: "muted small", text: "No compatible input to connect to yet." }));
  }
  return box;
}

/** A change made in the panel: keep its inputs (and focus), refresh only errors and state. */
function fromPanelDo(canvas, action) {
  canvas.fromPanel = true;
  try {
    action();
  } finally {
    canvas.fromPanel = false;
  }
  canvas.panelKey = `${canvas.selectedNode()?.id}@${canvas.editor.revision}`;
  renderPanelErrors(canvas);
}

/** The selected block's state badge in the side panel, in words and a symbol. */
export function renderPanelState(canvas, node) {
  const badge = canvas.$("#panel-body [data-testid=panel-state] .node-state");
  if (!badge) return;
  const state = nodeState(canvas, node);
  badge.className = `node-state state-${state}`;
  badge.textContent = stateText(state);
}

/** After a parameter change or a validation: the error list, the state and field errors. */
export function renderPanelErrors(canvas) {
  const node = canvas.selectedNode();
  const panel = canvas.$("#panel-body");
  if (!node || !panel) return;
  renderPanelState(canvas, node);
  const old = panel.querySelector("[data-testid=panel-errors]");
  const errors = canvas.placed.nodes[node.id] || [];
  const list = errorList(errors);
  if (old) old.replaceWith(list);
  else if (errors.length) panel.querySelector("form.params")?.before(list);
  for (const field of panel.querySelectorAll(".field[data-param]")) {
    const message = errors.find((e) => e.param === field.dataset.param);
    const slot = field.querySelector(".field-error");
    if (slot) slot.textContent = message ? message.message : "";
    field.classList.toggle("invalid", Boolean(message));
  }
}

/** The run's step detail for a node, as an htmx fragment. */
export function loadStepDetail(canvas, nodeId) {
  const box = canvas.$("#step-detail");
  if (!box || !canvas.run?.overlay || !canvas.run.steps[nodeId]) return;
  const url = canvas.api.stepUrl(canvas.run.id, nodeId);
  window.htmx.ajax("GET", url, { target: box, swap: "innerHTML" });
}
