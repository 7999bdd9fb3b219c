// The topology graph (/topology/ and the neighbourhood on /services/<name>/): its own
// bundle, so other pages do not load Cytoscape.js. Reads /api/topology, draws with a
// layered left-to-right layout (dagre), and polls to refresh in place: figures change
// without moving anything; the layout runs again only when nodes or edges come or go,
// and dagre places the same graph the same way.
import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";

import { edgeLink, edgeSummary, edgeWidth, findNodes, layeredPositions, serviceLink, visibleGraph } from "./topologycore.js";

cytoscape.use(dagre);

const LAYERED_MAX = 400;
const COLOURS = { ok: "#1a7f37", warn: "#d4a72c", bad: "#c4232d", idle: "#98a2ae" };
const SHAPES = { service: "round-rectangle", topic: "rhomboid", group: "ellipse", namespace: "round-octagon" };
const FILLS = { service: "#e5efff", topic: "#fff8e1", group: "#eef1f4", namespace: "#dcf5e3" };

const STYLE = [
  { selector: "node", style: {
    label: "data(label)", shape: "ellipse", "background-color": "#fff",
    "border-width": 2, "border-color": COLOURS.idle, "font-size": 11,
    "text-valign": "center", "text-halign": "center", width: "label", height: 26, padding: "8px", "text-wrap": "none",
    "min-zoomed-font-size": 7 } },
  // Plain selectors rather than style functions: Cytoscape caches them across thousands of elements.
  ...Object.keys(SHAPES).map((type) => ({ selector: `node[type = '${type}']`, style: { shape: SHAPES[type], "background-color": FILLS[type] } })),
  ...Object.keys(COLOURS).map((h) => ({ selector: `node[health = '${h}']`, style: { "border-color": COLOURS[h] } })),
  { selector: "node[change = 'new']", style: { "border-style": "double", "border-width": 4, "font-weight": "bold" } },
  { selector: "node[change = 'gone']", style: { "border-style": "dashed", opacity: 0.5 } },
  { selector: "node.match", style: { "overlay-color": "#1f6feb", "overlay-opacity": 0.18, "overlay-padding": 6 } },
  { selector: "edge", style: {
    width: "data(width)", "line-color": COLOURS.idle, "target-arrow-color": COLOURS.idle, "target-arrow-shape": "triangle",
    "curve-style": "bezier", "arrow-scale": 0.8, label: "data(label)", "font-size": 9, color: "#5f6b7a",
    "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8,
    "min-zoomed-font-size": 8 } },
  ...Object.keys(COLOURS).map((h) => ({ selector: `edge[health = '${h}']`, style: { "line-color": COLOURS[h], "target-arrow-color": COLOURS[h] } })),
  // Big graphs: straight edges, the cheapest to draw.
  { selector: "edge.plain", style: { "curve-style": "haystack", "haystack-radius": 0 } },
  { selector: "edge[kind = 'consume']", style: { "line-style": "dashed" } },
  { selector: "edge[kind = 'call']", style: { "line-style": "dotted" } },
  { selector: "edge[change = 'gone']", style: { opacity: 0.4 } },
];

function label(node) {
  if (node.type === "namespace") return `${node.name}.* (${node.services} services)`;
  const mark = node.change === "new" ? " (new)" : node.change === "gone" ? " (gone)" : "";
  return `${node.name}${mark}`;
}

function edgeLabel(edge) {
  const parts = [];
  if (edge.kind === "consume" && edge.routing && edge.routing !== "single") parts.push(edge.routing);
  if (edge.change) parts.push(edge.change);
  return parts.join(" ");
}

function elementsOf(view) {
  const maxRate = Math.max(0, ...view.edges.map((e) => e.rate || 0));
  // A big graph's edges carry no label (each would be measured and drawn; hovering tells the same).
  const big = view.nodes.length > LAYERED_MAX;
  const nodes = view.nodes.map((n) => ({ group: "nodes", data: { ...n, label: label(n) } }));
  const edges = view.edges.map((e) => ({
    group: "edges", data: { ...e, width: edgeWidth(e.rate, maxRate), label: big ? "" : edgeLabel(e) } }));
  const byId = (a, b) => (a.data.id < b.data.id ? -1 : a.data.id > b.data.id ? 1 : 0);
  return nodes.sort(byId).concat(edges.sort(byId));
}

function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

export function initTopology(root) {
  const container = root.querySelector("#topology-graph");
  if (!container) return;
  const $ = (sel) => root.querySelector(sel);
  const urls = {
    api: root.dataset.api, service: root.dataset.serviceUrl, events: root.dataset.eventsUrl,
    traces: root.dataset.tracesUrl,
  };
  const windowQuery = (() => {
    const params = new URLSearchParams(urls.api.split("?")[1] || "");
    const kept = new URLSearchParams();
    for (const key of ["last", "from", "to"]) if (params.get(key)) kept.set(key, params.get(key));
    return kept.toString();
  })();
  const state = {
    data: null, expanded: new Set(), focus: root.dataset.focus || "", signature: "", timer: null,
    collapseAbove: Number(root.dataset.collapseAbove || 60),
  };
  const cy = cytoscape({ container, style: STYLE, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 3,
                        textureOnViewport: true, hideEdgesOnViewport: true });
  container.cy = cy; // for tests and the console: the drawn graph
  const status = $("#topology-status");
  const detail = $("#topology-detail");

  function options() {
    return {
      broker: $("#topology-broker")?.value || "", prefix: $("#topology-namespace")?.value.trim() || "",
      hideIdle: Boolean($("#topology-idle")?.checked), expandAll: Boolean($("#topology-expand")?.checked),
      focus: state.focus, hops: state.focus ? Number($("#topology-hops")?.value ?? root.dataset.hops ?? 1) : 0,
      expanded: state.expanded, collapseAbove: state.collapseAbove,
    };
  }

  function showDetail(parts) {
    if (!detail) return;
    detail.replaceChildren(...parts);
  }

  function nodeDetail(node) {
    const parts = [text("h3", node.name), text("p", `${node.type}${node.namespace ? ` in ${node.namespace}` : ""}`, "muted")];
    const lines = [`${(node.rate || 0).toFixed(2)} msg/s`, `health ${node.health}`];
    if (node.instances) lines.push(`${node.instances} instances (${node.instances_from})`);
    if (node.versions?.length) lines.push(`versions ${node.versions.join(", ")}`);
    if (node.routing) lines.push(node.routing);
    if (node.lag !== undefined && node.lag !== null) lines.push(`lag ${node.lag}`);
    if (node.service) lines.push(`service ${node.service} (${node.service_from === "spans" ? "from consumer spans" : "taken from its name"})`);
    if (node.sources?.length) lines.push(`seen by ${node.sources.join(", ")}`);
    if (node.change) lines.push(node.change);
    parts.push(text("p", lines.join(" · ")));
    if (node.type === "service") {
      const link = text("a", "Open service page");
      link.href = serviceLink(node, urls, windowQuery);
      link.id = "topology-open";
      parts.push(link);
    }
    showDetail(parts);
  }

  function draw(fit) {
    if (!state.data) return;
    const view = visibleGraph(state.data, options());
    const elements = elementsOf(view);
    const signature = elements.map((el) => el.data.id).join("|");
    const started = performance.now();
    if (signature === state.signature) {
      // Same nodes and edges: new figures in place, nothing moves.
      cy.batch(() => { for (const el of elements) cy.getElementById(el.data.id).data(el.data); });
    } else {
      state.signature = signature;
      cy.batch(() => {
        cy.elements().remove();
        cy.add(elements);
        if (view.nodes.length > LAYERED_MAX) cy.edges().addClass("plain");
      });
      // dagre's layered layout up to a few hundred nodes; beyond, breadth-first ranks left to
      // right placed in linear time (layeredPositions), so an expanded 500-service graph draws quickly.
      let layout;
      if (view.nodes.length <= LAYERED_MAX) {
        layout = { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 80, edgeSep: 6 };
      } else {
        const positions = layeredPositions(view.nodes, view.edges);
        layout = { name: "preset", positions: (node) => positions[node.id()] };
      }
      cy.layout({ ...layout, animate: false, fit: true, padding: 20 }).run();
      if (state.focus) cy.getElementById(state.focus).addClass("match");
    }
    if (fit) cy.fit(undefined, 20);
    if (cy.zoom() > 1.2) cy.zoom({ level: 1.2, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
    const drawnIn = Math.round(performance.now() - started);
    root.dataset.drawn = String((Number(root.dataset.drawn) || 0) + 1);
    root.dataset.drawMs = String(drawnIn);
    if (status) {
      status.textContent = `${view.services} services${view.collapsed ? ", collapsed by namespace (click one to open it)" : ""}; `
        + `${view.nodes.length} nodes, ${view.edges.length} edges drawn in ${drawnIn} ms; updated ${new Date().toLocaleTimeString()}`;
    }
  }

  function fillControls(data) {
    const brokers = new Set();
    for (const node of data.nodes) for (const broker of node.brokers || []) brokers.add(broker);
    const select = $("#topology-broker");
    if (select) {
      const current = select.value;
      const options_ = [...brokers].sort().map((b) => { const o = text("option", b); o.value = b; return o; });
      const all = text("option", "all");
      all.value = "";
      select.replaceChildren(all, ...options_);
      select.value = brokers.has(current) ? current : "";
    }
    const list = $("#topology-names");
    if (list) {
      const names = [...new Set(data.nodes.filter((n) => n.type === "service").map((n) => n.name))].sort();
      list.replaceChildren(...names.map((name) => { const o = document.createElement("option"); o.value = name; return o; }));
    }
  }

  async function load(first) {
    try {
      const response = await fetch(urls.api, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      state.data = await response.json();
      fillControls(state.data);
      draw(first);
    } catch (error) {
      if (status) status.textContent = `Could not load the graph: ${error.message}`;
    }
  }

  function search() {
    const input = $("#topology-search");
    if (!input || !state.data) return;
    const found = findNodes(state.data.nodes, input.value);
    cy.nodes().removeClass("match");
    if (!found.length) {
      showDetail([text("p", `Nothing named like “${input.value}”.`, "muted")]);
      return;
    }
    const node = found[0];
    state.focus = node.id;
    const namespace = state.data.nodes.find((n) => n.id === node.id)?.namespace;
    if (namespace) state.expanded.add(namespace);
    draw(true);
    const drawn = cy.getElementById(node.id);
    if (drawn.nonempty()) {
      drawn.addClass("match");
      cy.animate({ center: { eles: drawn }, duration: 0 });
    }
    nodeDetail(node);
  }

  cy.on("tap", "node", (event) => {
    const node = event.target.data();
    if (node.type === "namespace") {
      state.expanded.add(node.name);
      draw(false);
      return;
    }
    if (node.type === "service") {
      window.location.href = serviceLink(node, urls, windowQuery);
      return;
    }
    nodeDetail(node);
  });
  cy.on("tap", "edge", (event) => {
    const edge = event.target.data();
    const byId = new Map(state.data.nodes.map((n) => [n.id, n]));
    const link = edgeLink(edge, byId, urls, windowQuery);
    if (link) window.location.href = link;
  });
  cy.on("mouseover", "node", (event) => nodeDetail(event.target.data()));
  cy.on("mouseover", "edge", (event) => showDetail([text("p", edgeSummary(event.target.data()))]));

  $("#topology-tools")?.addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("#topology-search")?.addEventListener("change", search);
  for (const id of ["#topology-broker", "#topology-idle", "#topology-expand", "#topology-hops"]) {
    $(id)?.addEventListener("change", () => draw(true));
  }
  $("#topology-namespace")?.addEventListener("input", () => draw(true));
  $("#topology-fit")?.addEventListener("click", () => {
    state.focus = "";
    const input = $("#topology-search");
    if (input) input.value = "";
    draw(true);
  });

  load(true);
  const every = Number(root.dataset.poll || 0);
  if (every > 0) {
    state.timer = setInterval(() => { if (!document.hidden) load(false); }, every * 1000);
  }
}

function start() {
  const root = document.getElementById("topology");
  if (root) initTopology(root);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
