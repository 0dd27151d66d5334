// The canvas's words and symbols: block icons, state symbols and the sentences it shows or
// announces. No DOM: tests/js/text.test.mjs.

import { STATE_LABELS } from "./model.mjs";

const ICONS = {
  play: "▶", clock: "◷", calendar: "▦", bell: "♪", database: "◫", "eye-off": "◌",
  scissors: "✂", cpu: "⚙", "check-circle": "✓", scale: "⚖", package: "▣", tag: "✎",
  "file-text": "☰", "user-check": "☑", filter: "▽", flag: "⚑", "trending-up": "↗",
  "rotate-ccw": "↺", archive: "▤", snowflake: "❄", crosshair: "✛", activity: "∿",
  target: "◎", hourglass: "◔", server: "⌸", square: "□", "share-2": "⇄",
};
const STATE_SYMBOLS = {
  not_configured: "○", invalid: "✕", ready: "●", queued: "…", running: "▶", succeeded: "✓",
  failed: "✕", blocked: "⊘", waiting_approval: "⏸", waiting: "◔", skipped: "–", cancelled: "⊘",
  rejected: "✕",
};

/** A block's icon (a character), a square for an unknown one. */
export function icon(name) {
  return ICONS[name] || "□";
}

/** A state's symbol, or `fallback` for a state without one. */
export function stateSymbol(state, fallback = "") {
  return STATE_SYMBOLS[state] || fallback;
}

/** A state in words ("succeeded" is "passed"); an unknown state as it is. */
export function stateLabel(state) {
  return STATE_LABELS[state] || state;
}

/** "1 problem", "2 problems". */
export function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

export function deletedText(n) {
  return `Deleted ${count(n, "item")}. Ctrl+Z brings ${n === 1 ? "it" : "them"} back.`;
}

export function duplicatedText(n) {
  return `Duplicated ${count(n, "block")}.`;
}

/** The side panel's text when no single block is selected. */
export function panelHint(selected) {
  return selected
    ? `${count(selected, "item")} selected. Delete removes them; Ctrl+D duplicates blocks.`
    : "Select a block to set it up. Drag a block from the palette, then drag from an " +
        "output (right) to an input (left) to connect them.";
}

/** A port's tooltip: its label, types, whether it is optional and its problems. */
export function portTitle(port, errors = []) {
  return (
    `${port.label} (${port.types.join(" or ")})${port.required ? "" : ", optional"}` +
    (errors.length ? `\n${errors.map((e) => e.message).join("\n")}` : "")
  );
}

export function edgeLabel(edge, errors = []) {
  return (
    `Edge ${edge.source}.${edge.source_port} to ${edge.target}.${edge.target_port}` +
    (errors.length ? `: ${errors.map((e) => e.message).join(" ")}` : "")
  );
}

/** The save button: a save with problems keeps the version as a draft. */
export function saveButtonText(problems, pending) {
  return problems && !pending ? `Save as draft (${count(problems, "problem")})` : "Save";
}

/** The problem list's heading while checking, with problems, or with none. */
export function problemCountText(problems, pending) {
  if (pending) return "checking…";
  return problems ? count(problems, "problem") : "no problems: ready to save and run";
}

/** Why the Run button is off ("" when it is on). `choice` is the trigger chosen (its
 * runChoices entry, or null when several wait for a choice) and `school` the school chosen. */
export function runBlocker({ dirty, version, versionDraft, choice, school }) {
  if (dirty) return "Save your changes first: a run uses a saved version.";
  if (!version) return "Save a first version to run it.";
  if (versionDraft) return "This version is a draft with problems: fix them and save to run.";
  if (choice === null) return "Choose the trigger to start from.";
  if (choice?.needsSchool && !school) {
    return `Choose a school: fired by hand, "${choice.label}" has no alert to take one from.`;
  }
  return "";
}

/** A trigger in the Run chooser: "Start by hand" as it is, any other one fired now. */
export function runChoiceText(choice) {
  return choice.byHand ? choice.label : `${choice.label}: fire it now`;
}

/** The Run button's tooltip. */
export function runTitle(version, choice) {
  if (!choice || choice.byHand) return `Run version ${version}`;
  return `Run version ${version} now, firing "${choice.label}" by hand`;
}

/** The status line after a save (`saved` is the answer of POST versions/). */
export function savedText(saved) {
  if (!saved.draft) return `Saved version ${saved.number}.`;
  const n = saved.errors.length;
  return (
    `Saved version ${saved.number} as a draft: it cannot run until its ` +
    `${count(n, "problem")} ${n === 1 ? "is" : "are"} fixed.`
  );
}

/** The page's version banner after a save. */
export function bannerText(saved) {
  const draft = saved.draft ? " (draft: cannot run until its problems are fixed)" : "";
  return `Version ${saved.number}${draft}`;
}

/** A run's status with the reason it waits or failed, if it gave one; a run in which nothing
 * ran says so (its `summary`), not "passed". */
export function runStatusText(run) {
  if (run.status === "succeeded" && run.summary && run.summary !== "passed") return run.summary;
  return `${stateLabel(run.status)}` + (run.reason ? ` — ${run.reason}` : "");
}

/** What the run bar adds when the run is of another version than the one on the canvas. */
export function otherVersionText(run, version) {
  return run.version === version
    ? ""
    : `(version ${run.version}: open the run to see its steps on the graph it ran)`;
}
