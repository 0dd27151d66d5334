// The canvas's geometry: the view (pan x, y and zoom k) between screen and world coordinates,
// zooming about a point, fitting the graph in view, edge curves and the rubber band. Plain
// numbers in and out, no DOM: tests/js/geometry.test.mjs. A `rect` is the viewport's
// getBoundingClientRect() (left, top, width, height).

export const NODE_SIZE = { width: 200, height: 96 };
export const MIN_ZOOM = 0.25;
export const MAX_ZOOM = 2.5;

/** The world point under a screen point. */
export function toWorld(view, rect, clientX, clientY) {
  return {
    x: (clientX - rect.left - view.x) / view.k,
    y: (clientY - rect.top - view.y) / view.k,
  };
}

/** The view zoomed by `factor` about a screen point (the viewport's centre by default). */
export function zoomAt(view, rect, factor, clientX, clientY) {
  const cx = clientX ?? rect.left + rect.width / 2;
  const cy = clientY ?? rect.top + rect.height / 2;
  const before = toWorld(view, rect, cx, cy);
  const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.k * factor));
  return { x: cx - rect.left - before.x * k, y: cy - rect.top - before.y * k, k };
}

/** The view that shows `box` (from model.bounds) centred in the viewport, at most 120%. */
export function fitView(box, rect) {
  if (!box || !rect.width) return { x: 0, y: 0, k: 1 };
  const fit = Math.min(1.2, (rect.width - 60) / box.width, (rect.height - 60) / box.height);
  const k = Math.max(MIN_ZOOM, fit);
  return {
    x: (rect.width - box.width * k) / 2 - box.x * k,
    y: (rect.height - box.height * k) / 2 - box.y * k,
    k,
  };
}

export function viewTransform({ x, y, k }) {
  return `translate(${x}px, ${y}px) scale(${k})`;
}

export function zoomLabel(k) {
  return `${Math.round(k * 100)}%`;
}

/** An edge's curve from an output at `a` to an input at `b`: it leaves right, arrives left. */
export function edgePath(a, b) {
  const dx = Math.max(40, Math.abs(b.x - a.x) / 2);
  return `M ${a.x} ${a.y} C ${a.x + dx} ${a.y}, ${b.x - dx} ${b.y}, ${b.x} ${b.y}`;
}

export function midpoint(a, b) {
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}

/** The rubber band between where a drag started and where the pointer is. */
export function dragBox(start, point) {
  return {
    left: Math.min(start.x, point.x),
    top: Math.min(start.y, point.y),
    right: Math.max(start.x, point.x),
    bottom: Math.max(start.y, point.y),
  };
}

/** Is `rect` wholly inside `box` (both with left, top, right, bottom)? */
export function within(rect, box) {
  return (
    rect.left >= box.left && rect.right <= box.right && rect.top >= box.top &&
    rect.bottom <= box.bottom
  );
}

/** Has a pointer moved far enough from `start` to be a drag rather than a click? */
export function movedFar(start, point, threshold = 3) {
  return Math.abs(point.x - start.x) + Math.abs(point.y - start.y) > threshold;
}

/** Where a block added from the palette goes: a third down the view, staggered by count. */
export function paletteDropPoint(centre, nodeCount) {
  const offset = (nodeCount % 5) * 24;
  return { x: centre.x - 100 + offset, y: centre.y - 40 + offset };
}
