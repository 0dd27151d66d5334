// Questions the palette, the side panel and the problem list ask of the catalog and the graph:
// which blocks to list, what a node is called and connected to, what it could connect to, which
// columns reach it, what a problem is about. No DOM: tests/js/queries.test.mjs.

import { canConnect, edgeKey } from "./model.mjs";

/** The palette's groups: [{category, label, blocks}] for the blocks matching `query`. */
export function paletteGroups(catalog, categories, query) {
  const found = new Set(catalog.search(query).map((b) => b.kind));
  const groups = [];
  for (const [category, label] of categories) {
    const blocks = catalog.blocks.filter((b) => b.category === category && found.has(b.kind));
    if (blocks.length) groups.push({ category, label, blocks });
  }
  return groups;
}

/** A node's name: its label, else its block's label, else its kind. */
export function nodeTitle(catalog, node) {
  return node.label || catalog.get(node.kind, node.version)?.label || node.kind;
}

/** The edges into and out of a node, each with a sentence from the node's side. */
export function connectionsOf(graph, catalog, nodeId) {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  const list = [];
  for (const edge of graph.edges) {
    if (edge.source !== nodeId && edge.target !== nodeId) continue;
    const other = nodes.get(edge.source === nodeId ? edge.target : edge.source);
    const text =
      edge.source === nodeId
        ? `${edge.source_port} → ${nodeTitle(catalog, other)} (${edge.target_port})`
        : `${nodeTitle(catalog, other)} (${edge.source_port}) → ${edge.target_port}`;
    list.push({ edge, text });
  }
  return list;
}

/** The inputs an output port of a node may connect to now: [{target, port, text}]. */
export function connectTargets(graph, catalog, nodeId, portName) {
  const targets = [];
  for (const other of graph.nodes) {
    for (const input of catalog.get(other.kind, other.version)?.inputs || []) {
      const edge = {
        source: nodeId,
        source_port: portName,
        target: other.id,
        target_port: input.name,
      };
      if (canConnect(graph, catalog, edge).ok) {
        targets.push({
          target: other.id,
          port: input.name,
          text: `${nodeTitle(catalog, other)} › ${input.label}`,
        });
      }
    }
  }
  return targets;
}

/** The columns of the dataset version that feeds a node (walking edges back to the nearest node
 * with a `dataset_version` parameter, whatever its kind), or []. */
export function columnsFor(graph, datasetVersions, nodeId) {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  const seen = new Set();
  const queue = [nodeId];
  while (queue.length) {
    const id = queue.shift();
    if (seen.has(id)) continue;
    seen.add(id);
    const node = nodes.get(id);
    if (node?.params?.dataset_version) {  // any block that picks a dataset version
      const version = datasetVersions.find((v) => v.id === node.params.dataset_version);
      if (version) return version.columns;
    }
    for (const e of graph.edges) if (e.target === id) queue.push(e.source);
  }
  return [];
}

/** What a server validation error is about, as a selection ({nodes} or {edges}), or null. */
export function errorTarget(graph, error) {
  if (error.node && graph.nodes.some((n) => n.id === error.node)) return { nodes: [error.node] };
  if (error.edge !== undefined && graph.edges[error.edge]) {
    return { edges: [edgeKey(graph.edges[error.edge])] };
  }
  return null;
}

/** The triggers the Run button may fire, in the graph's order: [{id, label, byHand,
 * needsSchool}]. A trigger other than "Start by hand" is fired by hand (it runs now); fired by
 * hand, an alert trigger has no alert, so it needs a school when a block after it works on
 * the alerted school. */
export function runChoices(graph, catalog) {
  const next = new Map(graph.nodes.map((n) => [n.id, []]));
  for (const e of graph.edges) next.get(e.source)?.push(e.target);
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const after = (id) => {
    const seen = new Set();
    const queue = [...(next.get(id) || [])];
    while (queue.length) {
      const nid = queue.shift();
      if (seen.has(nid)) continue;
      seen.add(nid);
      queue.push(...(next.get(nid) || []));
    }
    return [...seen].map((nid) => byId.get(nid));
  };
  const choices = [];
  for (const node of graph.nodes) {
    const block = catalog.get(node.kind, node.version);
    if (!block?.trigger) continue;
    const byHand = Boolean(block.by_hand);
    const needsSchool =
      !byHand && after(node.id).some((n) => catalog.get(n.kind, n.version)?.needs_school);
    choices.push({ id: node.id, label: nodeTitle(catalog, node), byHand, needsSchool });
  }
  return choices;
}

/** The trigger the Run button fires when nobody chose: the only one, else the only "Start by
 * hand", else none (the user must choose). */
export function defaultTrigger(choices) {
  if (choices.length === 1) return choices[0].id;
  const byHand = choices.filter((c) => c.byHand);
  return byHand.length === 1 ? byHand[0].id : "";
}
