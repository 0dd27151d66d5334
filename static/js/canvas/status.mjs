// What the canvas tells the user outside the graph: the toolbar's undo, redo, save and run
// buttons, the problem list, the save status line, the run bar, the refusal tip and the
// screen reader's announcements.

import { el } from "./dom.mjs";
import { defaultTrigger, errorTarget, runChoices } from "./queries.mjs";
import { focusNode } from "./render.mjs";
import {
  otherVersionText,
  problemCountText,
  runBlocker,
  runChoiceText,
  runStatusText,
  runTitle,
  saveButtonText,
} from "./text.mjs";

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
    const { choice, school } = renderRunChoice(canvas);
    const why = runBlocker({ dirty: canvas.dirty, version, versionDraft, choice, school });
    run.disabled = Boolean(why);
    run.title = why || runTitle(config.version, choice);
    const hint = canvas.$("#run-hint");
    if (hint) hint.textContent = why;
  }
}

/** The Run chooser: which trigger to fire (when there are several) and, for an alert trigger
 * fired by hand whose blocks need one, the school. Returns the choice (null: one must be
 * chosen) and the school chosen. */
export function renderRunChoice(canvas) {
  const box = canvas.$("#run-choice");
  const select = canvas.$("#run-trigger");
  const choices = runChoices(canvas.editor.graph, canvas.catalog);
  canvas.runChoices = choices;
  if (!box || !select) return { choice: undefined, school: "" };
  const key = choices.map((c) => `${c.id}:${c.label}`).join("|");
  if (select.dataset.key !== key) {
    const before = select.value || defaultTrigger(choices);
    select.replaceChildren(el("option", { value: "", text: "choose a trigger…" }));
    for (const c of choices) select.append(el("option", { value: c.id, text: runChoiceText(c) }));
    select.value = choices.some((c) => c.id === before) ? before : "";
    select.dataset.key = key;
    if (!select.dataset.bound) {
      select.dataset.bound = "1";
      select.addEventListener("change", () => renderStatus(canvas));
      canvas.$("#run-school")?.addEventListener("change", () => renderStatus(canvas));
    }
  }
  const schoolSelect = canvas.$("#run-school");
  if (schoolSelect && schoolSelect.options.length === 1) {
    for (const s of canvas.config.schools || []) {
      schoolSelect.append(el("option", { value: String(s.id), text: s.name }));
    }
  }
  const choice = choices.find((c) => c.id === select.value) || null;
  const askSchool = Boolean(choice?.needsSchool);
  box.hidden = choices.length < 2 && !askSchool;
  canvas.$("#run-school-choice").hidden = !askSchool;
  return { choice: choices.length ? choice : undefined, school: askSchool ? schoolSelect.value : "" };
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
  const started = canvas.$("#run-started");
  if (started) started.textContent = run.started ? `${run.started}.` : "";
  const other = canvas.$("#run-other-version");
  if (other) {
    other.textContent = otherVersionText(run, canvas.config.version);
    other.hidden = !other.textContent;
  }
}
