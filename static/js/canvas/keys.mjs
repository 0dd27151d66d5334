// The canvas's keyboard shortcuts: which command a key press means. No DOM:
// tests/js/keys.test.mjs; interact.mjs carries the command out.

/**
 * The command for a keydown `event` ({key, ctrlKey, metaKey, shiftKey}), or null. `where` says
 * whether the user is `typing` in a field, whether the key was pressed `inside` the canvas (or
 * on the page's body) and whether selected blocks `canMove`. The command is {name, prevent}
 * (prevent: the browser's own action for the key is to be stopped) with dx, dy for "move".
 */
export function keyCommand(event, { typing = false, inside = true, canMove = false } = {}) {
  const key = event.key;
  const mod = event.ctrlKey || event.metaKey;
  if (mod && key.toLowerCase() === "z" && !typing) {
    return { name: event.shiftKey ? "redo" : "undo", prevent: true };
  }
  if (mod && key.toLowerCase() === "y" && !typing) return { name: "redo", prevent: true };
  if (typing || !inside) return null;
  if (key === "Delete" || key === "Backspace") return { name: "delete", prevent: true };
  if (mod && key.toLowerCase() === "d") return { name: "duplicate", prevent: true };
  if (key.startsWith("Arrow") && canMove) {
    const step = event.shiftKey ? 40 : 10;
    const dx = key === "ArrowLeft" ? -step : key === "ArrowRight" ? step : 0;
    const dy = key === "ArrowUp" ? -step : key === "ArrowDown" ? step : 0;
    return { name: "move", prevent: true, dx, dy };
  }
  if (key === "+" || key === "=") return { name: "zoom-in", prevent: false };
  if (key === "-") return { name: "zoom-out", prevent: false };
  if (key === "Escape") return { name: "deselect", prevent: false };
  return null;
}
