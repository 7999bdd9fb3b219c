import assert from "node:assert/strict";
import { test } from "node:test";

import { edgeLink, edgeWidth, findNodes, layeredPositions, neighbourhood, visibleGraph } from "../src/topologycore.js";

function service(name, extra = {}) {
  const ns = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : name;
  return { id: `service:${name}`, type: "service", name, namespace: ns, health: "ok", rate: 1, brokers: [], ...extra };
}
function topic(name, brokers = ["nats"]) {
  return { id: `topic:${name}`, type: "topic", name, health: "ok", rate: 1, brokers };
}
function edge(kind, source, target, extra = {}) {
  return { id: `${kind}:${source}->${target}`, kind, source, target, rate: 1, health: "ok", sources: ["events"], ...extra };
}

const data = {
  nodes: [service("shop.order"), service("shop.payment", { health: "bad" }), service("mail.sender", { idle: true }),
          topic("orders"), topic("mails", ["rabbit"])],
  edges: [edge("publish", "service:shop.order", "topic:orders"),
          edge("consume", "topic:orders", "service:shop.payment", { health: "warn" }),
          edge("consume", "topic:mails", "service:mail.sender", { idle: true, rate: 0 })],
};

test("edge width grows with the rate on a log scale, 1 px when idle", () => {
  assert.equal(edgeWidth(0, 100), 1);
  assert.equal(edgeWidth(100, 100), 8);
  assert.ok(edgeWidth(10, 100) > 1 && edgeWidth(10, 100) < 8);
});

test("the neighbourhood of a node follows edges both ways for N hops", () => {
  assert.deepEqual([...neighbourhood(data.edges, "service:shop.payment", 1)].sort(), ["service:shop.payment", "topic:orders"]);
  assert.equal(neighbourhood(data.edges, "service:shop.payment", 2).has("service:shop.order"), true);
  assert.equal(neighbourhood(data.edges, "", 2), null);
});

test("filters keep a broker's topics, a namespace prefix, and hide idle parts", () => {
  const rabbit = visibleGraph(data, { broker: "rabbit", collapseAbove: 100 });
  assert.deepEqual(rabbit.nodes.map((n) => n.id).sort(), ["service:mail.sender", "topic:mails"]);
  const shop = visibleGraph(data, { prefix: "shop.", collapseAbove: 100 });
  assert.deepEqual(shop.nodes.map((n) => n.id).sort(), ["service:shop.order", "service:shop.payment", "topic:orders"]);
  const busy = visibleGraph(data, { hideIdle: true, collapseAbove: 100 });
  assert.equal(busy.nodes.some((n) => n.idle), false);
  assert.equal(busy.edges.length, 2);
});

test("above the threshold services fold into their namespaces, with the worst health, until one is expanded", () => {
  const folded = visibleGraph(data, { collapseAbove: 2 });
  assert.equal(folded.collapsed, true);
  const shop = folded.nodes.find((n) => n.id === "namespace:shop");
  assert.equal(shop.services, 2);
  assert.equal(shop.health, "bad");
  // The topic folds with its producer's namespace: the shop's own edges vanish inside it.
  assert.deepEqual(folded.edges.map((e) => e.id), ["consume:topic:mails->namespace:mail"]);
  const open = visibleGraph(data, { collapseAbove: 2, expanded: new Set(["shop"]) });
  assert.ok(open.nodes.some((n) => n.id === "service:shop.payment"));
  assert.equal(visibleGraph(data, { collapseAbove: 2, expandAll: true }).collapsed, false);
});

test("a click on an edge opens its messages on the topic page, or its traces", () => {
  const byId = new Map(data.nodes.map((n) => [n.id, n]));
  const urls = { events: "/topics/", traces: "/traces/", service: "/services/__name__/" };
  assert.equal(edgeLink(data.edges[0], byId, urls, "last=1h"), "/topics/orders/?producer=shop.order&last=1h");
  const spansOnly = edge("consume", "topic:orders", "service:shop.payment", { sources: ["spans"] });
  assert.equal(edgeLink(spansOnly, byId, urls, "last=1h"),
    "/traces/?service=shop.payment&tags=messaging.destination.name%3Dorders&last=1h");
  assert.equal(edgeLink(edge("call", "service:shop.order", "service:shop.payment"), byId, urls, ""),
    "/traces/?service=shop.order");
});

test("search finds services by part of their name, exact matches first", () => {
  assert.deepEqual(findNodes(data.nodes, "order").map((n) => n.id), ["service:shop.order", "topic:orders"]);
  assert.deepEqual(findNodes(data.nodes, "orders").map((n) => n.id)[0], "topic:orders");
  assert.deepEqual(findNodes(data.nodes, " "), []);
});

test("a big graph draws consumer groups as edges from the topic to the service behind them", () => {
  const graph = {
    nodes: [topic("orders"), service("shop.payment"), { id: "group:nats/ORDERS/payment", type: "group", name: "payment",
      service_from: "name", health: "ok", brokers: ["nats"] }],
    edges: [edge("consume", "topic:orders", "group:nats/ORDERS/payment", { routing: "load-balanced" }),
            edge("member", "group:nats/ORDERS/payment", "service:shop.payment")],
  };
  const view = visibleGraph(graph, { collapseAbove: 0, expandAll: true });
  assert.deepEqual(view.nodes.map((n) => n.id).sort(), ["service:shop.payment", "topic:orders"]);
  assert.deepEqual(view.edges.map((e) => [e.source, e.target, e.group, e.routing]),
    [["topic:orders", "service:shop.payment", "payment", "load-balanced"]]);
});

test("a big graph's positions rank each node after what points at it, one node per place, the same each time", () => {
  const nodes = ["service:a", "topic:t", "service:b", "service:c", "service:d"].map((id) => ({ id }));
  const edges = [
    { source: "service:a", target: "topic:t" }, { source: "topic:t", target: "service:b" },
    { source: "service:c", target: "service:d" }, { source: "service:d", target: "service:c" },
  ];
  const positions = layeredPositions(nodes, edges, { perColumn: 2 });
  assert.equal(Object.keys(positions).length, 5);
  assert.ok(positions["service:a"].x < positions["topic:t"].x && positions["topic:t"].x < positions["service:b"].x);
  const places = new Set(Object.values(positions).map((p) => `${p.x},${p.y}`));
  assert.equal(places.size, 5);
  assert.deepEqual(layeredPositions(nodes.slice().reverse(), edges, { perColumn: 2 }), positions);
});
