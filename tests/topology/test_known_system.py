"""A known system through the real path: publishes through NATS into a running collector,
JetStream consumers made with nats-py, spans from the real OpenTelemetry exporter and a
registration on `service.events`; the graph must have exactly its nodes and edges, each
with the sources that saw it."""
import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js import api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.models import Broker, TopologyPublishRollup
from collector.topology import readers, sources, writer
from tests.conftest import nats_publish, run_async, wait_until
from tests.lag.conftest import add_pull_consumer, make_stream


class QueueWorkers:
    """`count` instances of one service sharing a durable push consumer through its queue group."""

    def __init__(self, url, stream, subject, durable, count):
        self.stop = threading.Event()
        self.threads = []
        for _ in range(count):  # one after the other: the first creates the consumer, the others bind to it
            ready = threading.Event()
            thread = threading.Thread(target=asyncio.run, args=(self._run(url, stream, subject, durable, ready),),
                                      daemon=True)
            thread.start()
            assert ready.wait(20), "a queue worker did not subscribe"
            self.threads.append(thread)

    async def _run(self, url, stream, subject, durable, ready):
        nc = await nats.connect(url)
        await nc.jetstream().subscribe(subject, queue=durable, durable=durable, stream=stream,
                                       config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT))
        ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def tracer(endpoint, service):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider, provider.get_tracer("shop")


def export_spans(endpoint, x):
    """gateway calls order (client/server pair), order publishes orders.created, the shipping
    group's messages are processed by `shipper`, payment publishes payments.done, which only a
    consumer span of `notifier` reads."""
    gateway, gateway_tracer = tracer(endpoint, f"gateway_{x}")
    order, order_tracer = tracer(endpoint, f"order_{x}")
    carrier = {}
    with gateway_tracer.start_as_current_span("GET /checkout", kind=trace.SpanKind.SERVER), \
            gateway_tracer.start_as_current_span("Order.Place", kind=trace.SpanKind.CLIENT):
        inject(carrier)  # the call's context travels to the order service as headers
    with order_tracer.start_as_current_span("Order.Place", context=extract(carrier), kind=trace.SpanKind.SERVER), \
            order_tracer.start_as_current_span(f"orders_{x}.created publish", kind=trace.SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.system", "nats")
        span.set_attribute("messaging.destination.name", f"orders_{x}.created")
    for service, destination, group in ((f"shipper_{x}", f"orders_{x}.created", f"shipping_{x}"),
                                        (f"notifier_{x}", f"payments_{x}.done", None)):
        provider, consumer_tracer = tracer(endpoint, service)
        with consumer_tracer.start_as_current_span(f"{destination} process", kind=trace.SpanKind.CONSUMER) as span:
            span.set_attribute("messaging.destination.name", destination)
            span.set_attribute("messaging.operation", "process")
            if group:
                span.set_attribute("messaging.consumer.group.name", group)
        provider.shutdown()
    payment, payment_tracer = tracer(endpoint, f"payment_{x}")
    with payment_tracer.start_as_current_span(f"payments_{x}.done publish", kind=trace.SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.destination.name", f"payments_{x}.done")
    for provider in (gateway, order, payment):
        provider.shutdown()


def envelope(x, count):
    body = {"type": "order.created", "version": "2", "producer": f"order_{x}", "timestamp": "2026-11-30T12:00:00Z",
            "body": {"id": count}}
    return (f"orders_{x}.created", json.dumps(body).encode(), None)


def wait_for_everything(graph, x, broker):
    """Until every source has been read: the sampler's consumers, the span pass, the registration."""
    def complete():
        nodes, edges = ours(graph(), x)
        shipping = f"consume:topic:orders_{x}.created->group:{broker}/ORDERS_{x}/shipping_{x}"
        return (len([e for e in edges.values() if e["kind"] == "consume"]) == 4
                and f"call:service:gateway_{x}->service:order_{x}" in edges
                and f"publish:service:payment_{x}->topic:payments_{x}.done" in edges
                and "events" in nodes.get(f"service:order_{x}", {}).get("sources", [])
                and nodes.get(f"service:payment_{x}", {}).get("instances") == 2
                and edges.get(shipping, {}).get("sources") == ["consumers", "spans"])

    wait_until(complete, 30, "every source of the known system in the graph")


def ours(graph, x):
    nodes = {n["id"]: n for n in graph["nodes"] if x in n["id"]}
    edges = {e["id"]: e for e in graph["edges"] if e["source"] in nodes and e["target"] in nodes}
    return nodes, edges


@pytest.fixture
def known_system(topology_collector, nats_url):
    x = uuid.uuid4().hex[:6]
    stream = f"ORDERS_{x}"
    make_stream(nats_url, stream, [f"orders_{x}.*"])
    topology_collector.wait_until_observing(stream)
    subject = f"orders_{x}.created"
    workers = QueueWorkers(nats_url, stream, subject, f"payment_{x}", 2)  # one durable, two instances
    add_pull_consumer(nats_url, stream, f"inventory_{x}", filter_subject=subject)  # two durables on one subject
    add_pull_consumer(nats_url, stream, f"shipping_{x}", filter_subject=f"orders_{x}.*")
    run_async(_publish(nats_url, [envelope(x, n) for n in range(5)]))
    registration = {"action": "create", "service": {"name": f"payment_{x}", "version": "1.2.0",
                                                    "nodes": [{"id": f"payment_{x}-1"}, {"id": f"payment_{x}-2"}]}}
    nats_publish(nats_url, [("service.events", json.dumps(registration).encode(), None)])
    export_spans(topology_collector.otlp_http, x)
    yield x
    workers.close()


async def _publish(url, messages):
    nc = await nats.connect(url)
    js = nc.jetstream()
    for subject, data, headers in messages:
        await js.publish(subject, data, headers=headers)
    await nc.close()


def test_the_graph_of_a_known_system_has_exactly_its_nodes_and_edges_with_their_sources(known_system):
    x = known_system
    broker = Broker.objects.get().name
    now = datetime.now(UTC)

    def graph():
        return readers.graph(now - timedelta(minutes=10), datetime.now(UTC) + timedelta(minutes=1))

    wait_for_everything(graph, x, broker)
    nodes, edges = ours(graph(), x)
    group = f"group:{broker}/ORDERS_{x}/"
    assert {ident: n["sources"] for ident, n in nodes.items()} == {
        f"service:gateway_{x}": ["spans"],
        f"service:order_{x}": ["events", "spans"],
        f"service:payment_{x}": ["consumers", "registrations", "spans"],
        f"service:inventory_{x}": ["consumers"],
        f"service:shipper_{x}": ["spans"],
        f"service:notifier_{x}": ["spans"],
        f"topic:orders_{x}.created": ["consumers", "events", "spans"],
        f"topic:payments_{x}.done": ["spans"],
        f"{group}payment_{x}": ["consumers"],
        f"{group}inventory_{x}": ["consumers"],
        f"{group}shipping_{x}": ["consumers"],
    }
    created = f"topic:orders_{x}.created"
    assert {ident: e["sources"] for ident, e in edges.items()} == {
        f"publish:service:order_{x}->{created}": ["events", "spans"],
        f"publish:service:payment_{x}->topic:payments_{x}.done": ["spans"],
        f"call:service:gateway_{x}->service:order_{x}": ["spans"],  # seen only in spans
        f"consume:{created}->{group}payment_{x}": ["consumers"],
        f"consume:{created}->{group}inventory_{x}": ["consumers"],  # seen only in consumer configuration
        f"consume:{created}->{group}shipping_{x}": ["consumers", "spans"],
        f"consume:topic:payments_{x}.done->service:notifier_{x}": ["spans"],
        f"member:{group}payment_{x}->service:payment_{x}": ["consumers"],
        f"member:{group}inventory_{x}->service:inventory_{x}": ["consumers"],
        f"member:{group}shipping_{x}->service:shipper_{x}": ["spans"],
    }
    # One durable shared by two instances through its queue group; two durables side by side.
    assert edges[f"consume:{created}->{group}payment_{x}"]["routing"] == "load-balanced"
    assert edges[f"consume:{created}->{group}inventory_{x}"]["routing"] == "broadcast"
    assert edges[f"consume:{created}->{group}shipping_{x}"]["routing"] == "broadcast"
    assert edges[f"consume:{created}->{group}inventory_{x}"]["groups_on_topic"] == 3
    # The durable's name is taken as the service unless consumer spans say otherwise, and it says which.
    assert nodes[f"{group}inventory_{x}"]["service_from"] == "name"
    assert nodes[f"{group}shipping_{x}"]["service_from"] == "spans"
    assert nodes[f"{group}shipping_{x}"]["service"] == f"shipper_{x}"
    publish = edges[f"publish:service:order_{x}->{created}"]
    assert publish["messages"] == 5 and publish["types"] == [{"type": "order.created", "version": "2", "count": 5}]
    assert nodes[f"service:payment_{x}"]["versions"] == ["1.2.0"]
    assert nodes[f"service:payment_{x}"]["instances_from"] == "registrations"
    assert edges[f"call:service:gateway_{x}->service:order_{x}"]["span_count"] == 1
    assert edges[f"call:service:gateway_{x}->service:order_{x}"]["p95_us"] is not None
    # A long window reads the publish edges from the collector's rows per hour and 5 minutes: the same figures.
    for width in writer.PUBLISH_WIDTHS:
        rows = TopologyPublishRollup.objects.filter(width=width, producer=f"order_{x}")
        assert [(r.subject, r.type, r.version, r.count) for r in rows] == [(f"orders_{x}.created", "order.created", "2", 5)]
    wide = readers.graph(now - timedelta(hours=3), now + timedelta(hours=3), compare=False)
    assert 60 in {part[0] for part in sources.pieces(now - timedelta(hours=3), now + timedelta(hours=3))}
    wide_publish = next(e for e in wide["edges"] if e["id"] == f"publish:service:order_{x}->{created}")
    assert (wide_publish["messages"], wide_publish["types"]) == (5, publish["types"])


def test_the_api_and_the_jaeger_dependencies_carry_the_messaging_edges(known_system, viewer_client):
    x = known_system
    wait_for_everything(lambda: viewer_client.get("/api/topology?last=15m").json(), x, Broker.objects.get().name)
    body = viewer_client.get("/api/topology?last=15m").json()
    assert body["window"]["last"] == "15m"
    nodes, _ = ours(body, x)
    assert nodes[f"service:order_{x}"]["change"] == "new"  # nothing of it in the 15 minutes before
    links = {(d["parent"], d["child"]): d["callCount"] for d in viewer_client.get("/jaeger/api/dependencies").json()["data"]
             if x in d["parent"]}
    assert links == {
        (f"gateway_{x}", f"order_{x}"): 1,  # the RPC edge from spans
        (f"order_{x}", f"payment_{x}"): 5, (f"order_{x}", f"inventory_{x}"): 5, (f"order_{x}", f"shipper_{x}"): 5,
        (f"payment_{x}", f"notifier_{x}"): 1,
    }
    neighbourhood = viewer_client.get(f"/api/topology?last=15m&node=service:notifier_{x}&hops=1").json()
    assert {n["id"] for n in neighbourhood["nodes"]} == {f"service:notifier_{x}", f"topic:payments_{x}.done"}
