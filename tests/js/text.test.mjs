// Tests of the canvas's words and symbols (static/js/canvas/text.mjs).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { STATE_LABELS } from "../../static/js/canvas/model.mjs";
import {
  bannerText,
  count,
  deletedText,
  duplicatedText,
  edgeLabel,
  icon,
  panelHint,
  portTitle,
  problemCountText,
  otherVersionText,
  runBlocker,
  runChoiceText,
  runStatusText,
  runTitle,
  saveButtonText,
  savedText,
  stateLabel,
  stateSymbol,
} from "../../static/js/canvas/text.mjs";

test("icons and state symbols, with fallbacks", () => {
  assert.equal(icon("play"), "▶");
  assert.equal(icon("no-such-icon"), "□");
  assert.equal(icon(undefined), "□");
  assert.equal(stateSymbol("succeeded"), "✓");
  assert.equal(stateSymbol("mystery"), "");
  assert.equal(stateSymbol("mystery", "•"), "•");
  for (const state of Object.keys(STATE_LABELS)) assert.notEqual(stateSymbol(state), "", state);
  assert.equal(stateLabel("succeeded"), "passed");
  assert.equal(stateLabel("mystery"), "mystery");
});

test("counts and the sentences announced after a delete or a duplicate", () => {
  assert.equal(count(1, "problem"), "1 problem");
  assert.equal(count(0, "problem"), "0 problems");
  assert.equal(deletedText(1), "Deleted 1 item. Ctrl+Z brings it back.");
  assert.equal(deletedText(3), "Deleted 3 items. Ctrl+Z brings them back.");
  assert.equal(duplicatedText(1), "Duplicated 1 block.");
  assert.equal(duplicatedText(2), "Duplicated 2 blocks.");
});

test("the side panel's hint with nothing or several things selected", () => {
  assert.match(panelHint(0), /^Select a block to set it up\. .* to connect them\.$/);
  assert.equal(panelHint(2), "2 items selected. Delete removes them; Ctrl+D duplicates blocks.");
});

test("port and edge labels carry their problems", () => {
  const port = { label: "Input", types: ["dataset", "model"], required: false };
  assert.equal(portTitle(port), "Input (dataset or model), optional");
  assert.equal(portTitle({ ...port, required: true }, [{ message: "a" }, { message: "b" }]), "Input (dataset or model)\na\nb");
  const edge = { source: "a", source_port: "out", target: "b", target_port: "in" };
  assert.equal(edgeLabel(edge), "Edge a.out to b.in");
  assert.equal(edgeLabel(edge, [{ message: "Wrong type." }, { message: "Loop." }]), "Edge a.out to b.in: Wrong type. Loop.");
});

test("the save button and the problem count while checking, with problems and without", () => {
  assert.equal(saveButtonText(0, false), "Save");
  assert.equal(saveButtonText(2, true), "Save", "still checking");
  assert.equal(saveButtonText(1, false), "Save as draft (1 problem)");
  assert.equal(saveButtonText(2, false), "Save as draft (2 problems)");
  assert.equal(problemCountText(2, true), "checking…");
  assert.equal(problemCountText(0, false), "no problems: ready to save and run");
  assert.equal(problemCountText(1, false), "1 problem");
});

test("why Run is off: unsaved changes first, then no version, then a draft", () => {
  assert.equal(runBlocker({ dirty: true, version: null, versionDraft: true }), "Save your changes first: a run uses a saved version.");
  assert.equal(runBlocker({ dirty: false, version: null }), "Save a first version to run it.");
  assert.equal(runBlocker({ dirty: false, version: 2, versionDraft: true }), "This version is a draft with problems: fix them and save to run.");
  assert.equal(runBlocker({ dirty: false, version: 2, versionDraft: false }), "");
});

test("after a save: the status line and the banner", () => {
  assert.equal(savedText({ number: 3, draft: false, errors: [] }), "Saved version 3.");
  assert.equal(savedText({ number: 4, draft: true, errors: [{}] }), "Saved version 4 as a draft: it cannot run until its 1 problem is fixed.");
  assert.equal(savedText({ number: 4, draft: true, errors: [{}, {}] }), "Saved version 4 as a draft: it cannot run until its 2 problems are fixed.");
  assert.equal(bannerText({ number: 3, draft: false }), "Version 3");
  assert.equal(bannerText({ number: 4, draft: true }), "Version 4 (draft: cannot run until its problems are fixed)");
});

test("a run's status with its reason", () => {
  assert.equal(runStatusText({ status: "succeeded" }), "passed");
  assert.equal(runStatusText({ status: "waiting", reason: "next check at 06:00" }), "waiting — next check at 06:00");
});

test("the real block catalog: every block's icon has a symbol", { skip: !process.env.EDUMLOPS_CATALOG }, () => {
  const blocks = JSON.parse(readFileSync(process.env.EDUMLOPS_CATALOG, "utf8"));
  for (const block of blocks) assert.ok(block.icon === "square" || icon(block.icon) !== "□", `${block.kind}: ${block.icon}`);
});

test("the Run button asks for a trigger, and a school for an alert fired by hand", () => {
  const weekly = { id: "weekly", label: "Every Monday", byHand: false, needsSchool: false };
  const alarm = { id: "alarm", label: "Start on an alert", byHand: false, needsSchool: true };
  const base = { dirty: false, version: 2, versionDraft: false };
  assert.equal(runBlocker({ ...base, choice: null }), "Choose the trigger to start from.");
  assert.equal(runBlocker({ ...base, choice: weekly }), "");
  assert.equal(
    runBlocker({ ...base, choice: alarm, school: "" }),
    'Choose a school: fired by hand, "Start on an alert" has no alert to take one from.',
  );
  assert.equal(runBlocker({ ...base, choice: alarm, school: "4" }), "");
  assert.equal(runChoiceText(weekly), "Every Monday: fire it now");
  assert.equal(runChoiceText({ label: "Start by hand", byHand: true }), "Start by hand");
  assert.equal(runTitle(2, weekly), 'Run version 2 now, firing "Every Monday" by hand');
  assert.equal(runTitle(2, undefined), "Run version 2");
});

test("a run in which nothing ran says so, and a run of another version says which", () => {
  const reason = "Nothing ran: every step after the trigger was skipped (an input was skipped).";
  assert.equal(runStatusText({ status: "succeeded", summary: reason, reason }), reason);
  assert.equal(runStatusText({ status: "succeeded", summary: "passed", reason: "" }), "passed");
  assert.equal(otherVersionText({ version: 3 }, 3), "");
  assert.equal(
    otherVersionText({ version: 2 }, 3),
    "(version 2: open the run to see its steps on the graph it ran)",
  );
});
