// Tests of the canvas's keyboard shortcuts (static/js/canvas/keys.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";

import { keyCommand } from "../../static/js/canvas/keys.mjs";

const press = (key, mods = {}) => ({ key, ctrlKey: false, metaKey: false, shiftKey: false, ...mods });

test("Ctrl or Cmd with Z undoes, with Shift or Y redoes, even outside the canvas", () => {
  assert.deepEqual(keyCommand(press("z", { ctrlKey: true })), { name: "undo", prevent: true });
  assert.deepEqual(keyCommand(press("z", { metaKey: true }), { inside: false }), { name: "undo", prevent: true });
  assert.deepEqual(keyCommand(press("Z", { ctrlKey: true, shiftKey: true })), { name: "redo", prevent: true });
  assert.deepEqual(keyCommand(press("y", { ctrlKey: true })), { name: "redo", prevent: true });
  assert.equal(keyCommand(press("z")), null);
});

test("keys typed in a field are the field's", () => {
  for (const event of [press("z", { ctrlKey: true }), press("y", { ctrlKey: true }), press("Delete"), press("Backspace"), press("d", { ctrlKey: true }), press("ArrowLeft"), press("+"), press("Escape")]) {
    assert.equal(keyCommand(event, { typing: true, canMove: true }), null, event.key);
  }
});

test("outside the canvas only undo and redo work", () => {
  assert.equal(keyCommand(press("Delete"), { inside: false }), null);
  assert.equal(keyCommand(press("-"), { inside: false }), null);
});

test("Delete and Backspace delete, Ctrl+D duplicates", () => {
  assert.deepEqual(keyCommand(press("Delete")), { name: "delete", prevent: true });
  assert.deepEqual(keyCommand(press("Backspace")), { name: "delete", prevent: true });
  assert.deepEqual(keyCommand(press("D", { metaKey: true })), { name: "duplicate", prevent: true });
  assert.equal(keyCommand(press("d")), null);
});

test("arrows move selected blocks by 10, with Shift by 40, when they can move", () => {
  assert.deepEqual(keyCommand(press("ArrowLeft"), { canMove: true }), { name: "move", prevent: true, dx: -10, dy: 0 });
  assert.deepEqual(keyCommand(press("ArrowDown", { shiftKey: true }), { canMove: true }), { name: "move", prevent: true, dx: 0, dy: 40 });
  assert.deepEqual(keyCommand(press("ArrowUp"), { canMove: true }), { name: "move", prevent: true, dx: 0, dy: -10 });
  assert.deepEqual(keyCommand(press("ArrowRight"), { canMove: true }), { name: "move", prevent: true, dx: 10, dy: 0 });
  assert.equal(keyCommand(press("ArrowLeft"), { canMove: false }), null, "nothing selected, or read-only");
});

test("+ and = zoom in, - zooms out, Escape clears the selection; none stops the browser", () => {
  assert.deepEqual(keyCommand(press("+")), { name: "zoom-in", prevent: false });
  assert.deepEqual(keyCommand(press("=")), { name: "zoom-in", prevent: false });
  assert.deepEqual(keyCommand(press("-")), { name: "zoom-out", prevent: false });
  assert.deepEqual(keyCommand(press("Escape")), { name: "deselect", prevent: false });
  assert.equal(keyCommand(press("a")), null);
});
