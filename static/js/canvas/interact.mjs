// Input: the toolbar's buttons, the viewport's pointer gestures (drop a block, move, pan,
// rubber-band select, drag from an output to an input) and the keyboard (keys.mjs), each turned
// into Editor calls and canvas commands.

import { svg } from "./dom.mjs";
import { dragBox, edgePath, movedFar, within } from "./geometry.mjs";
import { canConnect } from "./model.mjs";
import { keyCommand } from "./keys.mjs";
import { BLOCK_MIME } from "./palette.mjs";
import { renderPanelErrors } from "./panel.mjs";
import { focusNode, portCentre, renderEdges, renderSelection } from "./render.mjs";
import { showRefusal } from "./status.mjs";
import { save, startRun } from "./sync.mjs";

export function bindToolbar(canvas) {
  const on = (id, handler) => canvas.$(`#${id}`)?.addEventListener("click", handler);
  on("undo", () => canvas.editor.undo());
  on("redo", () => canvas.editor.redo());
  on("zoom-in", () => canvas.zoomBy(1.2));
  on("zoom-out", () => canvas.zoomBy(1 / 1.2));
  on("fit", () => canvas.fit());
  on("duplicate", () => canvas.duplicateSelection());
  on("delete", () => canvas.deleteSelection());
  on("add-note", () => {
    const rect = canvas.viewport.getBoundingClientRect();
    const note = canvas.editor.addNote("", canvas.toWorld(rect.left + 40, rect.top + 40));
    canvas.select({ notes: [note.id] });
    canvas.root.querySelector(`[data-note-id="${note.id}"] textarea`)?.focus();
  });
  canvas.$("#save-form")?.addEventListener("submit", (event) => {
    event.preventDefault();
    save(canvas);
  });
  on("run", () => startRun(canvas));
}

export function bindViewport(canvas) {
  const vp = canvas.viewport;
  vp.addEventListener("dragover", (event) => {
    if (canvas.readOnly) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  vp.addEventListener("drop", (event) => {
    if (canvas.readOnly) return;
    event.preventDefault();
    const kind = event.dataTransfer.getData(BLOCK_MIME) || event.dataTransfer.getData("text/plain");
    if (!kind || !canvas.catalog.latest(kind)) return;
    const at = canvas.toWorld(event.clientX, event.clientY);
    canvas.addBlock(kind, { x: at.x - 20, y: at.y - 20 });
  });
  vp.addEventListener("wheel", (event) => {
    event.preventDefault();
    canvas.zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1, event.clientX, event.clientY);
  }, { passive: false });
  vp.addEventListener("pointerdown", (event) => pointerDown(canvas, event));
  canvas.nodeLayer.addEventListener("focusin", (event) => {
    const element = event.target.closest("[data-node-id]");
    const id = element?.dataset.nodeId;
    if (element && event.target === element && !canvas.selection.nodes.has(id)) {
      canvas.select({ nodes: [id] });
    }
  });
}

function pointerDown(canvas, event) {
  if (event.button !== 0) return;
  const port = event.target.closest(".port");
  const nodeEl = event.target.closest("[data-node-id]");
  const noteEl = event.target.closest("[data-note-id]");
  if (port && port.dataset.side === "out" && !canvas.readOnly) {
    event.preventDefault();
    startConnection(canvas, event, nodeEl.dataset.nodeId, port.dataset.port);
  } else if (nodeEl) {
    const id = nodeEl.dataset.nodeId;
    if (event.shiftKey || event.ctrlKey || event.metaKey) {
      canvas.toggleNode(id);
      return;
    }
    if (!canvas.selection.nodes.has(id)) canvas.select({ nodes: [id] });
    if (!canvas.readOnly) startMove(canvas, event);
  } else if (noteEl) {
    if (event.target.tagName === "TEXTAREA") return;
    canvas.select({ notes: [noteEl.dataset.noteId] }, event.shiftKey);
    if (!canvas.readOnly) startMove(canvas, event);
  } else if (event.shiftKey) {
    startRubberBand(canvas, event);
  } else {
    startPan(canvas, event);
  }
}

/** Follow a drag to its drop; no redraw meanwhile (a validation answer waits for the drop). */
function track(canvas, onMove, onUp) {
  canvas.dragging = true;
  const move = (e) => onMove(e);
  const up = (e) => {
    window.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    canvas.dragging = false;
    onUp(e);
    if (canvas.redrawAfterDrag) {
      canvas.redrawAfterDrag = false;
      canvas.render();
      renderPanelErrors(canvas);
    }
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

function startMove(canvas, event) {
  event.preventDefault();
  const before = canvas.editor.snapshot();
  const start = canvas.toWorld(event.clientX, event.clientY);
  const items = canvas.selection.movable(canvas.editor.graph);
  const origin = new Map(items.map((n) => [n.id, { ...n.position }]));
  track(
    canvas,
    (e) => {
      const now = canvas.toWorld(e.clientX, e.clientY);
      for (const item of items) {
        const o = origin.get(item.id);
        item.position = {
          x: Math.round(o.x + now.x - start.x),
          y: Math.round(o.y + now.y - start.y),
        };
        const element = canvas.nodeLayer.querySelector(
          `[data-node-id="${CSS.escape(item.id)}"], [data-note-id="${CSS.escape(item.id)}"]`,
        );
        if (element) {
          element.style.left = `${item.position.x}px`;
          element.style.top = `${item.position.y}px`;
        }
      }
      renderEdges(canvas);
      renderSelection(canvas);
    },
    () => {
      const focused = canvas.selectedNode()?.id;
      canvas.editor.commit(before);
      if (focused) focusNode(canvas, focused, false);
    },
  );
}

function startPan(canvas, event) {
  const start = { x: event.clientX, y: event.clientY };
  const from = { x: canvas.view.x, y: canvas.view.y };
  let moved = false;
  canvas.viewport.classList.add("panning");
  track(
    canvas,
    (e) => {
      moved = moved || movedFar(start, { x: e.clientX, y: e.clientY });
      canvas.view.x = from.x + e.clientX - start.x;
      canvas.view.y = from.y + e.clientY - start.y;
      canvas.applyView();
    },
    () => {
      canvas.viewport.classList.remove("panning");
      if (!moved) canvas.select();
    },
  );
}

function startRubberBand(canvas, event) {
  const band = canvas.$("#band");
  const rect = canvas.viewport.getBoundingClientRect();
  const start = { x: event.clientX, y: event.clientY };
  const box = (e) => dragBox(start, { x: e.clientX, y: e.clientY });
  band.hidden = false;
  track(
    canvas,
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
      const inside = [...canvas.nodeLayer.querySelectorAll("[data-node-id]")].filter((element) =>
        within(element.getBoundingClientRect(), b),
      );
      canvas.select({ nodes: inside.map((element) => element.dataset.nodeId) }, true);
    },
  );
}

/** Drag from an output: inputs light up (or say why not), and a drop on one connects. */
function startConnection(canvas, event, sourceId, sourcePort) {
  const from = portCentre(canvas, sourceId, sourcePort, "out");
  const temp = svg("path", { class: "edge-temp", d: edgePath(from, from) });
  canvas.edgeLayer.append(temp);
  const verdicts = new Map();
  for (const port of canvas.nodeLayer.querySelectorAll(".port.in")) {
    const target = port.closest("[data-node-id]").dataset.nodeId;
    const verdict = canConnect(canvas.editor.graph, canvas.catalog, {
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
  canvas.viewport.classList.add("connecting");
  const targetPort = (e) => document.elementFromPoint(e.clientX, e.clientY)?.closest?.(".port.in");
  track(
    canvas,
    (e) => {
      temp.setAttribute("d", edgePath(from, canvas.toWorld(e.clientX, e.clientY)));
      for (const port of verdicts.keys()) port.classList.remove("hover");
      targetPort(e)?.classList.add("hover");
    },
    (e) => {
      temp.remove();
      canvas.viewport.classList.remove("connecting");
      const port = targetPort(e);
      for (const p of verdicts.keys()) {
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
      const verdict = canvas.editor.connect(edge);
      if (!verdict.ok) {
        showRefusal(canvas, verdict.reason, e.clientX, e.clientY);
        return;
      }
      canvas.announce(
        `Connected ${edge.source}.${edge.source_port} to ${edge.target}.${edge.target_port}.`,
      );
    },
  );
}

export function bindKeyboard(canvas) {
  const commands = {
    undo: () => canvas.editor.undo(),
    redo: () => canvas.editor.redo(),
    delete: () => canvas.deleteSelection(),
    duplicate: () => canvas.duplicateSelection(),
    move: ({ dx, dy }) => canvas.editor.moveNodes([...canvas.selection.nodes], dx, dy),
    "zoom-in": () => canvas.zoomBy(1.2),
    "zoom-out": () => canvas.zoomBy(1 / 1.2),
    deselect: () => canvas.select(),
  };
  document.addEventListener("keydown", (event) => {
    const command = keyCommand(event, {
      typing: Boolean(event.target.closest?.("input, textarea, select, [contenteditable]")),
      inside: canvas.root.contains(event.target) || event.target === document.body,
      canMove: canvas.selection.nodes.size > 0 && !canvas.readOnly,
    });
    if (!command) return;
    if (command.prevent) event.preventDefault();
    commands[command.name](command);
  });
}
