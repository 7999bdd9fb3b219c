// The topology page's pure part: from /api/topology's answer and the page's filters to
// the elements the graph draws (filters, N-hop focus, namespaces collapsed), edge widths
// and the links a click opens. No DOM, no graph library: unit-tested with node --test.

const HEALTH_RANK = { idle: 0, ok: 1, warn: 2, bad: 3 };

export function worstHealth(a, b) {
  return (HEALTH_RANK[a] ?? 0) >= (HEALTH_RANK[b] ?? 0) ? a : b;
}

// Width in pixels of an edge carrying `rate` messages/s, the busiest carrying `maxRate`.
export function edgeWidth(rate, maxRate) {
  if (!rate || !maxRate) return 1;
  return 1 + (7 * Math.log1p(rate)) / Math.log1p(maxRate);
}

// Ids within `hops` edges of `focus` (either direction); every id when focus is empty.
export function neighbourhood(edges, focus, hops) {
  if (!focus || !hops) return null;
  const around = new Map();
  for (const edge of edges) {
    if (!around.has(edge.source)) around.set(edge.source, new Set());
    if (!around.has(edge.target)) around.set(edge.target, new Set());
    around.get(edge.source).add(edge.target);
    around.get(edge.target).add(edge.source);
  }
  const seen = new Set([focus]);
  let frontier = [focus];
  for (let depth = 0; depth < hops; depth += 1) {
    const next = [];
    for (const id of frontier) {
      for (const other of around.get(id) || []) {
        if (!seen.has(other)) {
          seen.add(other);
          next.push(other);
        }
      }
    }
    frontier = next;
  }
  return seen;
}

// The namespace node a node folds into when collapsed, or null (it stays itself).
function homeNamespace(node, nodesById, producersOf, membersOf) {
  if (node.type === "service") return node.namespace;
  if (node.type === "group") {
    const service = nodesById.get(membersOf.get(node.id));
    return service ? service.namespace : null;
  }
  const producer = nodesById.get(producersOf.get(node.id));
  return producer ? producer.namespace : null;
}

// Consumer groups drawn as their edges: topic -> group -> service becomes topic -> service,
// keeping the group's name, routing and lag on the edge (a big graph has a group per
// subscription, more nodes than its services and topics together).
export function foldGroups(nodes, edges) {
  const groups = new Map(nodes.filter((n) => n.type === "group").map((n) => [n.id, n]));
  if (!groups.size) return { nodes, edges };
  const members = new Map();
  for (const e of edges) {
    if (e.kind === "member" && groups.has(e.source)) {
      if (!members.has(e.source)) members.set(e.source, []);
      members.get(e.source).push(e.target);
    }
  }
  const folded = [];
  for (const e of edges) {
    if (e.kind === "member" && groups.has(e.source)) continue;
    if (e.kind === "consume" && groups.has(e.target)) {
      const group = groups.get(e.target);
      for (const service of members.get(e.target) || []) {
        folded.push({ ...e, id: `consume:${e.source}->${service}@${group.name}`, target: service, group: group.name,
                      service_from: group.service_from });
      }
      continue;
    }
    folded.push(e);
  }
  return { nodes: nodes.filter((n) => !groups.has(n.id)), edges: folded };
}

// What to draw: {nodes, edges, collapsed, services}. `options`: broker, prefix, hideIdle,
// focus, hops, expandAll, expanded (a Set of namespaces), collapseAbove.
export function visibleGraph(data, options = {}) {
  let nodes = data.nodes.slice();
  let edges = data.edges.slice();
  const byId = new Map(nodes.map((node) => [node.id, node]));
  if (options.broker) {
    const keep = (node) => node.type === "service" || (node.brokers || []).includes(options.broker);
    nodes = nodes.filter(keep);
    const kept = new Set(nodes.map((n) => n.id));
    edges = edges.filter((e) => kept.has(e.source) && kept.has(e.target) && e.kind !== "call");
    const linked = new Set(edges.flatMap((e) => [e.source, e.target]));
    nodes = nodes.filter((n) => n.type !== "service" || linked.has(n.id));
  }
  if (options.prefix) {
    const matching = new Set(nodes.filter((n) => n.type === "service" && n.name.startsWith(options.prefix)).map((n) => n.id));
    const linked = new Set(matching);
    for (const e of edges) {
      if (matching.has(e.source) && byId.get(e.target)?.type !== "service") linked.add(e.target);
      if (matching.has(e.target) && byId.get(e.source)?.type !== "service") linked.add(e.source);
    }
    nodes = nodes.filter((n) => linked.has(n.id));
  }
  if (options.hideIdle) {
    nodes = nodes.filter((n) => !n.idle);
    edges = edges.filter((e) => !e.idle);
  }
  let kept = new Set(nodes.map((n) => n.id));
  edges = edges.filter((e) => kept.has(e.source) && kept.has(e.target));
  const around = neighbourhood(edges, options.focus && kept.has(options.focus) ? options.focus : null, options.hops);
  if (around) {
    nodes = nodes.filter((n) => around.has(n.id));
    kept = new Set(nodes.map((n) => n.id));
    edges = edges.filter((e) => kept.has(e.source) && kept.has(e.target));
  }
  const services = nodes.filter((n) => n.type === "service").length;
  const big = services > (options.collapseAbove ?? 60);
  if (big && !around) ({ nodes, edges } = foldGroups(nodes, edges));
  const collapse = !options.expandAll && !around && big;
  if (!collapse) return { nodes, edges, collapsed: false, services };

  const producersOf = new Map();
  const membersOf = new Map();
  for (const e of edges) {
    if (e.kind === "publish" && !producersOf.has(e.target)) producersOf.set(e.target, e.source);
    if (e.kind === "member" && !membersOf.has(e.source)) membersOf.set(e.source, e.target);
  }
  const expanded = options.expanded || new Set();
  const into = new Map();
  const folded = new Map();
  const drawn = [];
  for (const node of nodes) {
    const ns = homeNamespace(node, byId, producersOf, membersOf);
    if (ns === null || ns === undefined || expanded.has(ns)) {
      drawn.push(node);
      continue;
    }
    const id = `namespace:${ns}`;
    into.set(node.id, id);
    let group = folded.get(id);
    if (!group) {
      group = { id, type: "namespace", name: ns, namespace: ns, members: 0, services: 0, health: "idle", rate: 0,
                change: null, sources: [], brokers: [] };
      folded.set(id, group);
    }
    group.members += 1;
    if (node.type === "service") group.services += 1;
    group.health = worstHealth(group.health, node.health);
    group.rate += node.type === "service" ? node.rate || 0 : 0;
  }
  const merged = new Map();
  for (const e of edges) {
    const source = into.get(e.source) || e.source;
    const target = into.get(e.target) || e.target;
    if (source === target) continue;
    const id = `${e.kind}:${source}->${target}`;
    const existing = merged.get(id);
    if (!existing) {
      merged.set(id, { ...e, id, source, target, folded: source !== e.source || target !== e.target ? 1 : 0 });
    } else {
      existing.rate = (existing.rate || 0) + (e.rate || 0);
      existing.health = worstHealth(existing.health, e.health);
      existing.folded += 1;
    }
  }
  return { nodes: drawn.concat([...folded.values()]), edges: [...merged.values()], collapsed: true, services };
}

// Where a click on an edge leads: its messages on the topic page, or its traces.
export function edgeLink(edge, byId, urls, windowQuery) {
  const from = byId.get(edge.source);
  const to = byId.get(edge.target);
  if (!from || !to) return null;
  const q = windowQuery ? `&${windowQuery}` : "";
  const topicPage = (topic, extra) => `${urls.events}${encodeURIComponent(topic.name)}/?${extra}${q}`.replace("?&", "?");
  const traces = (params) => `${urls.traces}?${new URLSearchParams(params).toString()}${q}`;
  const sources = edge.sources || [];
  if (edge.kind === "publish") {
    if (sources.includes("events")) return topicPage(to, `producer=${encodeURIComponent(from.name)}`);
    return traces({ service: from.name, tags: `messaging.destination.name=${to.name}` });
  }
  if (edge.kind === "consume") {
    if (to.type === "service") return traces({ service: to.name, tags: `messaging.destination.name=${from.name}` });
    return topicPage(from, "");
  }
  if (edge.kind === "call") return traces({ service: from.name });
  if (edge.kind === "member") return serviceLink(to, urls, windowQuery);
  return null;
}

export function serviceLink(node, urls, windowQuery) {
  const base = urls.service.replace("__name__", encodeURIComponent(node.name));
  return windowQuery ? `${base}?${windowQuery}` : base;
}

// Nodes whose name contains the text, exact matches first.
export function findNodes(nodes, text) {
  const needle = (text || "").trim().toLowerCase();
  if (!needle) return [];
  const found = nodes.filter((n) => n.name.toLowerCase().includes(needle));
  return found.sort((a, b) => (a.name.toLowerCase() === needle ? -1 : 0) - (b.name.toLowerCase() === needle ? -1 : 0)
    || (a.type === "service" ? -1 : 0) - (b.type === "service" ? -1 : 0) || a.name.localeCompare(b.name));
}

// A short line about an edge, for the detail panel.
export function edgeSummary(edge) {
  const parts = [`${edge.kind}`, `${(edge.rate || 0).toFixed(2)} msg/s`];
  if (edge.routing) parts.push(edge.routing);
  if (edge.errors) parts.push(`${edge.errors} errors`);
  if (edge.dead_letters) parts.push(`${edge.dead_letters} dead letters`);
  if (edge.lag !== undefined && edge.lag !== null) parts.push(`lag ${edge.lag}`);
  if (edge.p95_us) parts.push(`p95 ${edge.p95_us} µs`);
  if (edge.service_from) parts.push(edge.service_from === "spans" ? "service from consumer spans" : "service taken from its name");
  parts.push(`seen by ${(edge.sources || []).join(", ") || "—"}`);
  if (edge.change) parts.push(edge.change);
  return parts.join(" · ");
}

// Positions {id: {x, y}} for a big graph, in linear time: each node's rank is its
// breadth-first distance from the nodes nothing points at (left to right), and each rank
// is laid out in columns of `perColumn` nodes, ordered by id so a refresh keeps them in place.
export function layeredPositions(nodes, edges, { perColumn = 60, rowGap = 34, columnGap = 190, rankGap = 320 } = {}) {
  const ids = nodes.map((n) => n.id).sort();
  const out = new Map(ids.map((id) => [id, []]));
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    if (e.source === e.target || !out.has(e.source) || !out.has(e.target)) continue;
    out.get(e.source).push(e.target);
    indegree.set(e.target, indegree.get(e.target) + 1);
  }
  const rank = new Map();
  const walk = (starts) => {
    let frontier = starts.filter((id) => !rank.has(id));
    for (const id of frontier) rank.set(id, 0);
    let depth = 0;
    while (frontier.length) {
      depth += 1;
      const next = [];
      for (const id of frontier) {
        for (const other of out.get(id)) {
          if (!rank.has(other)) {
            rank.set(other, depth);
            next.push(other);
          }
        }
      }
      frontier = next;
    }
  };
  walk(ids.filter((id) => indegree.get(id) === 0));
  for (const id of ids) if (!rank.has(id)) walk([id]); // cycles nothing else reaches
  const byRank = [];
  for (const id of ids) {
    const r = rank.get(id);
    (byRank[r] ||= []).push(id);
  }
  const positions = {};
  let x = 0;
  for (const members of byRank) {
    if (!members) continue;
    members.forEach((id, i) => {
      positions[id] = { x: x + Math.floor(i / perColumn) * columnGap, y: (i % perColumn) * rowGap };
    });
    x += Math.ceil(members.length / perColumn) * columnGap + rankGap;
  }
  return positions;
}
