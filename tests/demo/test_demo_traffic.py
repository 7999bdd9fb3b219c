"""The demo shop, run for a bounded number of orders against a real NATS JetStream server.

Every run of the shop gets a namespace of its own, so its streams and subjects are its own; its streams are
deleted afterwards. Tests that only read what a standard run left share one run."""
import argparse
import asyncio
import base64
import contextlib
import json
import re
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import nats
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import demo
from demo import wire
from demo.services import spread

TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-0[01]$")
SERVICES = {"order", "payment", "inventory", "shipping", "notification", "mailer"}
ORDERS = 20


def small_run(namespace, **overrides):
    """20 orders, half of whose payments fail, quickly: two deliveries, short delays."""
    settings = dict(
        namespace=namespace,
        count=ORDERS,
        rate=100,
        fail_fraction=0.5,
        max_deliver=2,
        retry_delay=0.05,
        slow_delay=0.01,
        initial_stock=1,
        wave_period=0,
        drain_timeout=20,
        exporters=(),
    )
    settings.update(overrides)
    return demo.DemoConfig(**settings)


async def stream_messages(js, stream):
    """Every message of a stream, with its subject, headers and data."""
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def delete_streams(js, namespace):
    for info in await js.streams_info():
        if info.config.name.startswith(f"{namespace}_"):
            await js.delete_stream(info.config.name)


def wire_format(msg):
    """The format of a message, judged from its bytes and headers alone."""
    headers = msg.headers or {}
    if headers.get("ce-specversion") == "1.0":
        return "cloudevents-binary"
    doc = json.loads(msg.data)
    if doc.get("specversion") == "1.0" and "data" in doc:
        return "cloudevents-structured"
    if set(doc) == {"Header", "Body"} and "Micro-Topic" in doc["Header"]:
        return "gomicro-broker"
    if set(doc) == {"ID", "Topic", "Timestamp", "Metadata", "Payload"}:
        return "gomicro-events"
    if set(doc) == {"type", "version", "timestamp", "body"}:
        return "envelope"
    return "unknown"


async def run_and_collect(nats_url, namespace, **overrides):
    """Runs the shop once; returns (stats, {stream: (subjects, messages)}, advisories, {stream: consumers})."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    advisories = []

    async def on_advisory(msg):
        advisories.append(json.loads(msg.data))

    await nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{namespace}_ORDERS.>", cb=on_advisory)
    try:
        stats = await demo.run(small_run(namespace, nats_url=nats_url, **overrides))
        # The last advisory follows the last nak by the retry delay; give it a moment.
        for _ in range(50):
            if len(advisories) >= stats.exhausted:
                break
            await asyncio.sleep(0.05)
        streams, consumers = {}, {}
        for info in await js.streams_info():
            name = info.config.name
            if name.startswith(f"{namespace}_"):
                streams[name] = (info.config.subjects, await stream_messages(js, name))
                consumers[name] = sorted(c.name for c in await js.consumers_info(name))
        return stats, streams, advisories, consumers
    finally:
        await delete_streams(js, namespace)
        await nc.close()


def new_namespace():
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def standard_run(nats_url):
    """One run of 20 orders with every format, shared by the tests that only read what it left."""
    namespace = new_namespace()
    return namespace, *asyncio.run(run_and_collect(nats_url, namespace))


@pytest.fixture
def shop_run(nats_url):
    """Runs the shop with some settings changed, under a namespace of its own."""
    return lambda **overrides: asyncio.run(run_and_collect(nats_url, new_namespace(), **overrides))


def test_a_bounded_run_fills_the_domain_streams_and_drains(standard_run):
    """20 orders make streams per domain, a Go Micro stream named after its topic, durable consumers named
    after their services, and a pipeline that drains within the time allowed."""
    namespace, stats, streams, _, consumers = standard_run

    ns = namespace
    assert {name: subjects for name, (subjects, _) in streams.items()} == {
        f"{ns}_ORDERS": [f"{ns}.order.*"],
        f"{ns}_PAYMENTS": [f"{ns}.payment.*"],
        f"{ns}_EMAIL": [f"{ns}.email.*"],
        f"{ns}_SERVICES": [f"{ns}.service.*"],
        f"{ns}_DLQ": [f"{ns}.order.*.dlq", f"{ns}.payment.*.dlq", f"{ns}.email.*.dlq", f"{ns}.service.*.dlq"],
        f"{ns}_shipments": [f"{ns}_shipments"],
    }
    assert consumers[f"{ns}_ORDERS"] == ["inventory", "payment"]
    assert consumers[f"{ns}_PAYMENTS"] == ["notification", "shipping"]
    assert consumers[f"{ns}_shipments"] == ["notification"]
    assert consumers[f"{ns}_EMAIL"] == ["mailer"]
    assert stats.drained
    assert stats.orders == ORDERS
    created = [m for m in streams[f"{ns}_ORDERS"][1] if m.subject == f"{ns}.order.created"]
    assert len(created) == stats.published["order.created"] == ORDERS
    for name, (_, messages) in streams.items():
        by_subject = {}
        for msg in messages:
            logical = msg.subject.removeprefix(f"{ns}.").removeprefix(f"{ns}_")
            by_subject[logical] = by_subject.get(logical, 0) + 1
        for logical, stored in by_subject.items():
            assert stored == stats.published[logical], (name, logical)
    assert stats.publish_errors == 0


def test_order_created_is_published_in_both_versions_by_both_halves_of_the_order_instances(standard_run):
    """Half of the order instances still publish version 1 (`item`), the others version 2 (`sku`, `currency`)."""
    namespace, _, streams, _, _ = standard_run

    created = [json.loads(m.data) for m in streams[f"{namespace}_ORDERS"][1] if m.subject.endswith(".order.created")]
    by_version = {1: [], 2: []}
    for envelope in created:
        by_version[envelope["version"]].append(envelope["body"])
    assert len(by_version[1]) == len(by_version[2]) == ORDERS // 2
    assert all("item" in body and "sku" not in body and "currency" not in body for body in by_version[1])
    assert all("sku" in body and "item" not in body and body["currency"] == "EUR" for body in by_version[2])


def test_failing_payments_run_out_of_deliveries_and_the_mailer_dead_letters_to_a_dlq_subject(standard_run):
    """Payments that keep failing end in MAX_DELIVERIES advisories naming stored order.created messages;
    bounced emails are moved to `email.requested.dlq` with the original topic, error and attempts in headers."""
    namespace, stats, streams, advisories, _ = standard_run

    failing = sum(spread(n, "gateway") < 0.5 for n in range(1, ORDERS + 1))
    assert failing > 0
    assert len(advisories) == stats.exhausted == failing
    orders = {m.seq: m for m in streams[f"{namespace}_ORDERS"][1]}
    for advisory in advisories:
        assert advisory["consumer"] == "payment"
        assert advisory["deliveries"] == 2
        assert orders[advisory["stream_seq"]].subject == f"{namespace}.order.created"

    dead = streams[f"{namespace}_DLQ"][1]
    assert len(dead) == stats.dlq > 0
    for msg in dead:
        assert msg.subject == f"{namespace}.email.requested.dlq"
        assert msg.headers["X-Original-Topic"] == f"{namespace}.email.requested"
        assert msg.headers["X-Error"] == "550 mailbox unavailable"
        assert msg.headers["X-Attempts"] == "2"
        assert wire_format(msg) == "gomicro-broker"  # the original message, unchanged


def test_every_message_carries_trace_context_a_message_id_and_its_producer(standard_run):
    """Each stored message has a valid W3C traceparent and a Nats-Msg-Id; the older services also send
    uber-trace-id; Go Micro formats repeat the producer and trace context inside the envelope."""
    namespace, _, streams, _, _ = standard_run

    messages = [msg for _, stored in streams.values() for msg in stored]
    assert messages
    for msg in messages:
        assert TRACEPARENT.match(msg.headers["traceparent"]), msg.headers
        assert msg.headers["Nats-Msg-Id"]
        assert msg.headers["Micro-From-Service"] in SERVICES
        fmt = wire_format(msg)
        if fmt == "gomicro-events":
            metadata = json.loads(msg.data)["Metadata"]
            assert TRACEPARENT.match(metadata["traceparent"])
            assert metadata["Micro-From-Service"] == msg.headers["Micro-From-Service"]
        if fmt == "cloudevents-binary":
            assert msg.headers["ce-source"] == msg.headers["Micro-From-Service"]
    jaeger = [msg.headers["uber-trace-id"] for msg in messages if "uber-trace-id" in msg.headers]
    assert jaeger
    for value, msg in ((m.headers["uber-trace-id"], m) for m in messages if "uber-trace-id" in m.headers):
        trace_id = msg.headers["traceparent"].split("-")[1]
        assert value.startswith(f"{trace_id}:")
    assert len(jaeger) < len(messages)


def test_every_service_announces_itself_on_service_events(standard_run):
    """Each instance publishes a Go Micro registration (name, version, instance id, endpoints) on start
    and a deregistration on stop; the order service runs in two versions."""
    namespace, _, streams, _, _ = standard_run

    registrations = []
    for msg in streams[f"{namespace}_SERVICES"][1]:
        assert msg.subject == f"{namespace}.service.events"
        registrations.append(json.loads(base64.b64decode(json.loads(msg.data)["Payload"])))
    created = [r["service"] for r in registrations if r["action"] == "create"]
    deleted = [r["service"] for r in registrations if r["action"] == "delete"]
    assert {s["name"] for s in created} == SERVICES
    assert len(deleted) == len(created) == 4 + 5  # four order instances and five other services
    orders = [s for s in created if s["name"] == "order"]
    assert {s["version"] for s in orders} == {"1.0.0", "2.0.0"}
    assert len({s["nodes"][0]["id"] for s in created}) == len(created)
    payment = next(s for s in created if s["name"] == "payment")
    assert payment["endpoints"][0]["metadata"] == {
        "subscriber": "true",
        "topic": f"{namespace}.order.created",
        "queue": "payment",
    }


def test_each_wire_format_appears_where_its_producer_uses_it(standard_run):
    """Orders travel in the versioned envelope, payments as CloudEvents (structured and binary), shipments
    and registrations as Go Micro events, emails as Go Micro broker messages; the saga cancels orders."""
    namespace, _, streams, _, _ = standard_run

    seen = {}
    for _, stored in streams.values():
        for msg in stored:
            seen.setdefault(msg.subject.removeprefix(f"{namespace}.").removeprefix(f"{namespace}_"), set()).add(
                wire_format(msg)
            )
    assert seen["order.created"] == {"envelope"}
    assert seen["payment.succeeded"] == {"cloudevents-structured"}
    assert seen["payment.failed"] == {"cloudevents-binary"}
    assert seen["order.cancelled"] == {"cloudevents-binary"}
    assert seen["shipments"] == {"gomicro-events"}
    assert seen["service.events"] == {"gomicro-events"}
    assert seen["email.requested"] == {"gomicro-broker"}
    assert set().union(*seen.values()) == set(demo.config.FORMATS)


def test_a_run_limited_to_one_format_publishes_everything_in_it(shop_run):
    """With `formats=("cloudevents-structured",)` every message is a structured CloudEvent."""
    _, streams, _, _ = shop_run(formats=("cloudevents-structured",), fail_fraction=0)

    formats = {wire_format(msg) for _, stored in streams.values() for msg in stored}
    assert formats == {"cloudevents-structured"}


class TraceSink(BaseHTTPRequestHandler):
    """A tiny HTTP span receiver: keeps every body posted, by path (/v1/traces, /api/traces)."""

    bodies = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class GrpcSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.requests = []

    def Export(self, request, context):
        self.requests.append(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def receivers():
    """Span receivers on free ports: OTLP HTTP and Jaeger HTTP (one HTTP server), OTLP gRPC, Jaeger UDP."""
    TraceSink.bodies = {}
    http = ThreadingHTTPServer(("127.0.0.1", 0), TraceSink)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    grpc_sink = GrpcSink()
    grpc_server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(grpc_sink, grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    datagrams = []
    listening = threading.Event()
    listening.set()

    def receive():
        while listening.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                datagrams.append(udp.recv(65535))

    udp_thread = threading.Thread(target=receive, daemon=True)
    udp_thread.start()
    ports = dict(
        otlp_http_port=http.server_address[1],
        jaeger_http_port=http.server_address[1],
        otlp_grpc_port=grpc_port,
        jaeger_agent_port=udp.getsockname()[1],
    )
    yield ports, TraceSink.bodies, grpc_sink.requests, datagrams
    listening.clear()
    udp_thread.join()
    udp.close()
    grpc_server.stop(None)
    http.shutdown()
    http.server_close()


def service_names(requests):
    return {
        attribute.value.string_value
        for request in requests
        for resource_spans in request.resource_spans
        for attribute in resource_spans.resource.attributes
        if attribute.key == "service.name"
    }


def test_spans_leave_through_the_otlp_http_exporter_with_messaging_attributes_and_links(shop_run, receivers):
    """Every service exports its spans to /v1/traces under its own service.name; process spans are children
    of, and linked to, the publish spans whose context the messages carried."""
    ports, bodies, _, _ = receivers
    shop_run(exporters=("otlp-http",), spans_host="127.0.0.1", **ports)

    requests = [ExportTraceServiceRequest.FromString(body) for body in bodies["/v1/traces"]]
    assert requests
    spans = {}
    names = set()
    for request in requests:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            names.add(attributes["service.name"])
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.span_id] = span
    assert names == SERVICES
    producers = [s for s in spans.values() if s.kind == Span.SPAN_KIND_PRODUCER]
    consumers = [s for s in spans.values() if s.kind == Span.SPAN_KIND_CONSUMER]
    assert producers and consumers
    for span in producers + consumers:
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["messaging.system"].string_value == "nats"
        assert attributes["messaging.destination.name"].string_value
        operation = "publish" if span.kind == Span.SPAN_KIND_PRODUCER else "process"
        assert attributes["messaging.operation"].string_value == operation
    for span in consumers:
        parent = spans[span.parent_span_id]
        assert parent.kind == Span.SPAN_KIND_PRODUCER
        assert [link.span_id for link in span.links] == [parent.span_id]
        assert parent.trace_id == span.trace_id


def test_services_share_out_the_four_exporters_so_every_receiver_gets_spans(shop_run, receivers):
    """With all exporters on, the services take them in turn: Jaeger agent UDP, Jaeger collector HTTP,
    OTLP HTTP and OTLP gRPC each receive spans."""
    ports, bodies, grpc_requests, datagrams = receivers
    shop_run(exporters=("jaeger-udp", "jaeger-http", "otlp-http", "otlp-grpc"), spans_host="127.0.0.1", **ports)

    assert datagrams, "nothing reached the Jaeger agent port"
    assert bodies.get("/api/traces"), "nothing reached the Jaeger collector endpoint"
    assert service_names(ExportTraceServiceRequest.FromString(b) for b in bodies["/v1/traces"]) == {"inventory"}
    assert service_names(grpc_requests) == {"shipping"}


@pytest.mark.parametrize("fmt", wire.FORMATS)
def test_each_wire_format_decodes_back_to_the_event_it_encoded(fmt):
    """Type, version, body, id, producer and traceparent survive encoding in every format."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = wire.Event(type="order.created", body={"number": 7, "sku": "mug"}, id="id-7", producer="order", version=2)

    payload, headers = wire.encode(fmt, "order.created", event, {"traceparent": traceparent})
    decoded = wire.decode(payload, headers)

    assert decoded.format == fmt
    assert (decoded.type, decoded.version, decoded.body, decoded.id) == ("order.created", 2, event.body, "id-7")
    assert decoded.producer == "order"
    assert decoded.carrier["traceparent"] == traceparent
    assert headers["Nats-Msg-Id"] == "id-7"


def test_options_from_a_command_line_become_a_config_and_unset_ones_keep_their_defaults():
    """Django passes every option (plus its own); strings are parsed, None means the default."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    options = vars(parser.parse_args(["--rate", "50", "--exporters", "none", "--formats", "envelope,gomicro-broker"]))
    options.update(verbosity=1, settings=None)

    config = demo.config_from_options(options)

    assert (config.rate, config.exporters, config.formats) == (50.0, (), ("envelope", "gomicro-broker"))
    assert config.fail_fraction == 0.1 and config.count is None
    assert demo.config_from_options({"exporters": "otlp-http,jaeger-udp"}).exporters == ("otlp-http", "jaeger-udp")
    with pytest.raises(SystemExit):
        parser.parse_args(["--formats", "protobuf"])
