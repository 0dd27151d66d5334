// The palette: the blocks by category, filtered by the search field. A block is dragged onto
// the canvas (the viewport's drop handler is in interact.mjs) or pressed to add it in view.

import { el } from "./dom.mjs";
import { paletteDropPoint } from "./geometry.mjs";
import { paletteGroups } from "./queries.mjs";
import { icon } from "./text.mjs";

export const BLOCK_MIME = "application/x-edumlops-block";

function paletteItem(canvas, block) {
  const item = el(
    "button",
    {
      type: "button",
      class: `palette-item cat-${block.category}`,
      draggable: "true",
      "data-kind": block.kind,
      title: block.help,
      "aria-label": `Add ${block.label}: ${block.help}`,
    },
    el("span", { class: "icon", "aria-hidden": "true", text: icon(block.icon) }),
    el("span", { class: "name", text: block.label }),
  );
  item.addEventListener("dragstart", (event) => {
    event.dataTransfer.setData(BLOCK_MIME, block.kind);
    event.dataTransfer.setData("text/plain", block.kind);
    event.dataTransfer.effectAllowed = "copy";
  });
  item.addEventListener("click", () => {
    // keyboard and click: add at the centre of what is in view
    const rect = canvas.viewport.getBoundingClientRect();
    const centre = canvas.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 3);
    canvas.addBlock(block.kind, paletteDropPoint(centre, canvas.editor.graph.nodes.length));
  });
  return item;
}

/** Fill the palette (if the page has one: a read-only canvas has none). */
export function buildPalette(canvas) {
  if (!canvas.$("#palette")) return;
  const list = canvas.$("#palette-list");
  const search = canvas.$("#palette-search");
  const render = () => {
    list.replaceChildren();
    for (const group of paletteGroups(canvas.catalog, canvas.config.categories, search.value)) {
      const section = el("section", { class: "palette-group" });
      section.append(el("h3", { text: group.label }));
      for (const block of group.blocks) section.append(paletteItem(canvas, block));
      list.append(section);
    }
    if (!list.children.length) list.append(el("p", { class: "muted", text: "No block matches." }));
  };
  search.addEventListener("input", render);
  render();
}
