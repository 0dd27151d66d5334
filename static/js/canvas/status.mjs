// What the canvas tells the user outside the graph: the toolbar's undo, redo, save and run
// buttons, the problem list, the save status line, the run bar, the refusal tip and the
// screen reader's announcements.

import { el } from "./dom.mjs";
import { errorTarget } from "./queries.mjs";
import { focusNode } from "./render.mjs";
import { problemCountText, runBlocker, runStatusText, saveButtonText } from "./text.mjs";

function pending(canvas) {
  return canvas.validatedRevision !== canvas.editor.revision;
}

export function renderStatus(canvas) {
  const { editor, readOnly, config } = canvas;
  const undo = canvas.$("#undo");
  const redo = canvas.$("#redo");
  if (undo) undo.disabled = readOnly || !editor.history.canUndo;
  if (redo) redo.disabled = readOnly || !editor.history.canRedo;
  const save = canvas.$("#save");
  if (save) save.textContent = saveButtonText(canvas.errors.length, pending(canvas));
  const run = canvas.$("#run");
  if (run) {
    const { version, versionDraft } = config;
    const why = runBlocker({ dirty: canvas.dirty, version, versionDraft });
    run.disabled = Boolean(why);
    run.title = why || `Run version ${config.version}`;
    const hint = canvas.$("#run-hint");
    if (hint) hint.textContent = why;
  }
}

/** The problem list: each problem a button that selects what it is about. */
export function renderProblems(canvas) {
  const box = canvas.$("#problems");
  if (!box) return;
  const list = canvas.$("#problem-list");
  list.replaceChildren();
  if (canvas.readOnly) return;
  const checking = pending(canvas);
  canvas.$("#problem-count").textContent = problemCountText(canvas.errors.length, checking);
  box.dataset.state = checking ? "pending" : canvas.errors.length ? "errors" : "ok";
  for (const error of canvas.errors) {
    const button = el("button", { type: "button", class: "link", text: error.message });
    button.addEventListener("click", () => {
      const target = errorTarget(canvas.editor.graph, error);
      if (!target) return;
      canvas.select(target);
      if (target.nodes) focusNode(canvas, error.node);
    });
    list.append(el("li", {}, button));
  }
}

export function announce(canvas, message) {
  const live = canvas.$("#announce");
  if (live) live.textContent = message;
}

/** Why an edge was refused, in a tip by the pointer for six seconds (and announced). */
export function showRefusal(canvas, reason, clientX, clientY) {
  const tip = canvas.$("#refusal");
  tip.textContent = `Cannot connect: ${reason}`;
  const rect = canvas.viewport.getBoundingClientRect();
  tip.style.left = `${Math.max(0, clientX - rect.left + 12)}px`;
  tip.style.top = `${Math.max(0, clientY - rect.top + 12)}px`;
  tip.hidden = false;
  clearTimeout(canvas.refusalTimer);
  canvas.refusalTimer = setTimeout(() => {
    tip.hidden = true;
  }, 6000);
  announce(canvas, tip.textContent);
}

/** The status line under the save form; `state` is error, draft or saved. */
export function showSaveStatus(canvas, state, text) {
  const status = canvas.$("#save-status");
  status.dataset.state = state;
  status.textContent = text;
}

/** The run bar above the canvas: a link to the run and its status. */
export function showRunBar(canvas, run) {
  const bar = canvas.$("#run-bar");
  if (!bar) return;
  bar.hidden = false;
  const status = canvas.$("#run-status");
  status.textContent = runStatusText(run);
  status.dataset.status = run.status;
  const link = canvas.$("#run-link");
  link.href = canvas.config.runPageUrl.replace("RUN", run.id);
  link.textContent = `Run ${run.id}`;
}
