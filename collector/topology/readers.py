"""The observed service graph of a window, shared by `/api/topology`, the pages and the
Jaeger dependencies. Built from rollups only (see `collector.topology.sources`).

Nodes: `service:<name>`, `topic:<name>`, `group:<broker>/<stream>/<consumer>`. Edges:
`publish` (service -> topic), `consume` (topic -> group, or topic -> service when only a
consumer span saw it), `member` (group -> the service behind it) and `call` (service ->
service). Each node and edge lists the `sources` that saw it: `events`, `consumers`,
`spans`, `registrations`.

A consumer group's service is its durable / queue-group / group name (the Go Micro
convention) unless consumer spans naming the group (or, without a group name, reading its
topic under the conventional name) say which service processes it: `service_from` tells
which (`name` or `spans`).
"""
import gc
from collections import defaultdict, deque
from contextlib import contextmanager

from django.db import connection, transaction

from collector.models.topology import TopologySettings
from collector.topology import sources
from collector.topology.consumers import group_of, routing_of
from collector.topology.figures import STATUS_HEALTH, health, namespace, p95, worst


class _Graph:
    """Nodes and edges by id, made on first sight with every field they carry (sets until
    the answer is encoded); callers set the rest on the dict they get back."""

    def __init__(self, seconds, settings):
        self.seconds = max(seconds, 1.0)
        self.settings = settings
        self.nodes, self.edges = {}, {}
        self._namespaces = {}

    def _new(self, ident, type_, name):
        node = self.nodes[ident] = {"id": ident, "type": type_, "name": name, "sources": set(), "brokers": set(),
                                    "messages": 0, "errors": 0}
        return node

    def service(self, name):
        ident = "service:" + name
        node = self.nodes.get(ident)
        if node is None:
            node = self._new(ident, "service", name)
            ns = self._namespaces.get(name)
            if ns is None:
                ns = self._namespaces[name] = namespace(name, self.settings.namespace_pattern)
            node.update(namespace=ns, instances=None, instances_from=None, versions=set(), spans=0, span_errors=0)
        return node

    def topic(self, name):
        ident = "topic:" + name
        node = self.nodes.get(ident)
        return node if node is not None else self._new(ident, "topic", name)

    def group(self, ident, name):
        node = self.nodes.get(ident)
        return node if node is not None else self._new(ident, "group", name)

    def edge(self, kind, source, target):
        ident = f"{kind}:{source}->{target}"
        edge = self.edges.get(ident)
        if edge is None:
            edge = self.edges[ident] = {"id": ident, "kind": kind, "source": source, "target": target,
                                        "sources": set(), "messages": 0, "bytes": 0, "errors": 0, "dead_letters": 0,
                                        "span_count": 0, "histogram": None}
        return edge


def _add_spans(edge, count, errors, histogram):
    edge["sources"].add("spans")
    edge["span_count"] += count
    edge["errors"] += errors
    if histogram is not None:
        old = edge["histogram"]
        edge["histogram"] = histogram if old is None else [a + b for a, b in zip(old, histogram)]


def consumer_groups_of(start, end):
    """[(consumer, Group)] of the consumers that existed at some time in [start, end)."""
    consumers = sources.consumers(start, end)
    topics_of = sources.stream_topics({(c["broker"], c["stream"]) for c in consumers if "topics" not in c["config"]})
    return [(c, group_of(c, topics_of.get((c["broker"], c["stream"]), []))) for c in consumers]


def build(start, end, settings=None, keys_only=False, consumer_groups=None):
    """(nodes {id: node}, edges {id: edge}) of the window [start, end). `keys_only`: the
    same nodes and edges from cheaper queries (which exist, not their figures), for the
    comparison with the window before. `consumer_groups`: consumer_groups_of() a longer
    time than the window (each is kept when it existed during the window)."""
    settings = settings or TopologySettings.load()
    g = _Graph((end - start).total_seconds(), settings)
    brokers = sources.brokers()
    topic_messages = defaultdict(int)

    # Producers of stored events.
    published = sources.published_keys(start, end) if keys_only else sources.published(start, end)
    for broker_id, subject, producer, type_, version, count, size, errors in published:
        broker = brokers.get(broker_id, ("?", "?"))[0]
        topic = g.topic(subject)
        topic["sources"].add("events")
        topic["brokers"].add(broker)
        topic["messages"] += count
        topic["errors"] += errors
        topic_messages[subject] += count
        if not producer:
            continue
        service = g.service(producer)
        service["sources"].add("events")
        service["messages"] += count
        edge = g.edge("publish", service["id"], topic["id"])
        edge["sources"].add("events")
        edge["messages"] += count
        edge["bytes"] += size
        edge["errors"] += errors
        if not keys_only:
            types = edge.get("types")
            if types is None:
                types = edge["types"] = {}
            key = (type_ or "", version or "")
            types[key] = types.get(key, 0) + count

    # Consumer configuration from the lag sampler.
    groups = [group for consumer, group in (consumer_groups_of(start, end) if consumer_groups is None else consumer_groups)
              if consumer["first_seen"] < end and (consumer["gone_at"] is None or consumer["gone_at"] >= start)]
    dead = {} if keys_only else sources.dead_letters(start, end)
    for group in groups:
        node = g.group(group.id, group.name)
        node.update(broker=group.broker, broker_kind=group.kind, stream=group.stream, service=group.service,
                    service_from="name", instances=group.instances, lag=group.lag, status=group.status,
                    gone_consumer=group.gone, topics=group.topics)
        node["sources"].add("consumers")
        node["brokers"].add(group.broker)
        for name in group.topics:
            topic = g.topic(name)
            topic["sources"].add("consumers")
            topic["brokers"].add(group.broker)
            edge = g.edge("consume", topic["id"], group.id)
            edge["lag"], edge["status"] = group.lag, group.status
            edge["sources"].add("consumers")
            edge["messages"] = topic_messages.get(name, 0)
            edge["dead_letters"] += dead.get((name, group.name), 0)
        node["messages"] = sum(topic_messages.get(name, 0) for name in group.topics)

    groups_of_topic = defaultdict(list)
    for group in groups:
        for name in group.topics:
            groups_of_topic[name].append(group)

    # Edges seen in spans.
    spans_behind = defaultdict(set)  # group id -> services its consumer spans name
    span_edges = sources.span_edge_keys(start, end) if keys_only else sources.span_edges(start, end)
    for kind, source, target, group_name, count, errors, _total, histogram in span_edges:
        if kind == "publish":
            service, topic = g.service(source), g.topic(target)
            service["sources"].add("spans")
            topic["sources"].add("spans")
            _add_spans(g.edge("publish", service["id"], topic["id"]), count, errors, histogram)
        elif kind == "consume":
            topic, service = g.topic(source), g.service(target)
            topic["sources"].add("spans")
            service["sources"].add("spans")
            matched = [grp for grp in groups_of_topic.get(source, ()) if
                       (group_name and group_name in (grp.name, grp.service)) or (not group_name and grp.service == target)]
            if matched:
                for grp in matched:
                    _add_spans(g.edges[f"consume:{topic['id']}->{grp.id}"], count, errors, histogram)
                    spans_behind[grp.id].add(target)
            else:
                edge = g.edge("consume", topic["id"], service["id"])
                edge["group"] = group_name
                _add_spans(edge, count, errors, histogram)
                edge["messages"] = max(edge["messages"], topic_messages.get(source, 0))
                edge["dead_letters"] += dead.get((source, group_name), 0) if group_name else 0
        elif kind == "call":
            caller, callee = g.service(source), g.service(target)
            caller["sources"].add("spans")
            callee["sources"].add("spans")
            edge = g.edge("call", caller["id"], callee["id"])
            _add_spans(edge, count, errors, histogram)
            edge["messages"] += count

    # Each group's service: its consumer spans where they name one, else its name.
    for group in groups:
        behind = sorted(spans_behind.get(group.id, ()))
        node = g.nodes[group.id]
        if behind:
            node.update(service=", ".join(behind), service_from="spans")
        seen_by = "spans" if behind else "consumers"
        for name in behind or [group.service]:
            service = g.service(name)
            service["sources"].add(seen_by)
            edge = g.edge("member", group.id, service["id"])
            edge["service_from"] = "spans" if behind else "name"
            edge["sources"].add(seen_by)
            edge["messages"] = node["messages"]
            if group.instances and not service["instances"]:
                service.update(instances=group.instances, instances_from="consumers")

    # Routing: shared within a group, or a copy for each of several groups.
    consume = [edge for edge in g.edges.values() if edge["kind"] == "consume"]
    readers_of = defaultdict(int)
    for edge in consume:
        readers_of[edge["source"]] += 1
    by_id = {group.id: group for group in groups}
    for edge in consume:
        readers = readers_of[edge["source"]]
        edge["groups_on_topic"] = readers
        group = by_id.get(edge["target"])
        edge["routing"] = routing_of(group, readers) if group else ("broadcast" if readers > 1 else "single")
        if group:
            node = g.nodes[group.id]
            node["routing"] = edge["routing"] if node.get("routing") in (None, "single") else node["routing"]

    # Registrations: instances and versions.
    for name, entry in sources.registrations(start, end).items():
        service = g.service(name)
        service["sources"].add("registrations")
        service.update(instances=entry["instances"], instances_from="registrations")
        service["versions"].update(entry["versions"])

    if not keys_only:
        _figures(g, sources.span_health(start, end))
    return g.nodes, g.edges


def _figures(g, span_health):
    thresholds = g.settings
    for edge in g.edges.values():
        count = edge["messages"] or edge["span_count"]
        edge["rate"] = count / g.seconds
        edge["error_rate"] = (edge["errors"] / count) if count else 0.0
        edge["dlq_rate"] = edge["dead_letters"] / g.seconds
        histogram = edge.pop("histogram")
        edge["p95_us"] = p95(histogram) if histogram else None
        edge["health"] = worst(health(edge["errors"] + edge["dead_letters"], count, thresholds),
                               STATUS_HEALTH.get(edge.get("status"), "idle"))
        edge["idle"] = count == 0
        types = edge.pop("types", None)
        if types:
            edge["types"] = [{"type": t, "version": v, "count": n} for (t, v), n in sorted(types.items())]
    for node in g.nodes.values():
        if node["type"] == "service":
            spans, errors = span_health.get(node["name"], (0, 0))
            node.update(spans=spans, span_errors=errors)
            node["health"] = health(errors, spans, thresholds)
        elif node["type"] == "group":
            node["health"] = worst(STATUS_HEALTH.get(node["status"], "ok"), "ok" if node["messages"] else "idle")
        else:
            node["health"] = health(node["errors"], node["messages"], thresholds)
        node["rate"] = node["messages"] / g.seconds
    for edge in g.edges.values():
        # A service's health takes the worst of the edges it publishes and consumes on.
        for end in (edge["source"], edge["target"]):
            node = g.nodes.get(end)
            if node is not None and node["type"] == "service" and edge["health"] in ("warn", "bad"):
                node["health"] = worst(node["health"], edge["health"])
        if edge["kind"] == "member":
            g.nodes[edge["target"]]["health"] = worst(g.nodes[edge["target"]]["health"], g.nodes[edge["source"]]["health"])
    busy = {end for e in g.edges.values() if not e["idle"] for end in (e["source"], e["target"])}
    for node in g.nodes.values():
        node["idle"] = node["id"] not in busy and not node["messages"] and not node.get("spans")


_SETS = ("sources", "brokers", "versions")


def _gone(item, is_edge):
    """An item only the window before had: its fields without figures (that window is
    compared by keys only)."""
    item = {**item, "change": "gone", "health": "idle", "idle": True, "rate": 0.0}
    if is_edge:
        item.pop("histogram", None)
        item.update(error_rate=0.0, dlq_rate=0.0, p95_us=None)
    elif item["type"] == "service":
        item.update(spans=0, span_errors=0)
    return item


@contextmanager
def _no_gc():
    """The cyclic garbage collector paused while a graph's thousands of dicts are made (it
    would scan them all again and again; none of them forms a cycle); reference counting
    still frees as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _roomy():
    """Room for the rollup aggregates to hash in memory (the default 4 MB spills them to disk
    at a few hundred services); for this transaction only."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")


def graph(start, end, compare=True, settings=None):
    """The graph of [start, end) as JSON-able {"nodes": [...], "edges": [...]}; with
    `compare`, each node and edge has `change`: `new` (not in the window of the same length
    just before), `gone` (only in that one: no figures, the window before is compared by
    its nodes' and edges' ids) or null."""
    settings = settings or TopologySettings.load()
    with _no_gc():
        return _graph(start, end, compare, settings)


def _graph(start, end, compare, settings):
    with transaction.atomic():
        _roomy()
        before = start - (end - start)
        groups = consumer_groups_of(before if compare else start, end)  # one read for both windows
        nodes, edges = build(start, end, settings, consumer_groups=groups)
        if compare:
            before_nodes, before_edges = build(before, start, settings, keys_only=True, consumer_groups=groups)
    if compare:
        for current, before, is_edge in ((nodes, before_nodes, False), (edges, before_edges, True)):
            for ident, item in current.items():
                item["change"] = None if ident in before else "new"
            for ident, item in before.items():
                if ident not in current:
                    current[ident] = _gone(item, is_edge)
    for items in (nodes, edges):
        for item in items.values():
            for key in _SETS:
                value = item.get(key)
                if value is not None:
                    item[key] = sorted(value)
    return {"nodes": [nodes[k] for k in sorted(nodes)], "edges": [edges[k] for k in sorted(edges)]}


def neighbourhood(data, node_id, hops=1):
    """The part of `graph()`'s answer within `hops` edges of `node_id` (either direction)."""
    around = defaultdict(set)
    for edge in data["edges"]:
        around[edge["source"]].add(edge["target"])
        around[edge["target"]].add(edge["source"])
    seen, queue = {node_id}, deque([(node_id, 0)])
    while queue:
        ident, depth = queue.popleft()
        if depth == hops:
            continue
        for other in around[ident] - seen:
            seen.add(other)
            queue.append((other, depth + 1))
    return {"nodes": [n for n in data["nodes"] if n["id"] in seen],
            "edges": [e for e in data["edges"] if e["source"] in seen and e["target"] in seen]}


def messaging_dependencies(start, end):
    """[(producer service, consumer service, messages)] through topics, for the Jaeger
    dependencies: each service publishing to a topic and each service behind a consumer of it."""
    with transaction.atomic():
        _roomy()
        nodes, edges = build(start, end)
    consumers_of = defaultdict(list)  # topic id -> [(service id, messages)]
    members = defaultdict(list)
    for edge in edges.values():
        if edge["kind"] == "member":
            members[edge["source"]].append(edge["target"])
    for edge in edges.values():
        if edge["kind"] != "consume":
            continue
        targets = members.get(edge["target"], [edge["target"]])
        for target in targets:
            if nodes.get(target, {}).get("type") == "service":
                consumers_of[edge["source"]].append((target, edge["messages"] or edge["span_count"]))
    links = defaultdict(int)
    for edge in edges.values():
        if edge["kind"] != "publish":
            continue
        for target, count in consumers_of.get(edge["target"], []):
            if target != edge["source"]:
                links[(nodes[edge["source"]]["name"], nodes[target]["name"])] += count
    return sorted((parent, child, count) for (parent, child), count in links.items())
