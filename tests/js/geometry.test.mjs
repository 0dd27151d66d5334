// Tests of the canvas's geometry (static/js/canvas/geometry.mjs): screen and world points, zoom
// about a point, fit to screen, edge curves and the rubber band.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MAX_ZOOM,
  MIN_ZOOM,
  NODE_SIZE,
  dragBox,
  edgePath,
  fitView,
  midpoint,
  movedFar,
  paletteDropPoint,
  toWorld,
  viewTransform,
  within,
  zoomAt,
  zoomLabel,
} from "../../static/js/canvas/geometry.mjs";
import { bounds } from "../../static/js/canvas/model.mjs";

const RECT = { left: 100, top: 50, width: 800, height: 600 };

test("a screen point is turned into a world point through pan and zoom", () => {
  assert.deepEqual(toWorld({ x: 0, y: 0, k: 1 }, RECT, 100, 50), { x: 0, y: 0 });
  assert.deepEqual(toWorld({ x: 20, y: 10, k: 2 }, RECT, 220, 160), { x: 50, y: 50 });
});

test("zooming keeps the world point under the pointer where it was", () => {
  const view = { x: 30, y: -40, k: 1 };
  const before = toWorld(view, RECT, 400, 300);
  const zoomed = zoomAt(view, RECT, 1.5, 400, 300);
  assert.equal(zoomed.k, 1.5);
  const after = toWorld(zoomed, RECT, 400, 300);
  assert.ok(Math.abs(after.x - before.x) < 1e-9 && Math.abs(after.y - before.y) < 1e-9);
  assert.deepEqual(view, { x: 30, y: -40, k: 1 }, "the view given is left as it was");
});

test("without a pointer, zoom is about the viewport's centre", () => {
  const view = { x: 0, y: 0, k: 1 };
  const centre = toWorld(view, RECT, 500, 350);
  const zoomed = zoomAt(view, RECT, 2);
  assert.deepEqual(toWorld(zoomed, RECT, 500, 350), centre);
});

test("zoom stays between 25% and 250%", () => {
  assert.equal(zoomAt({ x: 0, y: 0, k: 2 }, RECT, 10).k, MAX_ZOOM);
  assert.equal(zoomAt({ x: 0, y: 0, k: 0.3 }, RECT, 0.1).k, MIN_ZOOM);
  assert.equal(MIN_ZOOM, 0.25);
  assert.equal(MAX_ZOOM, 2.5);
});

test("fit centres the graph's box, at most 120%, at least 25%", () => {
  assert.deepEqual(fitView(null, RECT), { x: 0, y: 0, k: 1 });
  assert.deepEqual(fitView({ x: 0, y: 0, width: 100, height: 100 }, { ...RECT, width: 0 }), { x: 0, y: 0, k: 1 });
  const small = fitView({ x: 10, y: 20, width: 200, height: 96 }, RECT);
  assert.equal(small.k, 1.2);
  assert.equal(small.x, (800 - 200 * 1.2) / 2 - 10 * 1.2);
  assert.equal(small.y, (600 - 96 * 1.2) / 2 - 20 * 1.2);
  const wide = fitView({ x: 0, y: 0, width: 1480, height: 100 }, RECT);
  assert.equal(wide.k, (800 - 60) / 1480);
  assert.equal(fitView({ x: 0, y: 0, width: 100000, height: 100 }, RECT).k, MIN_ZOOM);
});

test("fit with the nodes' bounds shows every node inside the viewport", () => {
  const graph = {
    nodes: [{ position: { x: -300, y: 40 } }, { position: { x: 900, y: 700 } }],
    notes: [{ position: { x: 100, y: -200 } }],
  };
  const view = fitView(bounds(graph, NODE_SIZE), RECT);
  for (const { position } of [...graph.nodes, ...graph.notes]) {
    const left = position.x * view.k + view.x;
    const top = position.y * view.k + view.y;
    assert.ok(left >= 0 && left + NODE_SIZE.width * view.k <= RECT.width, `x ${position.x}`);
    assert.ok(top >= 0 && top + NODE_SIZE.height * view.k <= RECT.height, `y ${position.y}`);
  }
});

test("the view as CSS and the zoom in percent", () => {
  assert.equal(viewTransform({ x: 12, y: -3, k: 0.5 }), "translate(12px, -3px) scale(0.5)");
  assert.equal(zoomLabel(1), "100%");
  assert.equal(zoomLabel(1 / 1.2), "83%");
});

test("an edge leaves its output to the right and enters its input from the left", () => {
  assert.equal(edgePath({ x: 0, y: 0 }, { x: 200, y: 50 }), "M 0 0 C 100 0, 100 50, 200 50");
  // close or backwards ends still bend by at least 40
  assert.equal(edgePath({ x: 100, y: 0 }, { x: 120, y: 10 }), "M 100 0 C 140 0, 80 10, 120 10");
  assert.deepEqual(midpoint({ x: 0, y: 10 }, { x: 20, y: 30 }), { x: 10, y: 20 });
});

test("the rubber band spans start and pointer in any direction, and holds whole boxes", () => {
  const box = dragBox({ x: 300, y: 200 }, { x: 100, y: 400 });
  assert.deepEqual(box, { left: 100, top: 200, right: 300, bottom: 400 });
  assert.ok(within({ left: 120, top: 220, right: 280, bottom: 300 }, box));
  assert.ok(within(box, box));
  assert.ok(!within({ left: 90, top: 220, right: 280, bottom: 300 }, box), "partly outside");
});

test("a pointer that moved 3 px or less clicked rather than dragged", () => {
  assert.ok(!movedFar({ x: 10, y: 10 }, { x: 12, y: 11 }));
  assert.ok(movedFar({ x: 10, y: 10 }, { x: 12, y: 12 }));
});

test("blocks added from the palette are staggered so they do not hide each other", () => {
  assert.deepEqual(paletteDropPoint({ x: 300, y: 200 }, 0), { x: 200, y: 160 });
  assert.deepEqual(paletteDropPoint({ x: 300, y: 200 }, 2), { x: 248, y: 208 });
  assert.deepEqual(paletteDropPoint({ x: 300, y: 200 }, 5), { x: 200, y: 160 });
});
