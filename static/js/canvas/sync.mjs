// The canvas and the server (through api.mjs): live validation after each change, saving a
// version, starting a run and following its steps until it finishes.

import { placeErrors } from "./model.mjs";
import { loadStepDetail, renderPanelErrors, renderPanelState } from "./panel.mjs";
import { renderProblems, renderStatus, showRunBar, showSaveStatus } from "./status.mjs";
import { bannerText, savedText } from "./text.mjs";

const FINISHED = new Set(["succeeded", "failed", "rejected", "cancelled"]);

/** Check the graph on the server `delay` ms after the last change. */
export function validateSoon(canvas, delay = 250) {
  if (canvas.readOnly) return;
  clearTimeout(canvas.validateTimer);
  renderProblems(canvas);
  canvas.validateTimer = setTimeout(() => validate(canvas), delay);
}

export async function validate(canvas) {
  const revision = canvas.editor.revision;
  const errors = await canvas.api.validate(canvas.editor.toJSON());
  if (revision !== canvas.editor.revision) return; // a newer change is being checked
  canvas.errors = [...errors, ...(canvas.config.standingErrors || [])];
  canvas.placed = placeErrors(errors);
  canvas.validatedRevision = revision;
  if (canvas.dragging) {
    canvas.redrawAfterDrag = true; // no redraw under a drag: interact.mjs redraws on the drop
    return;
  }
  canvas.render();
  renderPanelErrors(canvas);
}

/** Save a version (a draft when the graph has problems) with the message typed for it. */
export async function save(canvas) {
  if (canvas.readOnly) return;
  clearTimeout(canvas.validateTimer);
  await validate(canvas);
  const message = canvas.$("#save-message").value.trim();
  const revision = canvas.editor.revision;
  const answer = await canvas.api.saveVersion({
    graph: canvas.editor.toJSON(),
    message,
    draft: canvas.errors.length > 0,
  });
  if (!answer.ok) {
    showSaveStatus(canvas, "error", `Not saved: ${answer.message}`);
    return;
  }
  const saved = answer.version;
  canvas.savedRevision = revision;
  if (saved.unchanged) {
    showSaveStatus(canvas, "saved", saved.detail);
    renderStatus(canvas);
    return;
  }
  canvas.config.version = saved.number;
  canvas.config.versionDraft = saved.draft;
  showSaveStatus(canvas, saved.draft ? "draft" : "saved", savedText(saved));
  canvas.$("#save-message").value = "";
  const banner = document.querySelector("[data-testid=version-banner]");
  if (banner) banner.textContent = bannerText(saved);
  document.body.dispatchEvent(new CustomEvent("versions-changed", { bubbles: true }));
  renderStatus(canvas);
}

export async function startRun(canvas) {
  if (canvas.dirty || !canvas.config.version) return;
  const trigger = canvas.$("#run-trigger")?.value || "";
  const school = canvas.$("#run-school-choice")?.hidden ? "" : canvas.$("#run-school")?.value;
  const answer = await canvas.api.startRun(canvas.config.version, {
    trigger_node: trigger || undefined,
    school: school ? Number(school) : undefined,
  });
  if (!answer.ok) {
    showSaveStatus(canvas, "error", `Not started: ${answer.message}`);
    return;
  }
  showSaveStatus(canvas, "saved", `Run ${answer.run.id} started.`);
  showRun(canvas, answer.run);
  watchRun(canvas, answer.run.id);
}

/** Show a run's step states on the canvas (until the next edit) and in the run bar. */
export function showRun(canvas, run) {
  canvas.run = {
    id: run.id,
    status: run.status,
    // the steps fit the graph shown only when the run is of its version
    overlay: run.version === canvas.config.version,
    steps: Object.fromEntries(run.steps.map((s) => [s.node_id, s])),
  };
  showRunBar(canvas, run);
  const node = canvas.selectedNode();
  canvas.render();
  if (node && canvas.run.steps[node.id]) {
    renderPanelState(canvas, node);
    loadStepDetail(canvas, node.id);
  }
}

/** Poll a run every second (3 s while it waits for approval) until it finishes. */
export async function watchRun(canvas, id) {
  clearTimeout(canvas.pollTimer);
  const poll = async () => {
    let run;
    try {
      run = await canvas.api.getRun(id);
    } catch (error) {
      canvas.pollTimer = setTimeout(poll, 3000);
      return;
    }
    if (canvas.run && canvas.run.id === id && !canvas.run.overlay) return; // edited since: stop
    if (canvas.run && canvas.run.id !== id) return; // another run is followed now
    showRun(canvas, run);
    if (!FINISHED.has(run.status)) {
      canvas.pollTimer = setTimeout(poll, run.status === "waiting_approval" ? 3000 : 1000);
    }
  };
  await poll();
}
